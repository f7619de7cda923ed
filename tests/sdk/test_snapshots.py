"""Snapshots: fast join, checking (and blaming) bad ones, and compaction of old bodies."""

from __future__ import annotations

import random
from pathlib import Path

import pycrdt
import pytest

import encspaces
from encspaces import snapshot_keeper
from encspaces.core.attestation import AttestBody, Status
from encspaces.core.entry import Entry, Kind
from encspaces.core.head import SignedHead
from encspaces.core.membership import Policy
from encspaces.core.presence import PresenceClaim, seal_presence
from encspaces.errors import BodyDigestError, RelayError
from encspaces.snapshot import SnapshotPayload, content_hash
from encspaces_relay.compact import compact
from tests.support import RawMember

from .conftest import RelayHandle, make_members, settle, wait_for
from .test_malicious_relay import LyingRelay, reencode
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
    """An idle member wrote a snapshot by itself (after its short random delay), and another attested it."""
    assert relay.server is not None
    room = relay.server.rooms[space.space_bytes]
    await wait_for(lambda: room.state.agreed_snapshot() is not None, what="a member to write a snapshot, another "
                   "to attest it")
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


async def test_a_new_device_notes_no_content_inside_the_stretch_a_snapshot_covered(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """Started from a snapshot, the document is the log at the snapshot's base, not at the
    granularity steps of the stripped stretch before it: noting it there would make this
    device judge (and attest) a later snapshot of such a step against the wrong content."""
    rng = random.Random(5)
    _, members = await make_members(relay.url, tmp_path, 2)
    admin = members[0]
    late = encspaces.Identity.generate()  # a member from the start, whose first device opens at the end
    assert relay.server is not None
    try:
        await admin.add_member(late.public)
        await admin.set_policy(Policy(snapshot_entries=15))
        await edit_rounds(rng, members, 30)
        # The last data entry at a multiple of the granularity, and a snapshot of the document there.
        step = 30
        while admin.seq % 10 != 0 or admin.state.data_since_snapshot < 15:
            random_edit(rng, admin, 0, step)
            await admin.sync()
            step += 1
        base = admin.seq
        room = relay.server.rooms[admin.space_bytes]
        await wait_for(lambda: (room.state.agreed_snapshot() or (0, 0))[1] == base, what="the snapshot at the end")
        await settle(members)
        fresh = await encspaces.connect(relay.url, late, admin.id, data_dir=tmp_path / "fresh")
        try:
            await fresh.wait_for_seq(admin.seq)
            used = fresh.snapshots.used
            assert used is not None and fresh.state.snapshots[used[0]].base == base
            assert fresh.snapshots.stripped_through > base - 10, "the step before the base was stripped"
            assert sorted(fresh.snapshots.content_at) == [base]
            assert fresh.snapshots.content_at[base] == admin.snapshots.content_at[base]
        finally:
            await fresh.close()
    finally:
        for m in members:
            await m.close()


async def test_a_lying_snapshot_is_never_used_and_its_liar_is_named(relay: RelayHandle, tmp_path: Path) -> None:
    rng = random.Random(8)
    _, members = await make_members(relay.url, tmp_path, 3)
    honest, other, liar = members
    try:
        await honest.set_policy(Policy(snapshot_entries=None, snapshot_bytes=None))  # only the liar writes one
        honest.map("m")["price"] = 100
        await edit_rounds(rng, members, 40)
        base = max(honest.snapshots.content_at)
        forged: pycrdt.Doc[object] = pycrdt.Doc()
        forged.apply_update(honest.doc.get_update())
        forged.get("map:m", type=pycrdt.Map)["price"] = 1_000_000  # self-consistent: it hashes to its claim
        lie = SnapshotPayload(forged.get_update(), content_hash(forged)).encode()
        # The liar's own client: a second device of the liar's (one device key has one writing connection).
        assert liar.identity.person is not None
        liar_device = encspaces.Identity.generate()
        liar_device = liar_device.with_certificate(liar.identity.person.certify(liar_device.public))
        await liar.add_device(liar_device.certificate)  # type: ignore[arg-type]
        async with RawMember(relay.url, liar_device, liar.space_bytes) as raw:
            snapshot_seq = await raw.commit(
                raw.entry(Kind.SNAPSHOT, lie, parent_seq=base, parent_hash=liar.state.heads[base]))
        await liar.wait_for_seq(snapshot_seq)
        assert relay.server is not None
        room = relay.server.rooms[honest.space_bytes]
        # Both honest members checked it against the log and said so, signed.
        await wait_for(lambda: len(room.state.snapshots[snapshot_seq].attestations) == 2, what="two attestations")
        assert not any(a.agrees for a in room.state.snapshots[snapshot_seq].attestations)
        assert room.state.agreed_snapshot() is None
        for m in (honest, other):
            await m.wait_for_seq(room.state.seq)
            assert [b.author for b in m.snapshots.bad] == [liar_device.member_id]
            assert "differs from the document this device held" in str(m.snapshots.bad[0])
            assert m.error is None  # a member's lie is not the relay's fault

        fresh = await newcomer(relay, honest, tmp_path / "fresh")
        try:
            await fresh.wait_for_seq(room.state.seq)
            assert fresh.snapshots.used is None and fresh.snapshots.stripped_through == 0  # the full log
            assert fresh.map("m")["price"] == 100
            assert state(fresh) == state(honest)
            assert fresh.error is None
            blamed = fresh.snapshots.bad[0]
            assert blamed.author == liar_device.member_id and not blamed.attester
            evidence = Entry.decode(blamed.evidence[0])  # the liar's signed snapshot itself
            assert evidence.header.kind is Kind.SNAPSHOT and evidence.author_id == liar_device.member_id
            evidence.check_signature()
            fresh.map("m")["price"] = 101  # its edits are not left pending
            await fresh.sync()
            await honest.wait_for_seq(fresh.seq)
            assert honest.map("m")["price"] == 101
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


async def test_a_readers_false_report_does_not_stop_fast_joins(relay: RelayHandle, tmp_path: Path) -> None:
    rng = random.Random(11)
    _, members = await make_members(relay.url, tmp_path, 3)
    admin, writer, reader = members
    try:
        await admin.set_role(reader.identity.member_id, "reader")
        await admin.set_policy(Policy(snapshot_entries=15))
        await edit_rounds(rng, [admin, writer], 60)
        await snapshot_written(relay, admin)
        assert relay.server is not None
        room = relay.server.rooms[admin.space_bytes]
        agreed = room.state.agreed_snapshot()
        assert agreed is not None
        await reader.wait_for_seq(room.state.seq)
        # The old way: a presence message calling it bad. Ignored by everyone.
        async with RawMember(relay.url, reader.identity, reader.space_bytes) as raw:  # the reader's own client
            verifier = raw.verifier
            claim = PresenceClaim(verifier.latest_head, (agreed[0],))
            await raw.presence(seal_presence(reader.identity, reader.space_bytes, verifier.state.epoch,
                                             verifier.epoch_keys[verifier.state.epoch], {}, claim, 0))
            # The new way: a disagreeing attestation. A reader may not attest: the relay refuses it.
            with pytest.raises(RelayError) as refused:
                await raw.submit(raw.entry(Kind.ATTEST, AttestBody(agreed[0], bytes(32), False).encode()))
        assert refused.value.code == "rejected"
        assert "may not attest snapshots" in str(refused.value)
        # The reader's attestation changed nothing: that snapshot is still agreed (policy snapshots
        # written since may be agreed too).
        assert room.state.snapshot_status(agreed[0]) is Status.AGREED

        fresh = await newcomer(relay, admin, tmp_path / "fresh")
        try:
            await fresh.wait_for_seq(admin.seq)
            # That snapshot, or a newer one agreed since (policy snapshots keep coming): a fast join.
            # Two idle members may both write one at the same base (each before the other's
            # arrives): the device starts from the first agreed one it meets, an older seq than
            # ``agreed`` but the same state. So the base is what must be at least ``agreed``'s.
            used = fresh.snapshots.used
            assert used is not None and room.state.snapshots[used[0]].base >= agreed[1], (used, agreed)
            assert fresh.snapshots.stripped_through > 0
            assert state(fresh) == state(admin)
            assert fresh.error is None
        finally:
            await fresh.close()
    finally:
        for m in members:
            await m.close()


async def test_a_threshold_of_two_attesters(relay: RelayHandle, tmp_path: Path) -> None:
    rng = random.Random(12)
    identities, members = await make_members(relay.url, tmp_path, 3)
    admin, writer, away = members
    try:
        await admin.set_policy(Policy(snapshot_entries=15, snapshot_attesters=2))
        await away.close()  # only one member besides the snapshot's author is there to attest
        await edit_rounds(rng, [admin, writer], 60)
        assert relay.server is not None
        room = relay.server.rooms[admin.space_bytes]
        await wait_for(lambda: any(r.attestations for r in room.state.snapshots.values()), what="one attestation")
        await settle([admin, writer])
        assert all(room.state.snapshot_status(seq) is Status.PENDING for seq in room.state.snapshots)
        first = await newcomer(relay, admin, tmp_path / "first")
        try:
            await first.wait_for_seq(admin.seq)
            assert first.snapshots.used is None and first.snapshots.stripped_through == 0
            assert state(first) == state(admin)
        finally:
            await first.close()
        # The second member comes back, checks the snapshot as it catches up, and attests it too.
        back = await encspaces.connect(relay.url, identities[2], admin.id, data_dir=tmp_path / "m2")
        try:
            await wait_for(lambda: room.state.agreed_snapshot() is not None, what="a second attestation")
            await settle([admin, writer, back])
            second = await newcomer(relay, admin, tmp_path / "second")
            try:
                await second.wait_for_seq(admin.seq)
                assert second.snapshots.used is not None and second.snapshots.stripped_through > 0
                assert state(second) == state(admin)
            finally:
                await second.close()
        finally:
            await back.close()
    finally:
        for m in (admin, writer):
            await m.close()


async def test_compaction_leaves_an_unattested_snapshots_coverage(relay: RelayHandle, tmp_path: Path) -> None:
    rng = random.Random(13)
    _, members = await make_members(relay.url, tmp_path, 2)
    admin, other = members
    try:
        await other.close()  # nobody but the author: the snapshot is never attested
        await admin.set_policy(Policy(snapshot_entries=15))
        await edit_rounds(rng, [admin], 60)
        assert relay.server is not None
        room = relay.server.rooms[admin.space_bytes]
        await wait_for(lambda: room.state.snapshot is not None, what="the admin to write a snapshot")
        await admin.sync()
        assert room.state.agreed_snapshot() is None
        report = compact(relay.data_dir, keep_seconds=0)
        assert report[0].snapshot_seq is None and report[0].stripped == 0
        fresh = await newcomer(relay, admin, tmp_path / "fresh")
        try:
            await fresh.wait_for_seq(admin.seq)
            assert fresh.snapshots.used is None and fresh.snapshots.stripped_through == 0
            assert state(fresh) == state(admin)
            assert fresh.error is None
        finally:
            await fresh.close()
    finally:
        await admin.close()


def forge_attestation_tags(r: LyingRelay, space: bytes, first: int, entries: list[bytes],
                           head: SignedHead) -> list[bytes] | None:
    forged = []
    for raw in entries:
        entry = Entry.decode(raw)
        if entry.header.kind is Kind.ATTEST:
            body = AttestBody.decode(entry.body)
            raw = reencode(entry, body=AttestBody(body.snapshot, bytes(32), body.agrees).encode())
        forged.append(raw)
    return None if forged == entries else [r.signed_frame(space, first, forged)]


async def test_an_attestation_forged_by_the_relay_is_rejected(tmp_path: Path) -> None:
    handle = RelayHandle(tmp_path / "relay", LyingRelay)
    server = await handle.start()
    assert isinstance(server, LyingRelay)
    _, (alice, bob) = await make_members(handle.url, tmp_path, 2)
    try:
        alice.text("doc").insert(0, "honest text")
        await settle([alice, bob])
        server.attack = forge_attestation_tags
        before_text, before_seq = str(alice.text("doc")), alice.seq
        await alice.write_snapshot()  # bob checks it and attests; the relay rewrites the tag it serves
        await wait_for(lambda: alice.error is not None, what="alice to catch the forged attestation")
        assert isinstance(alice.error, BodyDigestError) and "body hash mismatch" in str(alice.error)
        assert "attest entry by " + bob.identity.member_id[:12] in str(alice.error)
        assert alice.seq == before_seq + 1 and str(alice.text("doc")) == before_text  # only her snapshot
        assert alice.snapshots.used is None
    finally:
        for m in (alice, bob):
            await m.close()
        await handle.stop()
