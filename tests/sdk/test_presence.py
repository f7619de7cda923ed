"""Presence through a real relay: states, expiry, and catching a relay that forks or withholds."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path

import nacl.signing
import pytest

import encspaces
import encspaces.presence_channel
from encspaces import errors
from encspaces.core import evidence
from encspaces.core.head import SignedHead
from encspaces.core.messages import Presence
from encspaces.local import load_evidence
from encspaces_relay.server import RelayServer

from .conftest import RelayHandle, make_members, wait_for


def quick(space: encspaces.Space) -> encspaces.Space:
    """Shrink presence's clocks so a test sees heartbeats, expiry and withholding within seconds."""
    space.presence.tick = 0.02
    space.presence.heartbeat = 0.1
    space.presence.peer_timeout = 0.5
    space.presence.withhold_timeout = 2.0
    return space


async def test_peers_see_each_other_and_stale_peers_expire(relay: RelayHandle, tmp_path: Path) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    quick(alice), quick(bob)
    changes = bob.presence.changes()
    alice.presence.set({"name": "Alice", "colour": "#e91e63", "cursor": 3})
    bob.presence.set({"name": "Bob", "cursor": 0})
    await wait_for(lambda: alice.identity.member_id in bob.presence.peers, what="bob to see alice")
    await wait_for(lambda: bob.identity.member_id in alice.presence.peers, what="alice to see bob")
    assert bob.presence.peers[alice.identity.member_id] == {"name": "Alice", "colour": "#e91e63", "cursor": 3}
    first = await asyncio.wait_for(changes.__anext__(), 10)
    assert first.member == alice.identity.member_id and first.state is not None
    alice.presence.set({"name": "Alice", "colour": "#e91e63", "cursor": 9})
    await wait_for(lambda: bob.presence.peers.get(alice.identity.member_id, {}).get("cursor") == 9,
                   what="bob to see alice's cursor move")
    alice.presence.went_offline()  # as if her device crashed: no goodbye, only no more heartbeats
    await alice.close()
    await wait_for(lambda: alice.identity.member_id not in bob.presence.peers, what="alice to expire")
    left = None
    while left is None or left.state is not None:
        left = await asyncio.wait_for(changes.__anext__(), 10)
    assert left.member == alice.identity.member_id
    assert bob.error is None
    await bob.close()


async def test_a_peer_who_closes_the_space_is_gone_at_once(relay: RelayHandle, tmp_path: Path) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    bob.presence.peer_timeout = 3600.0  # expiry cannot be what removes alice here
    changes = bob.presence.changes()
    alice.presence.set({"name": "Alice", "cursor": 3})
    await wait_for(lambda: alice.identity.member_id in bob.presence.peers, what="bob to see alice")
    await alice.close()  # says goodbye
    await wait_for(lambda: alice.identity.member_id not in bob.presence.peers, what="alice's goodbye")
    seen = [await asyncio.wait_for(changes.__anext__(), 10)]
    while seen[-1].state is not None:
        seen.append(await asyncio.wait_for(changes.__anext__(), 10))
    assert seen[-1].member == alice.identity.member_id
    assert all(change.state != encspaces.presence_channel.LEFT_STATE for change in seen)  # never shown as a state
    with pytest.raises(errors.InvalidArgumentError, match="reserved"):
        bob.presence.set(dict(encspaces.presence_channel.LEFT_STATE))
    assert bob.error is None
    await bob.close()


class BridgedRelay(RelayServer):
    """One half of a relay that forks a space: two copies, one key; the presence its members
    send is kept, for the test to pass across to the other half."""

    sent: list[bytes]

    def encode_presence(self, space: bytes, presence: Presence) -> bytes:
        frame = super().encode_presence(space, presence)
        self.sent.append(frame)
        return frame


async def test_a_fork_is_caught_through_presence(tmp_path: Path) -> None:
    key = nacl.signing.SigningKey.generate()
    first = RelayHandle(tmp_path / "r1", BridgedRelay, signing_key=key)
    await first.start()
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice = await encspaces.create_space(first.url, alice_id, data_dir=tmp_path / "a")
    await alice.add_member(bob_id.public)
    alice.text("doc").insert(0, "shared past. ")
    await alice.sync()
    space_id = alice.id
    await alice.close()
    await first.stop()
    shutil.copytree(tmp_path / "r1", tmp_path / "r2")
    second = RelayHandle(tmp_path / "r2", BridgedRelay, signing_key=key)
    one, two = await first.start(), await second.start()
    assert isinstance(one, BridgedRelay) and isinstance(two, BridgedRelay)
    one.sent, two.sent = [], []
    try:
        alice = quick(await encspaces.connect(first.url, alice_id, space_id, data_dir=tmp_path / "a"))
        bob = quick(await encspaces.connect(second.url, bob_id, space_id, data_dir=tmp_path / "b"))
        space_bytes = alice.space_bytes
        await wait_for(lambda: alice.connected and bob.connected, what="both to connect")
        alice.presence.set({"name": "Alice"})
        bob.presence.set({"name": "Bob"})
        # Each copy of the log now grows its own way: the relay shows them different histories.
        alice.text("doc").insert(0, "alice's future. ")
        bob.text("doc").insert(0, "bob's future. ")
        await alice.sync()
        await bob.sync()
        # Each one's presence from after its edit carries its head at seq 4; both are passed
        # across at once (one passed alone fails its receiver, who then sends nothing more).
        before = len(one.sent), len(two.sent)
        await wait_for(lambda: len(one.sent) > before[0] and len(two.sent) > before[1],
                       what="both to send presence after their edits")
        two.rooms[space_bytes].forward_presence(None, one.sent[-1])  # type: ignore[arg-type]
        one.rooms[space_bytes].forward_presence(None, two.sent[-1])  # type: ignore[arg-type]
        await wait_for(lambda: alice.error is not None and bob.error is not None, what="both to see the fork")
        for space in (alice, bob):
            assert isinstance(space.error, errors.ForkError), space.error
            assert "different histories" in str(space.error)
        assert "bob" not in str(alice.text("doc")) and "alice" not in str(bob.text("doc"))
        await alice.close()
        await bob.close()
        # Each kept the proof: the other side's relay-signed head against its own chain.
        for space, folder in ((alice, "a"), (bob, "b")):
            data = await load_evidence(space_id, data_dir=tmp_path / folder)
            assert data is not None
            assert evidence.check(data).kind is evidence.EvidenceKind.FORK
            assert isinstance(space.error, errors.ForkError) and space.error.proof is not None
    finally:
        await first.stop()
        await second.stop()


class WithholdingRelay(RelayServer):
    withhold = False

    def frames_for_entries(
        self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
    ) -> Sequence[bytes]:
        return [] if self.withhold else super().frames_for_entries(space, first_seq, entries, head)


async def test_withheld_entries_are_reported(tmp_path: Path) -> None:
    handle = RelayHandle(tmp_path / "relay", WithholdingRelay)
    server = await handle.start()
    assert isinstance(server, WithholdingRelay)
    try:
        _, (alice, bob) = await make_members(handle.url, tmp_path, 2)
        quick(alice), quick(bob)
        await wait_for(lambda: alice.identity.member_id in bob.presence.peers, what="presence to flow")
        before = str(bob.text("doc"))
        server.withhold = True  # sequenced and acknowledged, but never delivered to anyone
        alice.text("doc").insert(0, "you will never see this")
        await wait_for(lambda: bob.error is not None, what="bob to report withholding")
        assert isinstance(bob.error, errors.WithheldEntriesError), bob.error
        assert "withholds" in str(bob.error)
        assert str(bob.text("doc")) == before
        await alice.close()
        await bob.close()
    finally:
        await handle.stop()


async def test_a_removed_member_is_no_longer_shown_present(relay: RelayHandle, tmp_path: Path) -> None:
    """Carol is removed while present: from then on her presence is dropped (she is no member),
    and the peers she was in forget her at their next tick, not at the peer timeout."""
    _, (alice, bob, carol) = await make_members(relay.url, tmp_path, 3)
    try:
        for space in (alice, bob, carol):
            quick(space)
            space.presence.peer_timeout = 3600.0  # expiry cannot be what removes carol here
        changes = bob.presence.changes()
        carol.presence.set({"name": "Carol"})
        await wait_for(lambda: carol.identity.member_id in bob.presence.peers, what="bob to see carol")
        await alice.remove_member(carol.identity.member_id)
        await bob.wait_for_seq(alice.seq)
        await wait_for(lambda: carol.identity.member_id not in bob.presence.peers, what="bob to forget carol")
        async for change in changes:  # the change was published (a stream that never ends fails the test: hang guard)
            if change.member == carol.identity.member_id and change.state is None:
                break
        assert bob.error is None and isinstance(carol.error, errors.MembershipRevokedError)
    finally:
        for space in (alice, bob, carol):
            await space.close()
