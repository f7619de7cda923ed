"""Values, member updates and local writes that used to break a space, through a real relay.

Each test names the bug it pins: a value whose content hash crashed the connection task, a
member's entry that could not be applied (or decrypted) and was skipped silently, and a
local write too large for an entry that failed the space after returning normally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pycrdt
import pytest

import encspaces
from encspaces.core import crypto
from encspaces.core.entry import Kind
from encspaces.errors import EntryTooLargeError
from encspaces.shared.gate import CALL_BYTES, ITEM_BYTES, MAX_EDIT_BYTES
from encspaces.snapshot import GRANULARITY, content_hash, state_content_hash
from tests.support import AuthoredDoc, RawMember

from .conftest import RelayHandle, make_members, settle


def update_of(make: Any, author: encspaces.Identity) -> bytes:
    """A data entry's plaintext: the update ``make`` writes, in a document ``author`` may write in."""
    authored = AuthoredDoc(author)
    make(authored.doc)
    return authored.payload(authored.doc.get_update())


async def test_a_big_integral_float_survives_the_snapshot_point(relay: RelayHandle, tmp_path: Path) -> None:
    """Before: content_hash packed 1e20 as an int; at seq 100 the writer's connection task died."""
    (_, bob_id), (alice, bob) = await make_members(relay.url, tmp_path, 2)
    alice.map("m")["k"] = 1e20
    alice.table("t").insert({"big": -1e300, "tiny": 5e-324})
    while alice.seq <= GRANULARITY + 1:
        alice.list("l").append(alice.seq)
        await alice.sync()
    await settle([alice, bob])
    assert alice.error is None and alice.connected and bob.error is None and bob.connected
    assert bob.map("m")["k"] == 1e20 and content_hash(alice.doc) == content_hash(bob.doc)
    await alice.write_snapshot()
    await bob.close()
    fresh = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "bob-again")
    try:
        await fresh.wait_for_seq(alice.seq)
        assert fresh.map("m")["k"] == 1e20 and content_hash(fresh.doc) == content_hash(alice.doc)
    finally:
        await fresh.close()
        await alice.close()


async def test_a_members_unusable_entries_are_rejected_the_same_everywhere(relay: RelayHandle, tmp_path: Path) -> None:
    """Before: logged and skipped; now a RejectedEntry with seq and author on every member, and the space goes on."""
    _, (alice, bob, carol) = await make_members(relay.url, tmp_path, 3)
    streams = [alice.rejected_entries(), bob.rejected_entries()]
    async with RawMember(relay.url, carol.identity, carol.space_bytes) as raw:  # a dishonest member's own client
        await carol.wait_for_seq(await raw.commit(
            raw.entry(Kind.DATA, b"\xff\xfenot a yjs update"),
            raw.entry(Kind.DATA, update_of(lambda d: d.get("map:m", type=pycrdt.Map).__setitem__("k", 1),
                                           carol.identity),
                      epoch_key=crypto.random_key()),  # sealed under a key nobody holds
        ))
    carol.text("doc").insert(0, "honest after")
    await settle([alice, bob, carol])
    for space in (alice, bob):
        assert space.error is None and space.connected
        assert [(r.kind, r.author) for r in space.rejected] == [
            ("invalid_update", carol.identity.member_id), ("undecryptable", carol.identity.member_id)]
        assert str(space.text("doc")) == "honest after" and "k" not in space.map("m")
    assert alice.rejected == bob.rejected
    assert alice.rejected[1].seq == alice.rejected[0].seq + 1
    assert "does not open" in alice.rejected[1].reason and "not a valid document update" in alice.rejected[0].reason
    for stream in streams:
        assert [stream.get_nowait(), stream.get_nowait()] == alice.rejected
        stream.close()
    assert isinstance(alice.rejected[0], encspaces.RejectedEntry)
    for space in (alice, bob, carol):
        await space.close()


async def test_content_only_other_clients_write_does_not_break_hashing(relay: RelayHandle, tmp_path: Path) -> None:
    """Before: an embed or sub-document from a member made content_hash raise TypeError."""
    _, (alice, bob, carol) = await make_members(relay.url, tmp_path, 3)
    crafted: list[bytes] = []
    for make in (
        lambda d: d.get("text:t", type=pycrdt.Text).insert_embed(0, pycrdt.Map({"a": 1e20})),
        lambda d: d.get("map:m", type=pycrdt.Map).__setitem__("doc", pycrdt.Doc()),
        lambda d: d.get("text:t", type=pycrdt.Text).insert(0, "x", {"size": 1e300}),
    ):
        crafted.append(update_of(make, carol.identity))
    async with RawMember(relay.url, carol.identity, carol.space_bytes) as raw:  # carol's own client, not her Space
        await carol.wait_for_seq(await raw.commit(*(raw.entry(Kind.DATA, update) for update in crafted)))
    carol.text("doc").insert(0, "after")
    await settle([alice, bob, carol])
    assert alice.rejected == [] and alice.error is None and bob.error is None
    assert content_hash(alice.doc) == content_hash(bob.doc) == state_content_hash(alice.doc.get_update())
    # Carol's crafted entries never went through her own document, so she would attest (rightly
    # judged false) to a content other than the log's: only honest members look at the snapshot.
    await carol.close()
    await alice.write_snapshot()
    await settle([alice, bob])
    assert bob.snapshots.bad == [] and alice.error is None and bob.error is None
    for space in (alice, bob):
        await space.close()


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.table("t").insert({"blob": "x" * 1_500_000}),
        lambda s: s.text("doc").insert(0, "y" * 1_200_000),
        lambda s: s.map("m").__setitem__("k", "z" * 1_100_000),
    ],
    ids=["table insert", "text insert", "map value"],
)
async def test_an_oversized_write_is_refused_and_the_space_goes_on(
    relay: RelayHandle, tmp_path: Path, write: Any
) -> None:
    """Before: the call returned, then the space failed with EntryTooLargeError and every write failed."""
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    with pytest.raises(EntryTooLargeError):
        write(alice)
    assert alice.unsent == 0 and content_hash(alice.doc) == content_hash(bob.doc)
    alice.table("t").insert({"small": 1})
    await settle([alice, bob])
    assert alice.error is None and bob.table("t").to_py() == alice.table("t").to_py()
    await alice.close()
    await bob.close()


async def test_the_largest_accepted_edit_reaches_the_others(relay: RelayHandle, tmp_path: Path) -> None:
    """The estimate's limit is conservative: an edit at it fits an entry the relay takes."""
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    longest = MAX_EDIT_BYTES - CALL_BYTES - len("map:m") - (ITEM_BYTES + 5 + 1 + 5)
    with pytest.raises(EntryTooLargeError):
        alice.map("m")["k"] = "x" * (longest + 1)
    alice.map("m")["k"] = "x" * longest
    await settle([alice, bob])
    assert alice.error is None and len(bob.map("m")["k"]) == longest
    with pytest.raises(EntryTooLargeError, match="transaction"), alice.transaction():
        for i in range(12):
            alice.map("m")[f"part{i}"] = "p" * 100_000
    alice.map("m")["after"] = 1
    await settle([alice, bob])
    assert alice.error is None and bob.map("m").to_py() == alice.map("m").to_py()
    await alice.close()
    await bob.close()
