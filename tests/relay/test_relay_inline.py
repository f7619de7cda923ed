"""Live messages handled as websockets parses them (encspaces_relay/inline.py), over real sockets.

The inline path must be taken where it can be (it is the relay's common case), must leave every
message it cannot finish to the session's task with nothing kept, and must never let a message
overtake one that arrived before it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from relay_kit import Member, SpaceBuilder, join, url_of, wait_until

from encspaces.core.encoding import pack
from encspaces.core.entry import Entry
from encspaces.core.identity import Identity
from encspaces.core.messages import Presence, Submit
from encspaces_relay.peer import InFlight
from encspaces_relay.server import RelayServer
from encspaces_relay.session import _VERIFY_SLICE, Session


async def _space(relay: RelayServer) -> tuple[SpaceBuilder, Member, Member]:
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    bob_id = Identity.generate()
    await alice.submit([space.add_member(bob_id)])
    return space, alice, await join(url_of(relay), space, bob_id)


def _count_task_messages(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of the live messages the session's task handled (not inline), in order."""
    seen: list[str] = []
    original = Session._live

    async def counting(self: Session, room: Any, data: bytes | str) -> bool:
        seen.append(type(self._decode(data)).__name__)
        return await original(self, room, data)

    monkeypatch.setattr(Session, "_live", counting)
    return seen


async def test_live_submissions_and_presence_are_handled_inline(
    relay: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    space, alice, bob = await _space(relay)
    in_task = _count_task_messages(monkeypatch)
    for i in range(5):
        ack = await bob.submit([space.data(bob.identity, f"b{i}".encode())])
        assert ack.results == [(i + 1, 3 + i)]
    await bob.client.send(Presence(b"here").encode())
    await alice.sync_to(7)
    assert await alice.client.recv() == Presence(b"here")
    assert in_task == []  # none went through the task: the inline path is in use
    assert relay.backlog.pending == 0


async def test_a_message_left_to_the_task_is_not_overtaken(
    relay: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submit too large to check without pausing goes to the task; the small submit and the
    presence sent right behind it queue behind it and are sequenced after it."""
    space, alice, bob = await _space(relay)
    in_task = _count_task_messages(monkeypatch)
    large = [space.data(bob.identity, f"large {i}".encode()) for i in range(_VERIFY_SLICE + 1)]
    small = space.data(bob.identity, b"small")
    await bob.send_submit(large)
    await bob.send_submit([small])
    await bob.client.send(Presence(b"behind").encode())
    first, second = await bob.next_ack(), await bob.next_ack()
    assert [seq for _, seq in first.results] == list(range(3, 3 + len(large)))
    assert second.results == [(len(large) + 1, 3 + len(large))]
    assert in_task == ["Submit", "Submit", "Presence"]
    # Caught up: the next one is inline again.
    await bob.submit([space.data(bob.identity, b"after")])
    assert in_task == ["Submit", "Submit", "Presence"]
    await alice.sync_to(4 + len(large))


async def test_a_burst_in_one_read_checks_no_more_than_a_slice_inline(
    relay: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four submissions of 40 entries written at once: however the socket's reads split them, no
    read has more than a slice of signatures checked inline; the rest wait for the task, in order."""
    space, alice, bob = await _space(relay)
    in_task = _count_task_messages(monkeypatch)
    inline_checks: list[tuple[int, int]] = []  # (already spent in that read, entries)
    original = Session._check_slice

    def recording(self: Session, raws: list[bytes]) -> list[Entry]:
        ws = self.connection
        if ws.behind == 0:  # called from the inline path (the task's messages are counted behind)
            inline_checks.append((ws.spent, len(raws)))
        return original(self, raws)

    monkeypatch.setattr(Session, "_check_slice", recording)
    batches = [[space.data(bob.identity, f"{b}.{i}".encode()) for i in range(40)] for b in range(4)]
    protocol = bob.client.ws.protocol
    for batch in batches:
        protocol.send_binary(Submit([e.raw for e in batch]).encode())
    bob.client.ws.send_data()  # the four frames in one write
    acks = [await bob.next_ack() for _ in batches]
    assert [seq for ack in acks for _, seq in ack.results] == list(range(3, 3 + 160))
    assert inline_checks and all(spent + count <= _VERIFY_SLICE for spent, count in inline_checks)
    assert len(inline_checks) + in_task.count("Submit") == 4
    await alice.sync_to(2 + 160)


async def test_a_refused_submit_is_left_to_the_task_with_nothing_taken(
    relay: RelayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    space, alice, bob = await _space(relay)
    in_task = _count_task_messages(monkeypatch)
    entry = space.data(bob.identity)
    await bob.client.send(pack({"t": "submit", "entries": [entry.raw[:-1] + bytes([entry.raw[-1] ^ 1])]}))
    error = await bob.client.expect_refusal("rejected")
    assert "body hash" in error.message
    assert in_task == ["Submit"]  # the task met the same fault and answered it
    await wait_until(lambda: relay.backlog.pending == 0, "the inline path gave its place back")
    assert (await alice.submit([space.data(space.creator)])).results == [(3, 3)]


async def test_in_flight_places_are_taken_at_once_or_waited_for() -> None:
    inflight = InFlight(2)
    assert inflight.try_take() and inflight.try_take()
    assert not inflight.try_take()
    waiting = asyncio.create_task(inflight.take())
    await asyncio.sleep(0)
    assert not waiting.done()
    inflight.release()
    await asyncio.wait_for(waiting, 5)
    assert not inflight.try_take()  # the waiter took the freed place
    inflight.release()
    assert inflight.try_take()
