"""Dishonest members over the real relay: a writer's snapshot built to make others lose edits,
a value built to make others' reads raise.

The liar is a member with a writing role, its own client (``RawMember``, a second device of
its person) submitting exact bytes to the real relay over a real socket; the honest members
run the SDK. A member's lie is never the relay's fault: nothing here may fail a space.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pycrdt
import pytest

import encspaces
from encspaces import snapshot_keeper
from encspaces.core.encoding import pack
from encspaces.core.entry import Kind
from encspaces.core.membership import Policy
from encspaces.snapshot import SnapshotPayload, content_hash
from tests.support import AuthoredDoc, RawMember, nest, sealed_presence

from .conftest import RelayHandle, make_members, settle, wait_for
from .test_snapshots import newcomer


@pytest.fixture(autouse=True)
def small_granularity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_keeper, "GRANULARITY", 10)


async def second_device(liar: encspaces.Space) -> encspaces.Identity:
    """A device of the liar's person, with a connection of its own (the SDK holds the first)."""
    assert liar.identity.person is not None
    device = encspaces.Identity.generate()
    device = device.with_certificate(liar.identity.person.certify(device.public))
    await liar.add_device(device.certificate)  # type: ignore[arg-type]
    return device


async def post_disputed(relay: RelayHandle, liar: encspaces.Space, honest: list[encspaces.Space], lie: bytes,
                        words: str) -> None:
    """The liar's second device posts ``lie`` as a snapshot of the log as ``honest[0]`` holds it
    now; both honest members dispute it, and each names the liar alone (attesters not blamed)."""
    assert relay.server is not None
    room = relay.server.rooms[liar.space_bytes]
    base = honest[0].seq
    async with RawMember(relay.url, await second_device(liar), liar.space_bytes) as raw:
        snapshot_seq = await raw.commit(
            raw.entry(Kind.SNAPSHOT, lie, parent_seq=base, parent_hash=honest[0].state.heads[base]))
        liar_id = raw.identity.member_id
    await wait_for(lambda: len(room.state.snapshots[snapshot_seq].attestations) == 2, what="two attestations")
    assert not any(a.agrees for a in room.state.snapshots[snapshot_seq].attestations)
    assert room.state.agreed_snapshot() is None
    for m in honest:
        await m.wait_for_seq(room.state.seq)
        assert [(b.seq, b.author, b.attester) for b in m.snapshots.bad] == [(snapshot_seq, liar_id, False)]
        assert words in str(m.snapshots.bad[0])
        assert m.error is None


async def three_who_wrote(relay: RelayHandle, tmp_path: Path) -> list[encspaces.Space]:
    """Three members who each wrote once to the text "t", caught up; none writes snapshots by itself."""
    _, members = await make_members(relay.url, tmp_path, 3)
    await members[0].set_policy(Policy(snapshot_entries=None, snapshot_bytes=None))
    for i, m in enumerate(members):
        m.text("t").insert(0, f"<{i}>")
        await m.sync()
    await settle(members)
    return members


async def test_a_snapshot_holding_a_members_future_edits_as_deleted_is_disputed(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """A writer's snapshot whose content is the log's, but whose state also holds the victim's
    next Yjs clocks as deleted items: it hashes to the right content (deleted items show no
    content), so a check of content alone agrees with it, and every device that started from
    it would drop the victim's next edits as already seen (silent divergence). The members
    who replayed the log compare the state's clocks with their document's at the base,
    dispute it and name the liar; a new device then replays the full log and sees the edits."""
    members = await three_who_wrote(relay, tmp_path)
    honest, victim, liar = members
    try:
        forged: pycrdt.Doc[object] = pycrdt.Doc(client_id=victim.doc.client_id)  # the victim's Yjs client
        forged.apply_update(honest.doc.get_update())
        text = forged.get("text:t", type=pycrdt.Text)
        text.insert(0, "x" * 64)  # the victim's next 64 clocks...
        del text[0:64]  # ...as deleted items: no content
        assert content_hash(forged) == content_hash(honest.doc), "the lie hashes to the log's content"
        lie = SnapshotPayload(forged.get_update(), content_hash(forged)).encode()
        await post_disputed(relay, liar, [honest, victim], lie, "Yjs clocks")
        victim.text("t").insert(0, "after the snapshot ")
        await victim.sync()
        await settle(members)
        async with await newcomer(relay, honest, tmp_path / "fresh") as fresh:
            await fresh.wait_for_seq(honest.seq)
            assert fresh.snapshots.used is None, "a disputed snapshot is never started from"
            assert str(fresh.text("t")) == str(honest.text("t")) and fresh.error is None
            assert str(fresh.text("t")).startswith("after the snapshot ")
    finally:
        for m in members:
            await m.close()


def first_writers(members: list[encspaces.Space]) -> dict[int, bytes]:
    """Who first wrote under each client id, for members that each wrote in this session only."""
    return {m.doc.client_id: m.identity.public.sign_key for m in members}


@pytest.mark.parametrize("lie", ["another first writer", "no first writers"])
async def test_a_snapshot_whose_first_writers_of_client_ids_are_not_the_logs_is_disputed(
    relay: RelayHandle, tmp_path: Path, lie: str,
) -> None:
    """A writer's snapshot with the log's state and content, but naming itself the first writer of
    the victim's Yjs client id (a device starting from it would then take the liar's items under
    that id and reject the victim's), or naming none: the members who replayed the log dispute it
    and name the liar, and a new device replays the log instead."""
    members = await three_who_wrote(relay, tmp_path)
    honest, victim, liar = members
    try:
        owners = first_writers(members)
        if lie == "another first writer":
            owners[victim.doc.client_id] = liar.identity.public.sign_key
            payload = SnapshotPayload(honest.doc.get_update(), content_hash(honest.doc), owners)
            words = "first writers of Yjs client ids differ from the log's"
        else:
            payload = SnapshotPayload(honest.doc.get_update(), content_hash(honest.doc))  # version 1
            words = "names no first writers of Yjs client ids"
        await post_disputed(relay, liar, [honest, victim], payload.encode(), words)
        async with await newcomer(relay, honest, tmp_path / "fresh") as fresh:
            await fresh.wait_for_seq(honest.seq)
            assert fresh.snapshots.used is None and str(fresh.text("t")) == str(honest.text("t"))
    finally:
        for m in members:
            await m.close()


async def test_a_snapshot_naming_the_logs_first_writers_is_agreed(relay: RelayHandle, tmp_path: Path) -> None:
    """The control for the test above: the same snapshot with the true first writers is agreed."""
    members = await three_who_wrote(relay, tmp_path)
    honest, other, writer = members
    try:
        payload = SnapshotPayload(honest.doc.get_update(), content_hash(honest.doc), first_writers(members))
        assert relay.server is not None
        room = relay.server.rooms[writer.space_bytes]
        base = honest.seq
        async with RawMember(relay.url, await second_device(writer), writer.space_bytes) as raw:
            seq = await raw.commit(raw.entry(Kind.SNAPSHOT, payload.encode(), parent_seq=base,
                                             parent_hash=honest.state.heads[base]))
        await wait_for(lambda: len(room.state.snapshots[seq].attestations) == 2, what="two attestations")
        assert all(a.agrees for a in room.state.snapshots[seq].attestations)
        assert room.state.agreed_snapshot() == (seq, base)
        assert honest.snapshots.bad == [] and other.snapshots.bad == []
    finally:
        for m in members:
            await m.close()


async def test_a_snapshot_claiming_the_logs_content_over_another_state_blames_its_author_alone(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """A snapshot that claims the log's true content hash but carries another state: the honest
    members dispute it (its state does not hash to its claim) and name its author, and none of
    them blames the other for disputing it (the verdict is judged against the device's own
    check of the snapshot, not against "its claim equals our content")."""
    _, members = await make_members(relay.url, tmp_path, 3)
    honest, other, liar = members
    try:
        await honest.set_policy(Policy(snapshot_entries=None, snapshot_bytes=None))
        for i, m in enumerate(members):
            m.map("m")[f"k{i}"] = i
            await m.sync()
        await settle(members)
        forged: pycrdt.Doc[object] = pycrdt.Doc()
        forged.apply_update(honest.doc.get_update())
        forged.get("map:m", type=pycrdt.Map)["k0"] = 1_000_000
        lie = SnapshotPayload(forged.get_update(), content_hash(honest.doc)).encode()  # the true content, claimed
        await post_disputed(relay, liar, [honest, other], lie, "does not hash to the content it claims")
    finally:
        for m in members:
            await m.close()


async def test_a_table_row_nested_deeper_than_python_recurses_reads_and_queries(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """A writer's own client puts a row whose cell is nested 5,000 deep into a table (valid Yjs,
    deeper than the API writes): every member reads the table, queries it by that column
    (equality and order) and keeps writing. Before: ``to_py()``, ``rows()``, ``get()`` and any
    query raised RecursionError on every member, for good."""
    _, members = await make_members(relay.url, tmp_path, 3)
    alice, bob, carol = members
    try:
        table = alice.table("t")
        honest_row = table.insert({"v": 1, "n": "honest"})
        await settle(members)
        authored = AuthoredDoc(carol.identity)
        crafted = authored.doc
        crafted.get("table:t", type=pycrdt.Map)["deep"] = row = pycrdt.Map({"n": "deep", "w": "first"})
        row["v"] = top = pycrdt.Map()
        nest(top, 5000)
        async with RawMember(relay.url, carol.identity, carol.space_bytes) as raw:
            await carol.wait_for_seq(await raw.commit(raw.entry(Kind.DATA, authored.payload(crafted.get_update()))))
            for m in (alice, bob):
                await m.wait_for_seq(carol.seq)
                assert len(m.table("t").rows()) == 2  # the index holds the deep row...
            before = crafted.get_state()
            row["w"] = "later"  # ...and compares it with the row re-read after a change to a column after it
            later = authored.payload(crafted.get_update(before))
            await carol.wait_for_seq(await raw.commit(raw.entry(Kind.DATA, later)))
        await settle(members)
        for m in (alice, bob):
            t = m.table("t")
            rows = t.to_py()
            assert sorted(rows) == sorted([honest_row, "deep"]) and rows[honest_row] == {"v": 1, "n": "honest"}
            assert rows["deep"]["w"] == "later"
            deep, levels = rows["deep"]["v"], 0
            while deep:
                deep, levels = (deep["a"] if isinstance(deep, dict) else deep[0]), levels + 1
            assert levels == 5000
            assert [r.id for r in t.query({"v": 1})] == [honest_row]
            assert [r.id for r in t.query(order_by="v")] == [honest_row, "deep"]
            assert [r.id for r in t.query(order_by="-v")] == ["deep", honest_row]
            assert t.get("deep") is not None and len(t.rows()) == 2
            assert m.rejected == [] and m.error is None
        table.update(honest_row, {"v": 2})
        table.update("deep", {"w": "alice's"})  # her own edit of the deep row: re-read and compared
        await settle(members)
        assert bob.table("t").get(honest_row) == {"v": 2, "n": "honest"}
        assert table.get("deep")["w"] == bob.table("t").get("deep")["w"] == "alice's"  # type: ignore[index]
    finally:
        for m in members:
            await m.close()


async def test_a_presence_state_nested_deeper_than_python_compares_is_dropped(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """A member's own client sends a presence state nested 1,000 lists deep (1 KB, under the
    2 KB limit), twice. Before: the second one made every peer compare it with the first
    (RecursionError) and fail its space with InternalError. Now it is dropped like any
    malformed presence, and the sender's next sane state is shown."""
    _, members = await make_members(relay.url, tmp_path, 2)
    alice, bob = members
    try:
        deep = b"\x81" + pack("cursor") + b"\x91" * 1000 + b"\x90"  # {"cursor": [[[...[]...]]]}
        async with RawMember(relay.url, bob.identity, bob.space_bytes) as raw:
            above = int(time.time() * 1_000_000) + 10**9  # past the counters bob's own device sends
            for counter, state in enumerate([deep, deep, pack({"name": "Bob"})], start=above):
                await raw.presence(sealed_presence(raw, state, counter))
            await wait_for(lambda: alice.presence.peers.get(bob.identity.member_id) == {"name": "Bob"}
                           or alice.error is not None, what="alice to take bob's sane state")
        assert alice.error is None
        with pytest.raises(encspaces.InvalidArgumentError, match="nested more than 64 deep"):
            bob.presence.set({"cursor": nested_lists(64)})  # the SDK sends none a peer would drop
        bob.presence.set({"cursor": nested_lists(63)})  # with the state's own dict: 64 levels
    finally:
        for m in members:
            await m.close()


def nested_lists(depth: int) -> Any:
    """Lists nested ``depth`` deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value
