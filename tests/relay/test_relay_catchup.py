"""Catch-up: long logs in bounded, verifiable frames, joined to the live stream without gap or duplicate."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from relay_kit import Gate, Member, RelayFactory, SpaceBuilder, join, url_of, wait_until

from encspaces.core.encoding import pack
from encspaces.core.entry import Entry
from encspaces.core.identity import Identity
from encspaces.core.messages import decode_message
from encspaces.core.verifier import LogVerifier
from encspaces_relay.peer import Peer
from encspaces_relay.server import RelayServer

MAX_FRAME = 16 * 1024
PER_FRAME = 50


async def _long_log(relay: RelayServer, entries: int) -> tuple[SpaceBuilder, Member, Member]:
    """A space with ``entries`` data entries by bob, of mixed sizes (some frames split by size)."""
    space = SpaceBuilder(relay.public_key)
    bob = Identity.generate()
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.submit([space.add_member(bob)])
    writer = await join(url_of(relay), space, bob)
    pending: list[Entry] = []
    for i in range(entries):
        pending.append(space.data(bob, bytes(3000 if i % 7 == 0 else 40)))
        if sum(len(e.raw) for e in pending) > MAX_FRAME // 2 or i == entries - 1:
            await writer.submit(pending)
            pending = []
    await alice.sync_to(2 + entries)
    return space, alice, writer


def _check_bounded(member: Member) -> None:
    for frame in member.frames:
        assert len(frame.entries) <= PER_FRAME
        assert len(frame.encode()) <= MAX_FRAME
        assert frame.head.seq == frame.first_seq + len(frame.entries) - 1


async def test_catch_up_long_log_in_bounded_frames(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_frame=MAX_FRAME, max_entries_per_frame=PER_FRAME)
    space, alice, _writer = await _long_log(relay, 1200)
    fresh = await join(url_of(relay), space, space.creator)  # from seq 0, verified by LogVerifier
    assert fresh.seq == 1202
    assert fresh.verifier.head == alice.verifier.head
    _check_bounded(fresh)
    assert len(fresh.frames) > 1202 // PER_FRAME  # some frames were cut by size, not count
    assert [f.first_seq for f in fresh.frames] == sorted({f.first_seq for f in fresh.frames})


async def test_catch_up_from_the_middle(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_frame=MAX_FRAME, max_entries_per_frame=PER_FRAME)
    space, alice, _writer = await _long_log(relay, 300)
    # a device that verified through seq 120, then went offline
    partial = LogVerifier(space.space, space.creator, relay.public_key)
    for frame in alice.frames:
        if frame.head.seq <= 120:
            partial.verify_frame(frame)
    seen = partial.seq
    back = await join(url_of(relay), space, space.creator, verifier=partial)
    assert back.welcome.anchor is not None and back.welcome.anchor.seq == seen
    assert back.frames[0].first_seq == seen + 1
    assert back.seq == 302 and back.verifier.head == alice.verifier.head
    _check_bounded(back)


async def test_no_gap_or_duplicate_between_catch_up_and_live(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_frame=MAX_FRAME, max_entries_per_frame=PER_FRAME)
    space, alice, writer = await _long_log(relay, 400)
    gate = Gate()
    gate.wrap(relay.store, "read_entries")  # hold the catch-up's first read
    late = Identity.generate()
    await alice.submit([space.add_member(late)])
    task = asyncio.create_task(join(url_of(relay), space, late))
    await gate.wait_entered()
    # entries committed while the catch-up is in progress, in several commits
    last = 0
    for i in range(5):
        ack = await writer.submit([space.data(writer.identity, f"live {i}.{j}".encode()) for j in range(30)])
        last = ack.results[-1][1]
    gate.release()
    member = await task
    await writer.submit([space.data(writer.identity, b"after")])
    await member.sync_to(last + 1)  # LogVerifier refuses any gap, duplicate or reorder
    seqs = [seq for f in member.frames for seq in range(f.first_seq, f.first_seq + len(f.entries))]
    assert seqs == list(range(1, last + 2))
    _check_bounded(member)


async def test_subscriber_joining_during_commits_sees_each_entry_once(make_relay: RelayFactory) -> None:
    """Many joiners while a writer keeps committing: every joiner's stream is contiguous."""
    relay = await make_relay(max_frame=MAX_FRAME, max_entries_per_frame=PER_FRAME)
    space, alice, writer = await _long_log(relay, 150)

    async def keep_writing() -> int:
        last = 0
        for i in range(20):
            ack = await writer.submit([space.data(writer.identity, pack(i)) for _ in range(5)])
            last = ack.results[-1][1]
        return last

    writing = asyncio.create_task(keep_writing())
    joiners = [await join(url_of(relay), space, space.creator) for _ in range(6)]
    last = await writing
    for member in joiners:
        await member.sync_to(last)
        assert member.verifier.head == (await _head_at(alice, last))


async def _head_at(member: Member, seq: int) -> bytes:
    await member.sync_to(seq)
    return member.verifier.state.heads[seq]


class _SpyLock(asyncio.Lock):
    """Counts tasks waiting to acquire, so a test can act once a catch-up waits for the room."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    async def acquire(self) -> Literal[True]:
        self.waiting += 1
        try:
            return await super().acquire()
        finally:
            self.waiting -= 1


async def test_entries_committed_while_joining_are_sent_under_the_lock(
    make_relay: RelayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit that lands between the end of the bulk catch-up and the subscription."""
    relay = await make_relay(max_frame=MAX_FRAME, max_entries_per_frame=PER_FRAME)
    space, _alice, writer = await _long_log(relay, 120)
    room = relay.rooms[space.space]
    spy = _SpyLock()
    room.lock = spy
    written_now: list[bytes] = []
    original = Peer.write_now

    def recording(self: Peer, *messages: bytes) -> None:
        written_now.extend(messages)
        original(self, *messages)

    monkeypatch.setattr(Peer, "write_now", recording)

    read_gate, append_gate = Gate(), Gate()
    read_gate.wrap(relay.store, "read_entries")
    append_gate.wrap(relay.store, "append")
    joining = asyncio.create_task(join(url_of(relay), space, space.creator))
    await read_gate.wait_entered()  # admitted, bulk catch-up started
    await writer.send_submit([space.data(writer.identity, b"lands during the join")])
    await append_gate.wait_entered()  # the committer holds the room lock
    read_gate.release()
    await wait_until(lambda: spy.waiting == 1, "the catch-up waits for the room lock")
    append_gate.release()
    member = await joining
    await writer.next_ack()
    await member.sync_to(123)
    assert [f.first_seq for f in member.frames][-1] == 123
    assert any(decode_message(data) == member.frames[-1] for data in written_now)
    await writer.submit([space.data(writer.identity, b"live")])
    await member.sync_to(124)
