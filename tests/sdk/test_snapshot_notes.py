"""Which content a member notes at a snapshot base, driven entry by entry (no relay, no timing).

A member's own edit is in its document from the moment it is made, before the log has it.
When the frame that carries the base seq also carries that edit, the content at the base
must not be taken once the edit "arrives": the document already held it. A content noted
then is not the log's, and the member would write it into its snapshot or attest with it,
so that honest members disagree and a new device that replays the log judges them wrong.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pycrdt
import pytest

from encspaces import snapshot_keeper
from encspaces.core.entry import Kind
from encspaces.core.identity import Identity
from encspaces.core.verifier import VerifiedEntry
from encspaces.document import Document
from encspaces.snapshot import SnapshotPayload, content_hash, state_content_hash
from encspaces.snapshot_keeper import SnapshotKeeper

GRID = 10


@pytest.fixture(autouse=True)
def small_granularity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_keeper, "GRANULARITY", GRID)


def _update(text: str) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.get("text:t", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


def _data(seq: int, author: bytes, author_seq: int, plaintext: bytes) -> VerifiedEntry:
    header = SimpleNamespace(kind=Kind.DATA, author=author, author_seq=author_seq, parent_seq=seq - 1)
    return VerifiedEntry(seq, cast(Any, SimpleNamespace(header=header)), bytes(32), plaintext, None)


def test_the_content_at_a_base_never_holds_our_own_edit_sequenced_after_it() -> None:
    me, other = Identity.generate(), Identity.generate()
    document = Document(lambda update: None)
    own_edit = _update("mine")
    document.apply_remote(own_edit, None)  # made locally: in the document, in the outbox, not yet in the log
    state = SimpleNamespace(author_seqs={me.public.sign_key: 1}, seq=GRID + 1, role_of=lambda key: None,
                            client_ids_bound=False)
    host = SimpleNamespace(identity=me, document=document, verifier=SimpleNamespace(state=state, awaiting_key=[]))
    keeper = SnapshotKeeper(cast(Any, host))
    remote = _update("theirs")
    # One frame: another member's edit at the grid seq, then ours right after it.
    batch = [_data(GRID, other.public.sign_key, 1, remote), _data(GRID + 1, me.public.sign_key, 1, own_edit)]
    keeper.begin_batch(batch, idle=True, own_through=1)
    for result in batch:
        # (The space skips our own entry: the document already holds it.)
        if not keeper.on_entry(result) and result.author != me.public.sign_key:
            document.apply_remote(result.plaintext or b"", other.member_id)
        keeper.after_entry(result, cast(Any, state))
    log_at_grid: pycrdt.Doc[Any] = pycrdt.Doc()
    log_at_grid.apply_update(remote)  # the log through the grid seq: their edit only
    assert keeper.content_at.get(GRID, content_hash(log_at_grid)) == content_hash(log_at_grid)
    # What the document holds now is the log one seq later, and that is what it differs by.
    assert content_hash(document.doc) != content_hash(log_at_grid) == state_content_hash(remote)


def test_an_honest_snapshot_arriving_with_our_own_edit_is_not_judged_bad() -> None:
    """The interleaving seen under load: our edit and another member's snapshot in one frame.

    The log passed the base (a grid seq) in an earlier frame, where every member noted it. The
    next frame carries our own edit, then the other member's snapshot of that base, so the
    base is wanted again; noting it at our edit put our edit into it, and we then called the
    honest snapshot bad and attested a content that is not the log's (others blame us for it).
    """
    me, other = Identity.generate(), Identity.generate()
    document = Document(lambda update: None)
    state = SimpleNamespace(author_seqs={me.public.sign_key: 0}, seq=GRID, role_of=lambda key: None, snapshots={},
                            client_ids_bound=False)  # (bare updates, as a space from before client ids)
    verifier = SimpleNamespace(state=state, awaiting_key=[], epoch_keys={})
    keeper = SnapshotKeeper(cast(Any, SimpleNamespace(identity=me, document=document, verifier=verifier)))

    def run(batch: list[VerifiedEntry]) -> None:
        keeper.begin_batch(batch, idle=True, own_through=max(
            (r.entry.header.author_seq for r in batch if r.author == me.public.sign_key), default=0))
        for result in batch:
            if not keeper.on_entry(result) and result.author != me.public.sign_key:
                document.apply_remote(result.plaintext or b"", other.member_id)
            keeper.after_entry(result, cast(Any, state))

    theirs = _update("theirs")
    run([_data(GRID, other.public.sign_key, 1, theirs)])
    at_base = content_hash(document.doc)
    assert keeper.content_at[GRID] == at_base  # noted at the end of that frame
    own_edit = _update("mine")
    document.apply_remote(own_edit, None)  # made locally, then sequenced at GRID + 1
    snapshot = SnapshotPayload(theirs, state_content_hash(theirs)).encode()  # the other's, honest
    header = SimpleNamespace(kind=Kind.SNAPSHOT, author=other.public.sign_key, author_seq=2, parent_seq=GRID,
                             epoch=1)
    state.author_seqs[me.public.sign_key], state.seq = 1, GRID + 2
    run([_data(GRID + 1, me.public.sign_key, 1, own_edit),
         VerifiedEntry(GRID + 2, cast(Any, SimpleNamespace(header=header, raw=b"")), bytes(32), snapshot, None)])
    assert keeper.bad == [] and keeper.bad_seqs == ()
    assert keeper.content_at[GRID] == at_base
