"""Shutdown finishes what it acknowledged; a subscriber that stops reading is dropped, not waited for."""

from __future__ import annotations

import asyncio
from pathlib import Path

from relay_kit import WAIT, Gate, RelayFactory, SpaceBuilder, join, make_hello, url_of, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from encspaces.core.identity import Identity
from encspaces.core.messages import Challenge, Welcome, decode_message


async def test_stop_finishes_the_commit_in_flight(make_relay: RelayFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    relay = await make_relay(data_dir=data)
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    gate = Gate()
    gate.wrap(relay.store, "append")
    entry = space.data(space.creator, b"in flight at shutdown")
    await alice.send_submit([entry])
    await gate.wait_entered()
    stopping = asyncio.create_task(relay.stop())
    await asyncio.sleep(0)
    gate.release()
    ack = await alice.next_ack()  # acked before the connection closes
    assert ack.results == [(2, 2)]
    await alice.client.expect_closed()
    assert alice.client.ws.close_code == 1001
    async with asyncio.timeout(WAIT):
        await stopping

    again = await make_relay(data_dir=data)
    check = await join(url_of(again), space, space.creator)
    assert check.seq == 2 and check.frames[-1].entries[-1] == entry.raw


async def test_slow_subscriber_is_closed(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_buffered_bytes=64 * 1024, max_frame=256 * 1024)
    space = SpaceBuilder(relay.public_key)
    bob = Identity.generate()
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.submit([space.add_member(bob)])
    # bob stops reading after the welcome (and buffers at most two messages in his client)
    ws = await connect(url_of(relay), compression=None, proxy=None, max_queue=(2, 1), max_size=None)
    challenge = decode_message(await ws.recv())  # type: ignore[arg-type]
    assert isinstance(challenge, Challenge)
    await ws.send(make_hello(challenge, bob, space.space, since_seq=2).encode())
    assert isinstance(decode_message(await ws.recv()), Welcome)  # type: ignore[arg-type]
    room = relay.rooms[space.space]
    await wait_until(lambda: len(room.subscribers) == 2, "bob subscribed")
    # alice keeps writing; bob's unread frames pile up in the relay until he is dropped
    rounds = 0
    while len(room.subscribers) == 2:
        rounds += 1
        assert rounds < 400, "the slow subscriber was never dropped"
        await alice.submit([space.data(space.creator, bytes(100_000))])
    await alice.sync_to(2 + rounds)  # alice is unaffected
    # bob finally reads: everything sent before the drop, then the close 1013 "too slow"
    async with asyncio.timeout(WAIT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    assert ws.close_code == 1013 and ws.close_reason == "too slow"
    member = await join(url_of(relay), space, bob)  # a reconnect catches up from the store
    assert member.seq == 2 + rounds
