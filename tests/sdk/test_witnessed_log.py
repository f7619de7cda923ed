"""The witnessed log end to end: the real relay (its checkpointer submitting to the witnesses),
real ``encspaces-witness`` processes, and members whose relay forks, rolls back or loses a
witness. Each attack fails the member with its own error and the signed statements as evidence,
with nothing of the bad log applied; a witness that is down only delays ``witnessed_seq``."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import encspaces
from encspaces import Witness, errors
from encspaces.core import evidence, note
from encspaces.core.entry import Kind
from encspaces.core.head import SignedHead
from encspaces.core.identity import decode_space_id, member_id
from encspaces.core.messages import Presence
from encspaces.local import load_evidence
from encspaces_relay.server import RelayServer
from encspaces_witness.process import WitnessProcess
from tests.support import RawMember

from .conftest import RelayHandle, wait_for

# Polls and checkpoints often, so that the tests wait on conditions, not on intervals.
FAST = encspaces.SpaceOptions(witness_poll_interval=0.1, witness_deadline=600.0)


@asynccontextmanager
async def witnessed_relay(tmp_path: Path, n: int) -> AsyncIterator[tuple[RelayHandle, list[WitnessProcess]]]:
    relay = RelayHandle(tmp_path / "relay", checkpoint_interval=0.05, witness_timeout=2.0,
                        allow_private_witnesses=True)
    server = await relay.start()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(relay.stop)
        witnesses = []
        for i in range(n):
            w = WitnessProcess(tmp_path / f"witness{i}", [member_id(server.public_key)], name=f"witness.test/w{i}")
            await stack.enter_async_context(w)
            witnesses.append(w)
        yield relay, witnesses


def policy(witnesses: list[WitnessProcess]) -> list[Witness]:
    return [Witness.from_vkey(w.vkey, w.url) for w in witnesses]






def cosigned_by(evidence: bytes, witness: WitnessProcess) -> note.SignedCheckpoint:
    """The evidence note, checked: a checkpoint ``witness`` cosigned."""
    signed = note.SignedCheckpoint.parse(evidence)
    verifier = note.parse_vkey(witness.vkey)
    assert [v for v, _ in signed.verify([verifier])] == [verifier]
    return signed


async def test_witnessed_seq_follows_the_log_and_is_none_without_witnesses(tmp_path: Path) -> None:
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        plain = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "p")
        assert plain.witnessed_seq is None and plain.witness_status.seq is None
        await plain.close()
        space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a",
                                             witnesses=policy(witnesses), options=FAST)
        try:
            text = space.text("t")
            for i in range(5):
                text.insert(len(text), f"{i} ")
                await space.sync()
            await wait_for(lambda: space.witnessed_seq == space.seq, "the log witnessed through its head")
            status = space.witness_status
            assert (status.seq, status.cosigners, status.witnesses, status.quorum) == (space.seq, 1, 1, 1)
            witnessed = space.seq
        finally:
            await space.close()
        # Reopened: the tree and what was witnessed come back from the local checkpoint.
        again = await encspaces.connect(relay.url, space.identity, space.id, data_dir=tmp_path / "a", options=FAST)
        try:
            assert again.witnessed_seq == witnessed
        finally:
            await again.close()


async def extend_branch(url: str, identity: encspaces.Identity, space: bytes, n: int) -> int:
    """A member without witness tracking (a raw client) writes ``n`` entries on the relay's
    current branch; the relay's head after them."""
    async with RawMember(url, identity, space) as raw:
        seq = 0
        for i in range(n):
            seq = await raw.commit(raw.entry(Kind.DATA, f"branch {i}".encode()))
        return seq


async def alice_with_bob_and_carol(tmp_path: Path, relay: RelayHandle, witnesses: list[WitnessProcess],
                                   **create: Any) -> tuple[encspaces.Space, encspaces.Identity, encspaces.Identity]:
    """Alice's space witnessed by ``witnesses`` (her device in ``tmp_path / "a"``; ``create``: more
    arguments of ``create_space``), with Bob and Carol added; returns (Alice's space, Bob, Carol)."""
    alice_id, bob_id, carol_id = (encspaces.Identity.generate() for _ in range(3))
    alice = await encspaces.create_space(relay.url, alice_id, data_dir=tmp_path / "a",
                                         witnesses=policy(witnesses), options=FAST, **create)
    await alice.add_member(bob_id.public)
    await alice.add_member(carol_id.public)
    return alice, bob_id, carol_id


async def seen_once(url: str, identity: encspaces.Identity, alice: encspaces.Space, data_dir: Path) -> None:
    """A member's device that read the log once (so that it opens from its store later)."""
    space = await encspaces.connect(url, identity, alice.id, data_dir=data_dir, options=FAST)
    await space.wait_for_seq(alice.seq)
    await space.close()


async def test_a_fork_is_detected_through_the_witnesses_without_any_other_member_online(tmp_path: Path) -> None:
    """Alice's branch is witnessed; the relay is restarted on a copy taken before it, where
    Carol (no witness tracking) writes a longer branch. Bob, back online, never hears from Alice
    (offline: no presence to filter) and is shown a log longer than Alice's: only the witness
    exposes it."""
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        alice, bob_id, carol_id = await alice_with_bob_and_carol(tmp_path, relay, witnesses)
        await alice.sync()
        common = alice.seq
        await seen_once(relay.url, bob_id, alice, tmp_path / "b")
        await relay.back_up(tmp_path / "branch")
        for i in range(3):
            alice.text("doc").insert(0, f"alice {i}. ")
            await alice.sync()
        await wait_for(lambda: alice.witnessed_seq == alice.seq, "alice's branch witnessed")
        alice_seq = alice.seq
        await alice.close()

        await relay.restart_on(tmp_path / "branch")
        assert await extend_branch(relay.url, carol_id, alice.space_bytes, 6) > alice_seq
        bob = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "b", options=FAST)
        try:
            await wait_for(lambda: bob.error is not None, "bob to detect the fork")
            assert isinstance(bob.error, errors.CheckpointForkError), bob.error
            assert bob.witnessed_seq is not None and bob.witnessed_seq <= common
            shown = cosigned_by(bob.error.evidence[0], witnesses[0])
            assert common < shown.checkpoint.size <= alice_seq
            assert "alice" not in str(bob.text("doc"))
            with pytest.raises(errors.CheckpointForkError):
                bob.text("doc").insert(0, "x")
        finally:
            await bob.close()
        # A new device is not shown the fork as the log either: connect raises.
        with pytest.raises(errors.CheckpointForkError):
            await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "new-device", options=FAST)


async def rollback_setup(tmp_path: Path, relay: RelayHandle, witnesses: list[WitnessProcess]) -> tuple[
        encspaces.Identity, encspaces.Identity, str, int]:
    """Alice removes Carol after a backup was taken; returns (bob, carol, space id, head before restore)."""
    alice, bob_id, carol_id = await alice_with_bob_and_carol(tmp_path, relay, witnesses)
    (tmp_path / "invite").write_text(await alice.create_invite(role="writer"))  # still open on the old copy
    bob = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "b", options=FAST)
    await bob.wait_for_seq(alice.seq)
    await bob.close()  # Bob goes offline before the removal
    await relay.back_up(tmp_path / "before-removal")
    await alice.remove_member(carol_id.public)
    alice.text("doc").insert(0, "carol must not read this. ")
    await alice.sync()
    await wait_for(lambda: alice.witnessed_seq == alice.seq, "the removal witnessed")
    head = alice.seq
    await alice.close()
    await relay.restart_on(tmp_path / "before-removal")  # Carol is a member again on this relay
    return bob_id, carol_id, alice.id, head


async def test_a_rollback_to_before_a_removal_is_refused_for_a_member_that_was_offline(tmp_path: Path) -> None:
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        bob_id, _, space_id, head = await rollback_setup(tmp_path, relay, witnesses)
        bob = await encspaces.connect(relay.url, bob_id, space_id, data_dir=tmp_path / "b", options=FAST)
        try:
            seq = bob.seq
            await wait_for(lambda: bob.error is not None, "bob to refuse the rolled-back relay")
            assert isinstance(bob.error, errors.CheckpointRollbackError), bob.error
            assert bob.error.size == head
            assert cosigned_by(bob.error.evidence[0], witnesses[0]).checkpoint.size == head
            assert bob.seq == seq  # nothing of the old log applied
            with pytest.raises(errors.CheckpointRollbackError):
                bob.text("doc").insert(0, "x")
        finally:
            await bob.close()


async def test_a_rollback_to_before_a_removal_is_refused_for_a_new_device(tmp_path: Path) -> None:
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        bob_id, _, space_id, head = await rollback_setup(tmp_path, relay, witnesses)
        with pytest.raises(errors.CheckpointRollbackError) as err:
            await encspaces.connect(relay.url, bob_id, space_id, data_dir=tmp_path / "new-device", options=FAST)
        assert err.value.size == head


async def test_a_rollback_is_refused_to_a_device_joining_with_an_invite_before_it_writes(tmp_path: Path) -> None:
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        _, _, space_id, head = await rollback_setup(tmp_path, relay, witnesses)
        dave = encspaces.Identity.generate()
        with pytest.raises(errors.CheckpointRollbackError) as err:
            await encspaces.join((tmp_path / "invite").read_text(), dave, data_dir=tmp_path / "dave", options=FAST)
        assert err.value.size == head
        assert relay.server is not None
        room = relay.server.rooms.get(decode_space_id(space_id))
        assert room is None or dave.public.sign_key not in room.state.members  # no join entry was sent


async def test_one_lying_witness_cannot_make_a_fork_witnessed_while_the_quorum_holds(tmp_path: Path) -> None:
    """Three witnesses, quorum 2; the relay forks and one witness cosigns the other branch (it
    was kept away from the first). Bob's witnessed_seq never passes the fork, and the two honest
    witnesses expose it."""
    async with witnessed_relay(tmp_path, 3) as (relay, witnesses):
        alice, bob_id, carol_id = await alice_with_bob_and_carol(tmp_path, relay, witnesses, quorum=2)
        await alice.sync()
        await wait_for(lambda: alice.witnessed_seq == alice.seq, "the common prefix witnessed")
        common = alice.seq
        await seen_once(relay.url, bob_id, alice, tmp_path / "b")
        await relay.back_up(tmp_path / "branch")
        liar = witnesses[2]
        await liar.stop()  # kept away from Alice's branch
        for i in range(3):
            alice.text("doc").insert(0, f"alice {i}. ")
            await alice.sync()
        await wait_for(lambda: alice.witnessed_seq == alice.seq, "alice's branch witnessed by two")
        await alice.close()
        await relay.restart_on(tmp_path / "branch")
        await liar.start()  # it cosigns what the relay shows it next: the other branch
        head = await extend_branch(relay.url, carol_id, alice.space_bytes, 6)
        cosigned = relay.server.metrics.witness_submissions.labels("cosigned") if relay.server else None
        assert cosigned is not None
        before = cosigned._value.get()
        await wait_for(lambda: cosigned._value.get() > before, "the lying witness to cosign the other branch")
        bob = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "b", options=FAST)
        try:
            await wait_for(lambda: bob.error is not None, "bob to detect the fork")
            assert isinstance(bob.error, errors.CheckpointForkError), bob.error
            assert bob.witnessed_seq is not None and bob.witnessed_seq <= common < head
        finally:
            await bob.close()


async def test_a_witness_that_is_down_delays_witnessed_seq_and_nothing_else(tmp_path: Path) -> None:
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a",
                                             witnesses=policy(witnesses), options=FAST)
        try:
            await wait_for(lambda: space.witnessed_seq == space.seq, "genesis witnessed")
            before = space.witnessed_seq
            await witnesses[0].stop()
            text = space.text("t")
            for i in range(5):
                text.insert(len(text), f"{i} ")
                await space.sync()  # editing goes on
            assert space.error is None and space.witnessed_seq == before
            await witnesses[0].start()  # same port, same state
            await wait_for(lambda: space.witnessed_seq == space.seq, "witnessing to catch up")
            assert space.error is None
        finally:
            await space.close()


class WithholdingRelay(RelayServer):
    """Once ``withhold`` is set: sequences, acks and checkpoints as usual, but delivers no frame
    and forwards no presence (so no peer can tell the members what they miss)."""

    withhold = False

    def frames_for_entries(self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
        return [] if self.withhold else list(super().frames_for_entries(space, first_seq, entries, head))

    def encode_presence(self, space: bytes, presence: Presence) -> bytes:
        return b"" if self.withhold else super().encode_presence(space, presence)


async def test_a_tail_withheld_with_presence_filtered_fails_at_the_witness_deadline(tmp_path: Path) -> None:
    relay = RelayHandle(tmp_path / "relay", WithholdingRelay, checkpoint_interval=0.05, allow_private_witnesses=True)
    server = await relay.start()
    assert isinstance(server, WithholdingRelay)
    try:
        async with WitnessProcess(tmp_path / "witness", [member_id(server.public_key)],
                                  name="witness.test/w0") as witness:
            alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
            alice = await encspaces.create_space(relay.url, alice_id, data_dir=tmp_path / "a",
                                                 witnesses=policy([witness]), options=FAST)
            await alice.add_member(bob_id.public)
            clock = encspaces.ManualClock()
            bob = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "b",
                                          options=dataclasses.replace(FAST, clock=clock, witness_deadline=30.0,
                                                                      maintenance_interval=0.05))
            try:
                await bob.wait_for_seq(alice.seq)
                seq = bob.seq
                server.withhold = True
                cosigned = server.metrics.witness_submissions.labels("cosigned")
                before = cosigned._value.get()
                room = server.rooms[alice.space_bytes]
                head = room.state.seq
                alice.text("doc").insert(0, "bob never gets this")
                await wait_for(lambda: room.state.seq > head, "the relay to sequence alice's edit")
                await wait_for(lambda: cosigned._value.get() > before, "the witness to cosign the withheld tail")
                await asyncio.sleep(0.3)  # a few witness polls: bob hears of the checkpoint
                clock.advance(29)
                await asyncio.sleep(0.3)  # deadline checks
                assert bob.error is None  # not yet: the deadline has not passed

                def later() -> bool:
                    clock.advance(1)  # (one more second each look, should bob's poll have come late)
                    return bob.error is not None

                await wait_for(later, "bob to give up on the withheld tail")
                error = bob.error
                assert isinstance(error, errors.CheckpointWithheldError), error
                withheld = cosigned_by(bob.error.evidence[0], witness)
                assert withheld.checkpoint.size > seq and bob.seq == seq
                assert "never" not in str(bob.text("doc"))
            finally:
                await bob.close()
                await alice.close()
    finally:
        await relay.stop()
    # The proof, kept in bob's store: the relay's cosigned checkpoint past all it delivered.
    data = await load_evidence(alice.id, data_dir=tmp_path / "b")
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.WITHHOLDING and finding.seq == error.size > seq
    assert finding.cosigners == ("witness.test/w0",)
