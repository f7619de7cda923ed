"""Snapshots: fast join, checking (and blaming) bad ones, and compaction of old bodies."""

from __future__ import annotations

import random
from pathlib import Path

import pycrdt
import pytest

import encspaces
from encspaces import snapshot_keeper
from encspaces.entry import Kind
from encspaces.errors import BadSnapshotError
from encspaces.membership import Policy
from encspaces.snapshot import SnapshotPayload, content_hash
from relay.compact import compact

from .conftest import RelayHandle, make_members, settle, wait_for
from .test_presence import quick
from .test_random_convergence import random_edit, state


@pytest.fixture(autouse=True)
def small_granularity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_keeper, "GRANULARITY", 10)


async def edit_rounds(rng: random.Random, members: list[encspaces.Space], rounds: int) -> None:
    for step in range(rounds):
        who = rng.randrange(len(members))
        random_edit(rng, members[who], who, step)
        await members[who].sync()
        await settle(members)  # idle moments: members note the content at frame ends


async def snapshot_written(relay: RelayHandle, space: encspaces.Space) -> None:
    """An idle member wrote a snapshot by itself (after its short random delay)."""
    assert relay.server is not None
    room = relay.server.rooms[space.space_bytes]
    await wait_for(lambda: room.state.snapshot is not None, what="a member to write a snapshot")
    await space.wait_for_seq(room.state.seq)


async def newcomer(relay: RelayHandle, admin: encspaces.Space, path: Path) -> encspaces.Space:
    ident = encspaces.Identity.generate()
    await admin.add_member(ident.public)
    return await encspaces.connect(relay.url, ident, admin.id, data_dir=path)


async def test_joining_from_a_snapshot_gives_the_full_replay_state(relay: RelayHandle, tmp_path: Path) -> None:
    rng = random.Random(5)
    _, members = await make_members(relay.url, tmp_path, 2)
    admin = members[0]
    try:
        await admin.set_policy(Policy(snapshot_entries=15))
        await edit_rounds(rng, members, 60)
        await snapshot_written(relay, admin)
        fresh = await newcomer(relay, admin, tmp_path / "fresh")
        try:
            await fresh.wait_for_seq(admin.seq)
            assert fresh.snapshots.stripped_through > 0, "the relay sent the old bodies stripped"
            assert fresh.snapshots.used is not None
            assert state(fresh) == state(admin)
            assert fresh.error is None
        finally:
            await fresh.close()
    finally:
        for m in members:
            await m.close()


async def test_a_bad_snapshot_is_caught_and_its_author_named(relay: RelayHandle, tmp_path: Path) -> None:
    rng = random.Random(8)
    _, members = await make_members(relay.url, tmp_path, 3)
    honest, _, liar = members
    try:
        await honest.set_policy(Policy(snapshot_entries=None, snapshot_bytes=None))  # only the liar writes one
        await edit_rounds(rng, members, 40)
        base = max(honest.snapshots.content_at)
        forged: pycrdt.Doc[object] = pycrdt.Doc()
        forged.get("text:t", type=pycrdt.Text).insert(0, "this never happened")
        lie = SnapshotPayload(forged.get_update(), content_hash(forged)).encode()
        liar._queue_entry(Kind.SNAPSHOT, lie, (base, liar._verifier.state.heads[base]))
        await liar.sync()
        await honest.wait_for_seq(liar.seq)
        assert [b.author for b in honest.snapshots.bad] == [liar.identity.member_id]
        assert "differs from the document this device held" in str(honest.snapshots.bad[0])
        assert honest.error is None  # a member's bad snapshot is not the relay's fault

        quick(honest)
        fresh = await newcomer(relay, honest, tmp_path / "fresh")
        try:
            await wait_for(lambda: fresh.error is not None, what="the newcomer to be told")
            assert isinstance(fresh.error, BadSnapshotError)
            assert fresh.error.author == liar.identity.member_id
        finally:
            await fresh.close()
    finally:
        for m in members:
            await m.close()


async def test_after_compaction_new_and_returning_devices_reach_the_current_state(
    relay: RelayHandle, tmp_path: Path
) -> None:
    rng = random.Random(3)
    _, members = await make_members(relay.url, tmp_path, 3)
    admin, writer, away = members
    try:
        await admin.set_policy(Policy(snapshot_entries=15))
        await edit_rounds(rng, members, 10)
        away_id, away_seq = away.identity, away.seq
        await away.close()  # offline for everything that follows
        await edit_rounds(rng, [admin, writer], 60)
        await snapshot_written(relay, admin)
        report = compact(relay.data_dir, keep_seconds=0)
        assert report[0].stripped > 0 and report[0].bytes_freed > 0
        fresh = await newcomer(relay, admin, tmp_path / "fresh")
        back = await encspaces.connect(relay.url, away_id, admin.id, data_dir=tmp_path / "m2")
        try:
            await fresh.wait_for_seq(admin.seq)
            await back.wait_for_seq(admin.seq)
            assert back.seq > away_seq
            assert state(fresh) == state(admin) == state(back)
            assert fresh.error is None and back.error is None
        finally:
            await fresh.close()
            await back.close()
    finally:
        for m in (admin, writer):
            await m.close()


async def test_oversized_entries_are_refused_before_they_are_sent(relay: RelayHandle, tmp_path: Path) -> None:
    ident = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, ident, data_dir=tmp_path / "a")
    try:
        with pytest.raises(encspaces.errors.EntryTooLargeError, match="split it into smaller edits"):
            space.text("doc").insert(0, "x" * (1100 * 1024))  # one edit over the entry limit: refused at the call
        assert space.unsent == 0, "nothing that cannot be delivered is queued"
        await space.sync()
        assert space.error is None, "a refused local write never fails the space"
    finally:
        await space.close()
    again = await encspaces.connect(relay.url, ident, space.id, data_dir=tmp_path / "a")
    try:
        assert again.error is None and str(again.text("doc")) == ""  # reopens cleanly, without that edit
    finally:
        await again.close()
