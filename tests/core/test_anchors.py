"""Anchors in the pure core: the state digest the rules keep, the attestation rule over it, and a
new device's catch-up to one (control entries whole, the rest as digests, then the state there),
held until an agreed snapshot covers it. docs/PROTOCOL.md section 14, "Anchors"."""

from __future__ import annotations

import dataclasses

import pytest

from encspaces.core import crypto, log_state
from encspaces.core.attestation import AttestBody
from encspaces.core.encoding import pack, unpack
from encspaces.core.entry import Entry, Kind, build_entry
from encspaces.core.log_state import ANCHOR_GRID, LogState
from encspaces.core.membership import Role
from encspaces.core.messages import PROTOCOL_VERSION, AnchorState, Challenge, Entries, Welcome
from encspaces.core.reverify import reverify_log
from encspaces.core.session import Anchored, BecameLive, ClientSession, SessionState
from encspaces.core.verifier import LogVerifier
from encspaces.errors import AnchorStateError, AttestationError, MalformedFrameError, MissingBodiesError, StoreError

from .fakes import FIXED_TIME_MS, FakeSpace


def snapshot_at(fake: FakeSpace, writes: int) -> tuple[int, int]:
    """Bob writes ``writes`` entries, Alice snapshots the state at the last: (snapshot seq, base)."""
    for i in range(writes):
        fake.write(fake.bob, f"edit {i}".encode())
    base = fake.seq
    snap = build_entry(fake.alice, space=fake.space, author_seq=fake._take(fake.alice), epoch=1, kind=Kind.SNAPSHOT,
                       parent_seq=base, parent_hash=fake.heads[base], payload=b"state", epoch_key=fake.epoch_key)
    return fake.sequence(snap), base


def attest(fake: FakeSpace, seq: int, anchor: bytes | None) -> None:
    fake.write(fake.bob, AttestBody(seq, bytes(32), True, anchor).encode(), kind=Kind.ATTEST)


def state_at(fake: FakeSpace, seq: int) -> LogState:
    state = LogState(fake.space)
    for i, raw in enumerate(fake.raws[:seq], 1):
        state.apply(Entry.decode(raw), i, fake.heads[i])
    return state


def to_anchor(fake: FakeSpace, anchor: int, base: int) -> list[bytes]:
    """A new device's catch-up: control entries whole and the rest as digests up to ``anchor``,
    encrypted bodies stripped up to ``base``, whole after it."""
    items = []
    for seq, raw in enumerate(fake.raws, 1):
        entry = Entry.decode(raw)
        kind = entry.header.kind
        if seq <= anchor and (kind.is_encrypted or kind is Kind.ATTEST):
            items.append(entry.digest())
        elif seq <= base and kind.is_encrypted:
            items.append(entry.strip())
        else:
            items.append(raw)
    return items


def anchored_fake() -> tuple[FakeSpace, int, int]:
    fake = FakeSpace()
    seq, base = snapshot_at(fake, 2 * ANCHOR_GRID + 20)
    record = fake.state.snapshots[seq]
    assert record.anchor == fake.state.anchors[2 * ANCHOR_GRID]
    attest(fake, seq, record.anchor)
    fake.write(fake.bob, b"after")
    return fake, seq, base


def test_every_grid_seq_keeps_the_digest_of_the_state_there() -> None:
    fake, _, _ = anchored_fake()
    assert sorted(fake.state.anchors) == [ANCHOR_GRID, 2 * ANCHOR_GRID]
    for at in fake.state.anchors:
        assert fake.state.anchors[at] == state_at(fake, at).state_digest()


def test_an_attestation_must_state_the_anchor_the_log_keeps() -> None:
    fake = FakeSpace()
    seq, _ = snapshot_at(fake, ANCHOR_GRID + 5)
    record = fake.state.snapshots[seq]
    assert record.anchor is not None
    wrong = fake.make(fake.bob, AttestBody(seq, bytes(32), True, crypto.hash_parts(crypto.CTX_LOG_STATE, b"other"))
                      .encode(), kind=Kind.ATTEST)
    with pytest.raises(AttestationError, match="states the log state at seq 100"):
        fake.sequence(wrong)  # what the relay and every member check
    fake.next_seqs[fake.bob.public.sign_key] -= 1
    attest(fake, seq, None)  # an attestation from before anchors: the snapshot is agreed, not anchored
    record = fake.state.snapshots[seq]
    assert fake.state.agreed_snapshot() == (seq, record.base)
    assert not record.anchored(fake.state.policy.snapshot_attesters)


@pytest.mark.parametrize("kept", [log_state.ANCHORS_KEPT, 1])
def test_a_new_device_starts_at_the_anchor_and_settles_when_the_attestation_covers_it(
    kept: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # kept=1: the ring is full at the anchor, as in any log past ANCHORS_KEPT anchors
    monkeypatch.setattr(log_state, "ANCHORS_KEPT", kept)
    fake, _, base = anchored_fake()
    anchor = 2 * ANCHOR_GRID
    items = to_anchor(fake, anchor, base)
    v = LogVerifier(fake.space, fake.carol, fake.relay_pk)
    v.verify_frame(Entries(1, items[:anchor], fake.signed(anchor)))
    assert v.sparse and v.unpinned_from == 1
    assert [seq for seq, _, _ in v.pruned] == [s for s in range(1, anchor + 1) if len(items[s - 1]) == crypto.HASH_SIZE]
    v.install_anchor(anchor, state_at(fake, anchor).export())
    assert not v.sparse and v.unpinned_from == 1 and v.settled_anchor is None
    v.verify_frame(Entries(anchor + 1, items[anchor:], fake.signed(fake.seq)))
    settled = v.take_settled_anchor()
    assert settled is not None and settled.seq == anchor
    assert v.anchor is None and v.unpinned_from is None
    assert v.state.state_digest() == fake.state.state_digest()
    assert v.state.membership_digest() == fake.state.membership_digest()


def test_the_anchor_stays_pending_until_an_anchored_agreed_snapshot_covers_it() -> None:
    fake = FakeSpace()
    seq, base = snapshot_at(fake, ANCHOR_GRID + 20)
    attest(fake, seq, None)  # agreed, but no attester stated the anchor
    items = to_anchor(fake, ANCHOR_GRID, base)
    v = LogVerifier(fake.space, fake.carol, fake.relay_pk)
    v.verify_frame(Entries(1, items[:ANCHOR_GRID], fake.signed(ANCHOR_GRID)))
    v.install_anchor(ANCHOR_GRID, state_at(fake, ANCHOR_GRID).export())
    v.verify_frame(Entries(ANCHOR_GRID + 1, items[ANCHOR_GRID:], fake.signed(fake.seq)))
    assert v.anchor is not None and v.take_settled_anchor() is None and v.unpinned_from == 1


def test_the_state_is_checked_against_the_control_entries_and_its_own_digest() -> None:
    fake, _, base = anchored_fake()
    anchor = 2 * ANCHOR_GRID
    items = to_anchor(fake, anchor, base)

    def sparse() -> LogVerifier:
        v = LogVerifier(fake.space, fake.carol, fake.relay_pk)
        v.verify_frame(Entries(1, items[:anchor], fake.signed(anchor)))
        return v

    honest = state_at(fake, anchor)
    promoted = state_at(fake, anchor)
    promoted.members = {k: dataclasses.replace(m, role=Role.ADMIN) for k, m in promoted.members.items()}
    promoted.anchors[anchor] = promoted.state_digest()
    with pytest.raises(AnchorStateError, match="than the control entries from genesis decide"):
        sparse().install_anchor(anchor, promoted.export())
    behind = state_at(fake, anchor)
    behind.author_seqs[fake.alice.public.sign_key] = 1
    behind.anchors[anchor] = behind.state_digest()
    with pytest.raises(AnchorStateError, match="but its control entries reach author_seq"):
        sparse().install_anchor(anchor, behind.export())
    ahead = state_at(fake, anchor)
    ahead.author_seqs[fake.bob.public.sign_key] = (ahead.author_seqs[fake.bob.public.sign_key] or 0) + 3
    with pytest.raises(AnchorStateError, match="but it states"):
        sparse().install_anchor(anchor, ahead.export())  # (its digest not restated)
    with pytest.raises(AnchorStateError, match="its entries as digests reach seq 200"):
        sparse().install_anchor(ANCHOR_GRID, honest.export())
    # consistent with itself, but not the log's: the first entry after it that breaks a rule says so
    ahead.anchors[anchor] = ahead.state_digest()
    v = sparse()
    v.install_anchor(anchor, ahead.export())
    with pytest.raises(AnchorStateError, match="is not the log's") as failed:
        v.verify_frame(Entries(anchor + 1, items[anchor:], fake.signed(fake.seq)))
    assert v.seq == anchor and v.anchor is not None and v.anchor.digest == ahead.state_digest()
    assert failed.value.__cause__ is not None


def test_a_whole_data_entry_before_the_anchor_is_refused() -> None:
    fake, _, base = anchored_fake()
    items = to_anchor(fake, 2 * ANCHOR_GRID, base)
    at = next(i for i, item in enumerate(items) if len(item) == crypto.HASH_SIZE) + 1
    items[at] = fake.raws[at]  # a data entry, whole, among the digests
    assert Entry.decode(items[at]).header.kind is Kind.DATA
    v = LogVerifier(fake.space, fake.carol, fake.relay_pk)
    with pytest.raises(MalformedFrameError, match="in the stretch before an anchor"):
        v.verify_frame(Entries(1, items[:ANCHOR_GRID], fake.signed(ANCHOR_GRID)))
    assert v.seq == 0
    # and in a frame of its own, once the stretch started
    v = LogVerifier(fake.space, fake.carol, fake.relay_pk)
    v.verify_frame(Entries(1, items[:at], fake.signed(at)))
    assert v.sparse
    with pytest.raises(MalformedFrameError, match="in the stretch before an anchor"):
        v.verify_frame(Entries(at + 1, [items[at]], fake.signed(at + 1)))
    assert v.seq == at


def test_a_store_that_starts_at_an_anchor_reverifies_from_it() -> None:
    fake, _, base = anchored_fake()
    anchor = 2 * ANCHOR_GRID
    items = to_anchor(fake, anchor, base)
    rows = [(seq, item, fake.heads[seq]) for seq, item in enumerate(items, 1)]
    state = state_at(fake, anchor).export()
    report = reverify_log(fake.space, fake.carol, rows, anchor=(anchor, state))
    assert report.error is None and report.seq == fake.seq
    assert isinstance(reverify_log(fake.space, fake.carol, rows).error, MissingBodiesError)
    forged = LogState.restore(fake.space, state, fake.heads[: anchor + 1])
    forged.author_seqs[fake.bob.public.sign_key] = (forged.author_seqs[fake.bob.public.sign_key] or 0) + 3
    forged.anchors[anchor] = forged.state_digest()
    report = reverify_log(fake.space, fake.carol, rows, anchor=(anchor, forged.export()))
    assert isinstance(report.error, AnchorStateError) and report.seq == anchor


# --- the session: a catch-up to an anchor ends covered, or fails --------------------------------


def catching_up(fake: FakeSpace) -> ClientSession:
    session = ClientSession(fake.carol, LogVerifier(fake.space, fake.carol))
    now = FIXED_TIME_MS + 5_000
    session.receive(Challenge(fake.relay_pk, bytes(32), PROTOCOL_VERSION).encode(), now)
    session.receive(Welcome(fake.signed(fake.seq), None).encode(), now)
    assert session.state is SessionState.CATCHING_UP
    return session


def receive(session: ClientSession, message: bytes) -> list[object]:
    return list(session.receive(message, FIXED_TIME_MS + 5_000))


@pytest.mark.parametrize("stated", [True, False])
def test_a_catch_up_to_an_anchor_ends_live_only_when_a_snapshot_covers_it(stated: bool) -> None:
    fake = FakeSpace()
    seq, base = snapshot_at(fake, ANCHOR_GRID + 20)
    attest(fake, seq, fake.state.snapshots[seq].anchor if stated else None)
    items = to_anchor(fake, ANCHOR_GRID, base)
    session = catching_up(fake)
    receive(session, Entries(1, items[:ANCHOR_GRID], fake.signed(ANCHOR_GRID)).encode())
    events = receive(session, AnchorState(ANCHOR_GRID, state_at(fake, ANCHOR_GRID).export()).encode())
    assert any(isinstance(e, Anchored) and e.seq == ANCHOR_GRID for e in events)
    rest = Entries(ANCHOR_GRID + 1, items[ANCHOR_GRID:], fake.signed(fake.seq)).encode()
    if stated:
        assert any(isinstance(e, BecameLive) for e in receive(session, rest))
        assert session.verifier.take_settled_anchor() is not None
    else:
        with pytest.raises(AnchorStateError, match="without an agreed snapshot whose attesters state"):
            receive(session, rest)


def test_a_catch_up_that_ends_at_the_anchor_without_its_state_fails() -> None:
    fake = FakeSpace()
    snapshot_at(fake, ANCHOR_GRID - fake.seq - 1)
    assert fake.seq == ANCHOR_GRID
    items = to_anchor(fake, ANCHOR_GRID, ANCHOR_GRID)
    session = catching_up(fake)
    with pytest.raises(MissingBodiesError, match="and no log state for the anchor"):
        receive(session, Entries(1, items, fake.signed(ANCHOR_GRID)).encode())


def test_a_log_state_to_a_device_not_catching_up_to_an_anchor_is_refused() -> None:
    fake, _, _ = anchored_fake()
    session = catching_up(fake)
    receive(session, fake.frame(1, 10).encode())
    with pytest.raises(MalformedFrameError, match="unexpected anchorstate message"):
        receive(session, AnchorState(ANCHOR_GRID, state_at(fake, ANCHOR_GRID).export()).encode())


def test_a_checkpoint_from_before_anchors_has_its_ring_rebuilt_from_the_store() -> None:
    """A device resuming from a checkpoint without the ring would hash other states than every
    other member from the next grid seq on (and the relay would refuse its attestations)."""
    fake, seq, _ = anchored_fake()
    exported = unpack(fake.state.export())
    del exported["anchors"]
    old = unpack(fake.verifier(fake.carol, through=fake.seq).export_checkpoint())
    old["state"] = pack(exported)
    v, _ = LogVerifier.from_checkpoint(fake.space, fake.carol, pack(old), fake.heads)
    assert v.state.anchors_missing and v.state.anchors == {}
    rows = [(s, raw, fake.heads[s]) for s, raw in enumerate(fake.raws, 1)]
    v.rebuild_anchors(rows)
    assert not v.state.anchors_missing
    assert v.state.anchors == fake.state.anchors
    assert v.state.snapshots[seq].anchor == fake.state.snapshots[seq].anchor
    assert v.state.state_digest() == fake.state.state_digest()
    with pytest.raises(StoreError, match="its checkpoint at seq"):
        LogVerifier.from_checkpoint(fake.space, fake.carol, pack(old), fake.heads)[0].rebuild_anchors(rows[:-1])
