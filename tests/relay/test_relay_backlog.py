"""Admission control: the relay takes in (reads, verifies) no more submissions than it commits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from relay_kit import Gate, Member, RelayFactory, SpaceBuilder, join, url_of, wait_until

from encspaces.core.entry import Entry
from encspaces.core.identity import Identity
from encspaces_relay.__main__ import config_of, parse_args
from encspaces_relay.backlog import Backlog
from encspaces_relay.server import RelayServer
from encspaces_relay.session import Session


async def _space(relay: RelayServer, members: int) -> tuple[SpaceBuilder, Member, list[Member]]:
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    identities = [Identity.generate() for _ in range(members)]
    await alice.submit([space.add_member(who) for who in identities])
    return space, alice, [await join(url_of(relay), space, who) for who in identities]


def _count_verified(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Submissions whose entries the relay verified, counted as they are."""
    verified = [0]
    original = Session._check_slice  # (each of these submissions is one slice, however it is read)

    def counting(self: Session, raws: list[bytes]) -> list[Entry]:
        verified[0] += 1
        return original(self, raws)

    monkeypatch.setattr(Session, "_check_slice", counting)
    return verified


async def test_a_full_backlog_stops_reading_until_commits_answer(
    make_relay: RelayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a slow store and room for two uncommitted entries, the relay verifies no third
    submission until a commit answers one; then everything is acked in order and delivered."""
    relay = await make_relay(max_pending_entries=2)
    space, alice, (bob, carol) = await _space(relay, 2)
    room = relay.rooms[space.space]
    verified = _count_verified(monkeypatch)
    gate = Gate()
    gate.wrap(relay.store, "append")
    await alice.send_submit([space.data(space.creator, b"holds the committer")])
    await gate.wait_entered()
    bobs = [space.data(bob.identity, f"bob {i}".encode()) for i in range(6)]
    for entry in bobs:
        await bob.send_submit([entry])
    await wait_until(lambda: relay.backlog.waiting == 1, "bob's second submission waits in line")
    await carol.send_submit([space.data(carol.identity, b"carol")])
    await wait_until(lambda: relay.backlog.waiting == 2, "carol waits behind bob")
    assert verified[0] == 2  # alice's and bob's first: the rest is not read on
    assert room.queued() == 1 and relay.backlog.pending == 2
    gate.release()

    bob_acks = [await bob.next_ack() for _ in bobs]
    seqs = [seq for ack in bob_acks for _, seq in ack.results]
    assert [author_seq for ack in bob_acks for author_seq, _ in ack.results] == list(range(1, 7))
    assert seqs == sorted(seqs)  # in the order bob sent them
    (_, carol_seq), = (await carol.next_ack()).results
    assert carol_seq < seqs[-1]  # first come, first served: not behind all of bob's stream
    await alice.next_ack()
    last = room.durable_seq
    assert last == 3 + 1 + len(bobs) + 1  # genesis, two adds, alice's, bob's six, carol's
    for member in (alice, bob, carol):
        await member.sync_to(last)
    delivered = [raw for frame in alice.frames for raw in frame.entries]
    assert [raw for raw in delivered if raw in {e.raw for e in bobs}] == [e.raw for e in bobs]
    assert verified[0] == 1 + len(bobs) + 1
    assert relay.backlog.pending == 0 and relay.backlog.waiting == 0
    text = await _metrics(relay)
    assert "encspaces_relay_backlog_wait_seconds_count" in text and "encspaces_relay_backlog_waiting 0.0" in text


async def _metrics(relay: RelayServer) -> str:
    return generate_latest(relay.metrics.registry).decode()


async def test_a_connection_waiting_for_the_backlog_is_not_dropped_by_the_keepalive(
    make_relay: RelayFactory,
) -> None:
    """A waiting connection is not read, so its pongs wait behind its submissions: the
    keepalive must not take that for a dead peer."""
    relay = await make_relay(max_pending_entries=1, ping_interval=0.05)
    space, alice, (bob,) = await _space(relay, 1)
    gate = Gate()
    gate.wrap(relay.store, "append")
    await alice.send_submit([space.data(space.creator, b"holds the committer")])
    await gate.wait_entered()
    bobs = [space.data(bob.identity, f"bob {i}".encode()) for i in range(12)]
    for entry in bobs:  # more than websockets reads ahead (max_queue): its reading pauses
        await bob.send_submit([entry])
    await wait_until(lambda: relay.backlog.waiting == 1, "bob waits in line")
    await asyncio.sleep(0.5)  # ten rounds of pings while bob's connection is not read
    assert relay.connections.of("127.0.0.1") == 2
    gate.release()
    acks = [await bob.next_ack() for _ in bobs]
    assert [author_seq for ack in acks for author_seq, _ in ack.results] == list(range(1, 13))


async def test_backlog_serves_in_order_and_survives_cancellation() -> None:
    backlog = Backlog(3)
    assert await backlog.take(2, "a") == 2
    big = asyncio.create_task(backlog.take(5, "b"))  # larger than the budget: takes all of it
    small = asyncio.create_task(backlog.take(1, "c"))  # fits, but waits its turn behind big
    cancelled = asyncio.create_task(backlog.take(1, "d"))
    await wait_until(lambda: backlog.waiting == 3, "three in line")
    assert not big.done() and not small.done()
    cancelled.cancel()
    backlog.give(2)
    assert await big == 3
    assert not small.done() and backlog.pending == 3
    backlog.give(3)
    assert await small == 1
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert backlog.pending == 1 and backlog.waiting == 0
    assert backlog.waited_since("b", 0.0) and not backlog.waited_since("a", 0.0)
    backlog.forget("b")
    assert not backlog.waited_since("b", 0.0)


def test_the_backlog_limit_is_a_setting(tmp_path: Path) -> None:
    config = config_of(parse_args(["--data-dir", str(tmp_path)], environ={"ENCSPACES_RELAY_MAX_PENDING_ENTRIES": "7"}))
    assert config.max_pending_entries == 7
    with pytest.raises(ValueError, match="pending-entries"):
        config_of(parse_args(["--data-dir", str(tmp_path), "--max-pending-entries", "0"]))
