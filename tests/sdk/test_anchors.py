"""A new device that starts at a snapshot's anchor (docs/PROTOCOL.md section 14, "Anchors").

The relay sends control entries whole and every other entry up to the anchor as its digest,
then the log state there; the device checks the control entries from the genesis, the chain of
digests to signed heads, the state against both, and holds everything until an agreed
snapshot whose attesters stated the same state digest covers it. These tests run the real relay
and check what the device ends up with: the same document, a store that reopens and re-verifies,
digests alone where it skipped entries; and that the relay falls back to a plain fast join where
no anchor is vouched for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import encspaces
from encspaces import errors, faults, snapshot_keeper
from encspaces.core import crypto
from encspaces.core.attestation import SnapshotRecord
from encspaces.core.encoding import pack, unpack
from encspaces.core.entry import Entry, Kind
from encspaces.core.head import SignedHead
from encspaces.core.log_state import ANCHOR_GRID, LogState, anchor_of
from encspaces.core.membership import Policy, Role
from encspaces.core.messages import AnchorState, Entries
from encspaces.history import PRUNED
from encspaces.local import load_stored_log, reverify_local
from encspaces.store import LocalStore
from encspaces_relay import anchors
from encspaces_relay.anchors import catch_up_to
from encspaces_relay.room import Room
from tests.support import wait_for

from .conftest import RelayHandle, make_members, settle
from .test_malicious_relay import Attack, LyingRelay
from .test_random_convergence import random_edit, state
from .test_snapshots import newcomer
from .test_witnessed_log import FAST, witnessed_relay
from .test_witnessed_log import policy as witness_policy


@pytest.fixture(autouse=True)
def small_granularity(monkeypatch: pytest.MonkeyPatch) -> None:
    # bases at multiples of 10: the stretch between the anchor and the base is then sent stripped
    monkeypatch.setattr(snapshot_keeper, "GRANULARITY", 10)


def anchored_record(room: Room) -> SnapshotRecord | None:
    """The agreed snapshot the relay starts new devices from, if every attester stated its anchor."""
    agreed = room.state.agreed_snapshot()
    if agreed is None:
        return None
    record = room.state.snapshots[agreed[0]]
    if anchor_of(record.base) and record.anchored(room.state.policy.snapshot_attesters):
        return record
    return None


async def write_log(rng: random.Random, members: list[encspaces.Space], edits: int) -> None:
    for step in range(edits):
        who = step % len(members)
        random_edit(rng, members[who], who, step)
        await members[who].sync()
    await settle(members)


async def anchored_space(relay: RelayHandle, tmp_path: Path, edits: int = 2 * ANCHOR_GRID + 30
                         ) -> tuple[list[encspaces.Space], SnapshotRecord]:
    """Two writers, a log past two anchors, and an agreed snapshot whose attestations state its anchor."""
    assert relay.server is not None
    _, members = await make_members(relay.url, tmp_path, 2)
    await members[0].set_policy(Policy(snapshot_entries=40))
    await write_log(random.Random(7), members, edits)
    await members[0].write_snapshot()  # (besides those the policy wrote: one at the log's end, whatever the timing)
    room = relay.server.rooms[members[0].space_bytes]
    await wait_for(lambda: anchored_record(room) is not None, what="an agreed snapshot that states its anchor")
    await settle(members)
    record = anchored_record(room)
    assert record is not None
    return members, record


async def joins(relay: RelayHandle, admin: encspaces.Space, path: Path, *, anchored: bool) -> None:
    """A newcomer's new device ends with the same space, with digest-only rows or without."""
    fresh = await newcomer(relay, admin, path)
    try:
        await fresh.wait_for_seq(admin.seq)
        assert fresh.error is None and state(fresh) == state(admin)
        assert any(h.kind == PRUNED for h in await fresh.history(limit=admin.seq)) is anchored
    finally:
        await fresh.close()


async def test_a_new_device_starts_at_the_anchor_and_ends_with_the_same_space(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    assert relay.server is not None
    members, _ = await anchored_space(relay, tmp_path)
    admin = members[0]
    room = relay.server.rooms[admin.space_bytes]
    fresh = await newcomer(relay, admin, tmp_path / "fresh")
    # The anchor the relay started it at (a snapshot written meanwhile may have moved it on).
    assert room.anchor_catch_up is not None
    anchor = room.anchor_catch_up[0]
    try:
        await fresh.wait_for_seq(admin.seq)
        assert fresh.error is None
        assert state(fresh) == state(admin)
        listed = {h.seq: h for h in await fresh.history(limit=admin.seq)}
        pruned = sorted(seq for seq, h in listed.items() if h.kind == PRUNED)
        assert pruned and pruned[-1] <= anchor, "entries up to the anchor came as digests"
        assert listed[1].kind == "genesis" and listed[1].author == admin.identity.member_id
        assert all(h.kind != PRUNED for seq, h in listed.items() if seq > anchor)
        # every data entry up to the anchor is a digest; control entries came whole
        admin_kinds = {h.seq: h.kind for h in await admin.history(limit=admin.seq)}
        assert {seq for seq in range(1, anchor + 1) if admin_kinds[seq] in ("data", "attest", "snapshot")} \
            == set(pruned)
        # time travel: back to the snapshot's base and after it, not before the anchor
        assert str((await fresh.at(fresh.seq)).text("t")) == str(fresh.text("t"))
        with pytest.raises(errors.HistoryError, match="started at a later anchor"):
            await fresh.at(anchor - 1)
        # both ways, live
        fresh.text("t").insert(0, "from the anchored device ")
        await fresh.sync()
        admin.text("t").insert(0, "and back ")
        await admin.sync()
        await fresh.wait_for_seq(admin.seq)
        await settle([*members, fresh])
        assert state(fresh) == state(admin)
    finally:
        await fresh.close()
    # the store it kept reopens without the relay's help and re-verifies from the genesis
    report = await reverify_local(fresh.identity, fresh.id, data_dir=tmp_path / "fresh")
    assert report.error is None
    assert report.seq == fresh.seq
    again = await encspaces.connect(relay.url, fresh.identity, fresh.id, data_dir=tmp_path / "fresh")
    try:
        await again.wait_for_seq(admin.seq)
        assert again.error is None
        assert state(again) == state(admin)
    finally:
        await again.close()
        for m in members:
            await m.close()


async def test_a_short_log_has_no_anchor_and_joins_as_before(relay: RelayHandle, tmp_path: Path) -> None:
    """Below the first grid seq no snapshot names an anchor: the relay sends a plain fast catch-up."""
    assert relay.server is not None
    _, members = await make_members(relay.url, tmp_path, 2)
    admin = members[0]
    await admin.set_policy(Policy(snapshot_entries=15))
    await write_log(random.Random(3), members, 60)
    await admin.write_snapshot()
    room = relay.server.rooms[admin.space_bytes]
    await wait_for(lambda: room.state.agreed_snapshot() is not None, what="an agreed snapshot")
    agreed = room.state.agreed_snapshot()
    assert agreed is not None and agreed[1] < ANCHOR_GRID
    try:
        await joins(relay, admin, tmp_path / "fresh", anchored=False)
    finally:
        for m in members:
            await m.close()


# --- a lying relay: every part of an anchored catch-up is checked --------------------------


class AnchorLiar(LyingRelay):
    """Rewrites the log state it sends for an anchor (``rewrite``), or what it sends before it (``attack``)."""

    rewrite: Callable[[LogState], None] | None = None
    restate = True  # the state's own digest at the anchor recomputed after the rewrite

    def encode_anchor_state(self, space: bytes, seq: int, state: bytes) -> bytes:
        if self.rewrite is not None:
            forged = LogState.restore(space, state, self.rooms[space].state.heads[: seq + 1])
            self.rewrite(forged)
            if self.restate:
                forged.anchors[seq] = forged.state_digest()
            state = forged.export()
        return super().encode_anchor_state(space, seq, state)


def sparse(entries: Sequence[bytes]) -> bool:
    return any(len(raw) == crypto.HASH_SIZE for raw in entries)


async def lied_to(tmp_path: Path, arm: Callable[[AnchorLiar], None]) -> Exception:
    """A newcomer's anchored catch-up from a relay armed by ``arm``: why it failed. Nothing of it
    reached the newcomer's store (whatever the relay's state lets through is held until covered)."""
    handle = RelayHandle(tmp_path / "relay", AnchorLiar)
    server = await handle.start()
    assert isinstance(server, AnchorLiar)
    server.shows_checkpoints = False
    members, _ = await anchored_space(handle, tmp_path)
    arm(server)
    ident = encspaces.Identity.generate()
    await members[0].add_member(ident.public)
    data_dir = tmp_path / "fresh"
    try:
        fresh = await encspaces.connect(handle.url, ident, members[0].id, data_dir=data_dir)
    except errors.EncspacesError as exc:
        error: Exception = exc
    else:
        await wait_for(lambda: fresh.error is not None, what="the new device to fail")
        assert fresh.error is not None
        error = fresh.error
        await fresh.close()
    stored = await load_stored_log(ident, members[0].id, data_dir=data_dir)
    assert stored.rows == [] and stored.anchor is None
    for m in members:
        await m.close()
    return error


def raise_author_seq(state: LogState) -> None:
    author = next(iter(state.author_seqs))
    state.author_seqs[author] = (state.author_seqs[author] or 0) + 5


def promote_everyone(state: LogState) -> None:
    state.members = {key: dataclasses.replace(m, role=Role.ADMIN) for key, m in state.members.items()}


def hide_a_control_entry(r: LyingRelay, space: bytes, first: int, entries: list[bytes],
                         head: SignedHead) -> list[bytes] | None:
    """The policy entry sent as its digest, as if it were data (the chain is the same)."""
    if not sparse(entries):
        return None
    for i, raw in enumerate(entries):
        if len(raw) != crypto.HASH_SIZE and Entry.decode(raw).header.kind is Kind.POLICY:
            r.attack = None
            hidden = [*entries[:i], Entry.decode(raw).digest(), *entries[i + 1:]]
            return [Entries(first, hidden, head).encode()]
    return None


def swap_a_digest(r: LyingRelay, space: bytes, first: int, entries: list[bytes],
                  head: SignedHead) -> list[bytes] | None:
    if not sparse(entries):
        return None
    r.attack = None
    i = next(i for i, raw in enumerate(entries) if len(raw) == crypto.HASH_SIZE)
    return [Entries(first, [*entries[:i], crypto.random_key(), *entries[i + 1:]], head).encode()]


def rewriting(rewrite: Callable[[LogState], None], *, restate: bool = True) -> Callable[[AnchorLiar], None]:
    def arm(r: AnchorLiar) -> None:
        r.rewrite, r.restate = rewrite, restate

    return arm


def attacking(attack: Attack) -> Callable[[AnchorLiar], None]:
    def arm(r: AnchorLiar) -> None:
        r.attack = attack

    return arm


@pytest.mark.parametrize(("arm", "error", "says"), [
    # counters are the relay's word until attesters state the same digest: a state consistent
    # with itself but not the log's is caught by the first entry or attestation it contradicts
    pytest.param(rewriting(raise_author_seq), errors.AnchorStateError, "is not the log's", id="forged counter"),
    pytest.param(rewriting(promote_everyone), errors.AnchorStateError,
                 "than the control entries from genesis decide", id="members the control entries did not make"),
    pytest.param(rewriting(raise_author_seq, restate=False), errors.AnchorStateError, "but it states",
                 id="a state that does not hash to its own digest"),
    pytest.param(attacking(hide_a_control_entry), errors.AnchorStateError,
                 "than the control entries from genesis decide", id="a control entry sent as a digest"),
    pytest.param(attacking(swap_a_digest), errors.ChainError, "do not chain from our head",
                 id="digests that do not chain to the signed head"),
])
async def test_a_lying_relay_is_caught_in_a_catch_up_to_an_anchor(
    tmp_path: Path, arm: Callable[[AnchorLiar], None], error: type[Exception], says: str,
) -> None:
    found = await lied_to(tmp_path, arm)
    assert isinstance(found, error), repr(found)
    assert says in str(found)


async def two_members(tmp_path: Path) -> tuple[LyingRelay, list[encspaces.Space]]:
    handle = RelayHandle(tmp_path / "relay", LyingRelay)
    server = await handle.start()
    assert isinstance(server, LyingRelay)
    _, members = await make_members(handle.url, tmp_path, 2)
    return server, members


def digest_in_live(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    r.attack = None
    return [Entries(first, [Entry.decode(raw).digest() for raw in entries], head).encode()]


def state_in_live(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    r.attack = None
    return [AnchorState(first - 1, r.rooms[space].state.export()).encode(), Entries(first, entries, head).encode()]


@pytest.mark.parametrize(("attack", "error", "says"), [
    (digest_in_live, errors.MissingBodiesError, "as its digest alone, outside a new device's catch-up"),
    (state_in_live, errors.MalformedFrameError, "unexpected anchorstate message in state live"),
])
async def test_digests_and_anchor_states_outside_a_new_devices_catch_up_are_refused(
    tmp_path: Path, attack: Attack, error: type[Exception], says: str,
) -> None:
    """To a device that holds the log, a digest in place of an entry, or a log state, is an attack."""
    server, (alice, bob) = await two_members(tmp_path)
    try:
        seq = bob.seq
        server.attack = attack
        alice.text("t").insert(0, "x")
        await wait_for(lambda: bob.error is not None, what="bob to refuse the frame")
        assert isinstance(bob.error, error)
        assert says in str(bob.error)
        assert bob.seq == seq
    finally:
        await alice.close()
        await bob.close()


async def test_a_device_resuming_from_a_checkpoint_from_before_anchors_agrees_with_the_others(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """Its ring of anchors is rebuilt from its store: without it, its digest at the next grid seq
    would differ from every other member's, and the first attestation would fail one side."""
    assert relay.server is not None
    ids, members = await make_members(relay.url, tmp_path, 2, encspaces.SpaceOptions(checkpoint_every=20))
    admin, bob = members
    await admin.set_policy(Policy(snapshot_entries=None, snapshot_bytes=None))
    await write_log(random.Random(11), members, ANCHOR_GRID + 30)
    space_id, space_bytes = bob.id, bob.space_bytes
    await bob.close()
    store = await LocalStore.open(tmp_path / "m1", space_bytes.hex())
    try:
        checkpoint = await store.load_checkpoint()
        assert checkpoint is not None and checkpoint[0] >= ANCHOR_GRID
        seq, blob, document = checkpoint
        old = unpack(blob)
        state = unpack(old["state"])
        del state["anchors"]  # as written before anchors existed
        old["state"] = pack(state)
        await store.write(checkpoint=(seq, pack(old), document))
    finally:
        await store.close()
    bob = await encspaces.connect(relay.url, ids[1], space_id, data_dir=tmp_path / "m1")
    members = [admin, bob]
    try:
        await admin.set_policy(Policy(snapshot_entries=40))
        await write_log(random.Random(12), members, ANCHOR_GRID + 10)
        await admin.write_snapshot()  # at the log's end: past the second grid seq, whatever the timing
        room = relay.server.rooms[space_bytes]
        await wait_for(lambda: (r := anchored_record(room)) is not None and anchor_of(r.base) > ANCHOR_GRID,
                       what="an anchored snapshot past the second grid seq")
        await settle(members)
        assert admin.error is None and bob.error is None
    finally:
        for m in members:
            await m.close()


async def test_a_device_that_starts_at_an_anchor_checks_the_witnessed_checkpoints(tmp_path: Path) -> None:
    """The Merkle tree grows from the digests alone: the checkpoints the witnesses cosigned match
    the tree the new device built, and it reports the log witnessed through its head."""
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        assert relay.server is not None
        ids = [encspaces.Identity.generate() for _ in range(3)]
        admin = await encspaces.create_space(relay.url, ids[0], data_dir=tmp_path / "m0",
                                             witnesses=witness_policy(witnesses), options=FAST)
        await admin.add_member(ids[1].public)
        bob = await encspaces.connect(relay.url, ids[1], admin.id, data_dir=tmp_path / "m1", options=FAST)
        members = [admin, bob]
        try:
            await admin.set_policy(Policy(snapshot_entries=40))
            await write_log(random.Random(9), members, 2 * ANCHOR_GRID + 30)
            await admin.write_snapshot()
            room = relay.server.rooms[admin.space_bytes]
            await wait_for(lambda: anchored_record(room) is not None, what="an anchored agreed snapshot")
            await settle(members)
            await admin.add_member(ids[2].public)
            fresh = await encspaces.connect(relay.url, ids[2], admin.id, data_dir=tmp_path / "fresh", options=FAST)
            try:
                await fresh.wait_for_seq(admin.seq)
                assert any(h.kind == PRUNED for h in await fresh.history(limit=admin.seq))
                await wait_for(lambda: fresh.witnessed_seq is not None and fresh.witnessed_seq >= admin.seq - 1,
                               what="the new device to see the log witnessed")
                assert fresh.error is None and state(fresh) == state(admin)
            finally:
                await fresh.close()
        finally:
            for m in members:
                await m.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import encspaces

    async def main():
        url, identity_file, space_id, data_dir = sys.argv[1:5]
        identity = encspaces.Identity.load(identity_file)
        await encspaces.connect(url, identity, space_id, data_dir=data_dir)
        print("LIVE", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("crash_at", ["anchored:1", "logged:1"])
async def test_kill_9_during_a_start_at_an_anchor_reopens_to_the_same_space(
    relay: RelayHandle, tmp_path: Path, crash_at: str,
) -> None:
    """Killed once the state is installed (nothing stored yet) or right after the one transaction
    that stores the rows, the anchor and a checkpoint: the device reopens, converges and its
    store re-verifies."""
    members, _ = await anchored_space(relay, tmp_path)
    admin = members[0]
    ident = encspaces.Identity.generate()
    ident.save(tmp_path / "fresh.key")
    await admin.add_member(ident.public)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), relay.url, str(tmp_path / "fresh.key"), admin.id, str(tmp_path / "fresh"),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, faults.ENV: crash_at},
    )
    assert child.stdout is not None
    said = await asyncio.wait_for(child.stdout.read(), 60)
    assert await child.wait() == -signal.SIGKILL  # by itself, at the step (the test never kills it)
    if crash_at.startswith("anchored"):
        assert b"LIVE" not in said  # during the catch-up that connect waits for
    try:
        again = await encspaces.connect(relay.url, ident, admin.id, data_dir=tmp_path / "fresh")
        try:
            await again.wait_for_seq(admin.seq)
            assert again.error is None and state(again) == state(admin)
            assert any(h.kind == PRUNED for h in await again.history(limit=admin.seq))
        finally:
            await again.close()
        report = await reverify_local(ident, admin.id, data_dir=tmp_path / "fresh")
        assert report.error is None and report.seq >= admin.seq
    finally:
        for m in members:
            await m.close()


async def test_the_relay_builds_a_later_anchor_on_from_the_one_before(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each new anchor costs the relay the entries since the last one, with the very result of a
    rebuild from the genesis."""
    assert relay.server is not None
    members, _ = await anchored_space(relay, tmp_path)
    admin = members[0]
    room = relay.server.rooms[admin.space_bytes]
    try:
        fresh = await newcomer(relay, admin, tmp_path / "fresh")
        await fresh.close()
        assert room.anchor_catch_up is not None
        first = room.anchor_catch_up[0]  # (where the relay started it: a newer snapshot may have moved it on)
        await write_log(random.Random(8), members, ANCHOR_GRID + 30)
        await admin.write_snapshot()
        await wait_for(lambda: (r := anchored_record(room)) is not None and anchor_of(r.base) > first,
                       what="an anchored snapshot past the next grid seq")
        await settle(members)
        read: list[int] = []
        read_headers = anchors._read_headers

        async def counted(room: Room, first: int, last: int) -> list[Entry]:
            read.append(first)
            return await read_headers(room, first, last)

        monkeypatch.setattr(anchors, "_read_headers", counted)
        other = await newcomer(relay, admin, tmp_path / "other")
        try:
            await other.wait_for_seq(admin.seq)
            assert other.error is None and state(other) == state(admin)
        finally:
            await other.close()
        built = room.anchor_catch_up
        assert built is not None and built[0] > first
        assert read and min(read) == first + 1  # only the entries since the first anchor were read
        monkeypatch.setattr(anchors, "_read_headers", read_headers)
        room.anchor_catch_up = None
        assert await catch_up_to(room, built[0], room.state.anchors[built[0]]) == (built[1], built[2])
    finally:
        for m in members:
            await m.close()


async def test_a_store_missing_entries_below_the_anchor_falls_back_to_a_plain_fast_join(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The relay never loops on it: it logs the gap and sends the fast catch-up of before."""
    assert relay.server is not None
    members, record = await anchored_space(relay, tmp_path)
    admin = members[0]
    room = relay.server.rooms[admin.space_bytes]
    assert record.anchor is not None
    try:
        async def nothing(room: Room, first: int, last: int) -> list[Entry]:
            return []

        monkeypatch.setattr(anchors, "_read_headers", nothing)
        room.anchor_catch_up = None
        async with asyncio.timeout(10):
            assert await catch_up_to(room, anchor_of(record.base), record.anchor) is None
        assert "the store holds no entry at seq 1" in caplog.text
        await joins(relay, admin, tmp_path / "fresh", anchored=False)
    finally:
        for m in members:
            await m.close()


async def test_a_members_new_device_starts_at_the_anchor_and_writes(relay: RelayHandle, tmp_path: Path) -> None:
    """A paired device (its certificate in an add_device control entry) and a reader: both start at
    the anchor, with the devices and roles the control entries decide."""
    members, _ = await anchored_space(relay, tmp_path)
    admin, bob = members
    tablet_id = encspaces.Identity.generate()
    reader_id = encspaces.Identity.generate()
    try:
        cert = await encspaces.add_device([bob], tablet_id.pairing_request("tablet"))
        tablet_id = tablet_id.with_certificate(cert)
        await admin.add_member(reader_id.public, "reader")
        tablet = await encspaces.connect(relay.url, tablet_id, admin.id, data_dir=tmp_path / "tablet")
        reader = await encspaces.connect(relay.url, reader_id, admin.id, data_dir=tmp_path / "reader")
        try:
            for device in (tablet, reader):
                await device.wait_for_seq(admin.seq)
                assert any(h.kind == PRUNED for h in await device.history(limit=admin.seq))
            assert tablet.device_certificate == cert
            assert tablet.state.role_of(tablet_id.public.sign_key) is Role.WRITER
            assert reader.state.role_of(reader_id.public.sign_key) is Role.READER
            tablet.text("t").insert(0, "from bob's tablet ")
            await settle([*members, tablet, reader])
            assert state(tablet) == state(admin) == state(reader)
            assert all(d.error is None for d in (*members, tablet, reader))
        finally:
            await tablet.close()
            await reader.close()
    finally:
        for m in members:
            await m.close()
