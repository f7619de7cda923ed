"""Limits on anonymous clients, each against a real relay over a real websocket.

Anyone can open a connection and generate a key, so what a stranger can make the relay hold
(memory before admission, connections, spaces) is bounded, and a refusal says why.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import pytest
from relay_kit import WAIT, Gate, Member, RawClient, RelayFactory, SpaceBuilder, join, make_hello, url_of, wait_until
from websockets.asyncio.client import connect

from encspaces.core.identity import Identity
from encspaces.core.messages import Challenge, Error, decode_message
from encspaces.core.verifier import LogVerifier
from encspaces_relay.__main__ import config_of, parse_args
from encspaces_relay.config import CreatePolicy, RelayConfig
from encspaces_relay.limits import CreateGate
from encspaces_relay.refusals import Refusal
from encspaces_relay.server import RelayServer

NO_EXEMPT: frozenset[str] = frozenset()


# --- the frame limit before admission ---------------------------------------------------------


def _binary_frame_header(length: int) -> bytes:
    """A masked, final, binary websocket frame header announcing ``length`` bytes of payload."""
    return bytes([0x82, 0x80 | 127]) + struct.pack("!Q", length) + os.urandom(4)


async def test_a_stranger_cannot_start_a_large_frame(make_relay: RelayFactory) -> None:
    """Before admission websockets stops at twice max_hello_frame: a 1 MB frame is refused from its header."""
    relay = await make_relay(max_hello_frame=4096)
    client = await RawClient.open(url_of(relay))
    # Only the header and a few bytes: before the fix the relay waited for the rest, holding it.
    client.ws.transport.write(_binary_frame_header(1 << 20) + b"\x00" * 100)
    await client.expect_closed()
    assert client.ws.close_code == 1009  # message too big, from the header alone


async def test_hello_over_the_limit_is_refused_with_a_reason(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_hello_frame=4096)
    client = await RawClient.open(url_of(relay))
    await client.send(b"\x00" * 5000)
    error = await client.expect_refusal("too_large")
    assert "5000" in error.message and "4096" in error.message and "before admission" in error.message


async def test_the_full_frame_limit_applies_after_admission(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_hello_frame=4096)
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    ack = await alice.submit([space.data(space.creator, b"x" * 50_000)])  # over 2 x 4096
    assert ack.results == [(2, 2)]
    await alice.close()


# --- connection caps --------------------------------------------------------------------------


async def _open_from(relay: RelayServer, source: str) -> RawClient:
    """A raw connection whose source address is ``source`` (any 127.x.y.z works on Linux)."""
    ws = await connect(url_of(relay), compression=None, proxy=None, local_addr=(source, 0))
    async with asyncio.timeout(WAIT):
        first = decode_message(await ws.recv(), max_size=1 << 20)  # type: ignore[arg-type]
    return RawClient(ws, first) if isinstance(first, Challenge) else _refused_client(ws, first)


def _refused_client(ws: object, first: object) -> RawClient:
    assert isinstance(first, Error), first
    client = RawClient(ws, Challenge(b"\x00" * 32, b"\x00" * 32))  # type: ignore[arg-type]
    client.inbox.append(first)
    return client


async def _expect_busy(relay: RelayServer, source: str) -> Error:
    client = await _open_from(relay, source)
    assert client.inbox, "the relay accepted a connection over its limit"
    error = client.inbox[0]
    assert isinstance(error, Error) and error.code == "busy" and error.fatal
    await client.expect_closed()
    assert client.ws.close_code == 1013  # try again later
    return error


async def test_connections_per_address_and_in_all(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_connections=3, max_connections_per_address=2, exempt_addresses=NO_EXEMPT)
    first = [await _open_from(relay, "127.0.0.1") for _ in range(2)]
    error = await _expect_busy(relay, "127.0.0.1")
    assert "127.0.0.1 already has 2 connections" in error.message
    other = await _open_from(relay, "127.0.0.2")  # another address still gets in
    error = await _expect_busy(relay, "127.0.0.3")
    assert "limit of 3 connections" in error.message
    # A closed connection frees its place, and a refused one never took one.
    await first[0].close()
    await wait_until(lambda: relay.connections.total == 2, "the closed connection is no longer counted")
    again = await _open_from(relay, "127.0.0.1")
    assert not again.inbox
    for client in (first[1], other, again):
        await client.close()
    await wait_until(lambda: relay.connections.total == 0, "every connection is uncounted")


async def test_admitted_members_count_and_the_loopback_is_exempt_by_default(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_connections_per_address=1)  # loopback exempt (the default)
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    second = await join(url_of(relay), space, space.creator)
    assert relay.connections.of("127.0.0.1") == 2
    other = await _open_from(relay, "127.0.0.2")
    assert not other.inbox
    await _expect_busy(relay, "127.0.0.2")
    for client in (alice.client, second.client, other):
        await client.close()


# --- who may create spaces, and how many --------------------------------------------------------


async def _create_from(relay: RelayServer, source: str, space: SpaceBuilder) -> Error | None:
    """Create ``space`` over a connection from ``source``: None if admitted, else the refusal."""
    client = await _open_from(relay, source)
    await client.send(make_hello(client.challenge, space.creator, space.space, genesis=space.genesis.raw).encode())
    reply = await client.recv()
    await client.close()
    return reply if isinstance(reply, Error) else None


async def test_spaces_created_per_address_in_a_window(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_creates_per_address=2, exempt_addresses=NO_EXEMPT)
    spaces = [SpaceBuilder(relay.public_key) for _ in range(4)]
    assert await _create_from(relay, "127.0.0.1", spaces[0]) is None
    assert await _create_from(relay, "127.0.0.1", spaces[1]) is None
    refused = await _create_from(relay, "127.0.0.1", spaces[2])
    assert refused is not None and refused.code == "rate_limited" and refused.fatal
    assert "127.0.0.1 created 2 spaces in the last 3600 s" in refused.message
    assert await relay.store.load_space(spaces[2].space) is None  # nothing stored
    assert await _create_from(relay, "127.0.0.2", spaces[3]) is None  # another address
    # Reconnecting to a space one created (the SDK sends the genesis again) is not a create.
    assert await _create_from(relay, "127.0.0.1", spaces[0]) is None


async def test_concurrent_creates_count_against_the_limit(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_creates_per_address=1, exempt_addresses=NO_EXEMPT)
    gate = Gate()
    gate.wrap(relay.store, "create_space")  # the first create waits in its store write
    spaces = [SpaceBuilder(relay.public_key) for _ in range(2)]
    first = asyncio.create_task(_create_from(relay, "127.0.0.2", spaces[0]))
    try:
        await gate.wait_entered()
        refused = await _create_from(relay, "127.0.0.2", spaces[1])
    finally:
        gate.release()  # else a failure would leave the relay's stop waiting for the first create
    assert refused is not None and refused.code == "rate_limited"
    assert await first is None


def test_the_create_window_slides() -> None:
    gate = CreateGate(RelayConfig(data_dir=Path("unused"), max_creates_per_address=2, create_window=10.0,
                                  exempt_addresses=NO_EXEMPT))
    member = Identity.generate().public.sign_key
    gate.created("a", 0.0)
    gate.created("a", 5.0)
    with pytest.raises(Refusal, match="try again in 5 s"):
        gate.check(member, "a", 5.0)
    gate.check(member, "b", 5.0)  # per address
    gate.check(member, "a", 10.0)  # the first create left the window
    gate.prune(16.0)
    assert gate._recent == {}  # an address with nothing in the window is forgotten


async def test_closed_relay_serves_its_spaces_but_creates_none(make_relay: RelayFactory, tmp_path: Path) -> None:
    data = tmp_path / "shared"
    first = await make_relay(data_dir=data)
    space = SpaceBuilder(first.public_key)
    alice = await join(url_of(first), space, space.creator, create=True)
    await alice.submit([space.data(space.creator)])
    await alice.close()
    await first.stop()
    relay = await make_relay(data_dir=data, create_policy=CreatePolicy.CLOSED)
    other = SpaceBuilder(relay.public_key)
    refused = await _create_from(relay, "127.0.0.1", other)
    assert refused is not None and refused.code == "create_forbidden"
    assert "does not create new spaces" in refused.message
    again = await join(url_of(relay), space, space.creator)  # an existing space is served
    assert again.seq == 2
    await again.close()


async def test_listed_creators(make_relay: RelayFactory, tmp_path: Path) -> None:
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    allowlist = tmp_path / "creators.txt"
    allowlist.write_text(f"# who may create spaces\n{alice.member_id}  # by member id\n\n{bob.public}\n")
    relay = await make_relay(create_policy=CreatePolicy.LISTED, create_allowlist=allowlist)
    assert await _create_from(relay, "127.0.0.1", SpaceBuilder(relay.public_key, alice)) is None
    assert await _create_from(relay, "127.0.0.1", SpaceBuilder(relay.public_key, bob)) is None
    refused = await _create_from(relay, "127.0.0.1", SpaceBuilder(relay.public_key, carol))
    assert refused is not None and refused.code == "create_forbidden"
    assert carol.member_id in refused.message


def test_a_bad_allowlist_stops_the_relay_from_starting(tmp_path: Path) -> None:
    allowlist = tmp_path / "creators.txt"
    allowlist.write_text("not-a-member-id!\n")
    with pytest.raises(ValueError, match="line 1: not a member id"):
        RelayServer(RelayConfig(data_dir=tmp_path / "r", create_policy=CreatePolicy.LISTED,
                                create_allowlist=allowlist))
    with pytest.raises(ValueError, match="create_allowlist is required"):
        RelayConfig(data_dir=tmp_path, create_policy=CreatePolicy.LISTED)


# --- idle rooms ---------------------------------------------------------------------------------


def _snapshot(relay: RelayServer, space: bytes) -> tuple[object, ...]:
    room = relay.rooms[space]
    state = room.state
    return (state.heads, state.members, state.author_seqs, state.epoch, state.invites, state.policy,
            state.snapshot, room.genesis, room.durable_seq, room.latest_head.encode())


async def _writer_space(relay: RelayServer) -> tuple[SpaceBuilder, Identity, LogVerifier]:
    """A space with a second member and a few entries; every connection closed. The creator's verifier."""
    space = SpaceBuilder(relay.public_key)
    bob = Identity.generate()
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.submit([space.add_member(bob)])
    await alice.submit([space.data(space.creator, f"entry {i}".encode()) for i in range(5)])
    await alice.close()
    return space, bob, alice.verifier


async def test_an_idle_room_is_unloaded_and_reloads_identical(make_relay: RelayFactory) -> None:
    relay = await make_relay(idle_room_seconds=0.05)
    space, bob, verifier = await _writer_space(relay)
    await wait_until(lambda: space.space in relay.rooms and relay.users_of(space.space) == 0, "connection gone")
    before = _snapshot(relay, space.space)
    old_room = relay.rooms[space.space]
    await wait_until(lambda: space.space not in relay.rooms, "the idle room is unloaded")
    assert old_room.closed
    # The creator continues its own verified chain on the reloaded room.
    alice = await join(url_of(relay), space, space.creator, verifier=verifier)
    assert relay.rooms[space.space] is not old_room
    assert _snapshot(relay, space.space) == before
    ack = await alice.submit([space.data(space.creator, b"after the reload")])
    assert ack.results == [(8, 8)]
    await alice.sync_to(8)
    # A new member verifies the whole log from the genesis.
    fresh = await join(url_of(relay), space, bob)
    assert fresh.seq == 8 and fresh.verifier.head == alice.verifier.head
    await alice.close()
    await fresh.close()


async def test_a_used_room_is_not_unloaded(make_relay: RelayFactory) -> None:
    relay = await make_relay(idle_room_seconds=0)  # no sweeper: the test unloads by hand
    space, _bob, verifier = await _writer_space(relay)
    alice = await join(url_of(relay), space, space.creator, verifier=verifier)
    assert not await relay.unload_room(space.space)
    assert space.space in relay.rooms
    await alice.submit([space.data(space.creator)])
    await alice.close()
    await wait_until(lambda: relay.users_of(space.space) == 0, "connection released")
    assert await relay.unload_room(space.space)
    assert space.space not in relay.rooms


async def test_a_connection_racing_the_unload_loses_nothing(make_relay: RelayFactory) -> None:
    relay = await make_relay(idle_room_seconds=0)
    space, _bob, verifier = await _writer_space(relay)
    await wait_until(lambda: relay.users_of(space.space) == 0, "connection released")
    old_room = relay.rooms[space.space]
    before = _snapshot(relay, space.space)
    closing = Gate()
    closing.wrap(old_room, "close")  # the unload holds the space's lock here
    unload = asyncio.create_task(relay.unload_room(space.space))
    opening = Gate()
    try:
        await closing.wait_entered()
        opening.wrap(relay, "open_room")
        racer = asyncio.create_task(join(url_of(relay), space, space.creator, verifier=verifier))
        await opening.wait_entered()
        opening.release()  # the racer now waits for the space's lock, held by the unload
        await asyncio.sleep(0.05)
        assert not racer.done()
    finally:
        opening.release()
        closing.release()  # a failure must not leave the relay's stop waiting on the lock
    assert await unload
    alice: Member = await racer
    assert relay.rooms[space.space] is not old_room  # loaded again from the store
    assert _snapshot(relay, space.space) == before
    ack = await alice.submit([space.data(space.creator, b"after the race")])
    assert ack.results == [(8, 8)]
    await alice.close()


def test_flags_build_the_config(tmp_path: Path) -> None:
    config = config_of(parse_args([
        "--data-dir", str(tmp_path), "--max-hello-frame", "8192", "--max-connections", "10",
        "--max-connections-per-address", "0", "--max-creates-per-address", "3", "--create-window", "60",
        "--exempt-addresses", "", "--create-policy", "closed", "--idle-room-seconds", "30",
        "--total-blob-quota", "1000", "--max-opening-connections", "50", "--max-opening-per-address", "5",
        "--open-timeout", "3", "--handshake-timeout", "4", "--max-buffered-bytes", "65536",
        "--ping-interval", "7", "--close-timeout", "2", "--max-buffered-total", "0",
    ]))
    assert (config.max_opening_connections, config.max_opening_per_address, config.open_timeout) == (50, 5, 3.0)
    assert (config.handshake_timeout, config.max_buffered_bytes, config.ping_interval) == (4.0, 65536, 7.0)
    assert (config.close_timeout, config.max_buffered_total) == (2.0, 0)
    assert (config.max_hello_frame, config.max_connections, config.max_connections_per_address) == (8192, 10, 0)
    assert (config.max_creates_per_address, config.create_window, config.exempt_addresses) == (3, 60.0, frozenset())
    assert config.create_policy is CreatePolicy.CLOSED
    assert (config.idle_room_seconds, config.total_blob_quota) == (30.0, 1000)
    defaults = config_of(parse_args(["--data-dir", str(tmp_path)]))
    assert defaults == RelayConfig(data_dir=tmp_path)


async def test_a_connection_that_stops_answering_pings_is_closed(make_relay: RelayFactory) -> None:
    """One keepalive loop pings every connection: a peer that answers stays, one whose pong never
    comes is closed (its reads paused, so its websocket cannot answer)."""
    relay = await make_relay(ping_interval=0.05)
    space = SpaceBuilder(relay.public_key)
    alive = await join(url_of(relay), space, space.creator, create=True)
    silent = await RawClient.open(url_of(relay))
    await wait_until(lambda: relay.connections.of("127.0.0.1") == 2, "both connected")
    silent.ws.transport.pause_reading()
    await wait_until(lambda: relay.connections.of("127.0.0.1") == 1, "the silent connection closed")
    await asyncio.sleep(0.3)  # several more rounds of pings
    assert relay.connections.of("127.0.0.1") == 1
    ack = await alive.submit([space.data(space.creator, b"still here")])
    assert ack.results
