"""Connection flooding against a real relay over real sockets: what one peer can make it hold.

Each attack is a peer that opens sockets and never finishes the websocket upgrade, or a
member that stops reading while the relay has bytes for it. The relay must bound what it
holds for them by counts (sockets, queued bytes of whole frames), drop them with a clear
code where the peer can still read one, and keep serving everyone else. Nothing here waits
for a duration to pass: the timeouts are made short and the tests wait for the outcome.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from relay_kit import WAIT, Member, RelayFactory, SpaceBuilder, join, make_hello, url_of, wait_until
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from encspaces import create_space
from encspaces.core.identity import Identity
from encspaces.core.messages import Challenge, Error, decode_message
from encspaces.errors import ConnectionFailedError, RelayBusyError
from encspaces_clients.cli.errors import explain
from encspaces_relay.peer import Peer, UnsentLedger
from encspaces_relay.server import RelayServer

NO_EXEMPT: frozenset[str] = frozenset()
PARTIAL_REQUEST = b"GET / HTTP/1.1\r\nHost: relay\r\n"  # and never the blank line that ends it
WRITE_LIMIT = 1 << 15  # websockets' write buffer high-water mark (the relay keeps the default)


class SmallBufferRelay(RelayServer):
    """The honest relay with a small kernel send buffer per connection, so that a peer that
    stops reading fills the relay's own write buffer after a few frames instead of megabytes."""

    async def _handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        await super()._handle(ws)


async def _tcp(relay: RelayServer, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", relay.port, local_addr=(source, 0))


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything the relay sends until it closes the socket (a reset counts as closed)."""
    try:
        async with asyncio.timeout(WAIT):
            return await reader.read()
    except ConnectionResetError:
        return b""


async def _ws_from(relay: RelayServer, source: str) -> ClientConnection:
    return await connect(url_of(relay), compression=None, proxy=None, local_addr=(source, 0))


def _small_receive_buffer(relay: RelayServer) -> socket.socket:
    """A socket connected to the relay whose kernel takes at most a few KiB it was not asked to read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", relay.port))
    sock.setblocking(False)
    return sock


async def _stalled_member(relay: RelayServer, space: SpaceBuilder, who: Identity, since_seq: int) -> ClientConnection:
    """``who`` sends its hello and then reads nothing at all (not even pings)."""
    ws = await connect(url_of(relay), compression=None, proxy=None, sock=_small_receive_buffer(relay), max_size=None)
    challenge = decode_message(await ws.recv())  # type: ignore[arg-type]
    assert isinstance(challenge, Challenge)
    ws.transport.pause_reading()
    await ws.send(make_hello(challenge, who, space.space, since_seq=since_seq).encode())
    return ws


def _dropped(relay: RelayServer, reason: str) -> float:
    """The relay's count of sockets dropped for ``reason`` (encspaces_relay_dropped_connections_total)."""
    value = relay.metrics.registry.get_sample_value("encspaces_relay_dropped_connections_total", {"reason": reason})
    return value or 0.0


def _relay_side(relay: RelayServer, client: ClientConnection) -> ServerConnection:
    """The relay's end of ``client``'s connection."""
    port = client.local_address[1]
    server = relay._server
    assert server is not None
    (ws,) = [ws for ws in server.all_connections if ws.remote_address[1] == port]
    return ws


async def _still_served(relay: RelayServer, space: SpaceBuilder, alice: Member, *readers: Member) -> None:
    """Alice's writes are acked and reach every reader and a newcomer, verified."""
    ack = await alice.submit([space.data(space.creator, b"still served")])
    seq = ack.results[0][1]
    for reader in (alice, *readers):
        await reader.sync_to(seq)
    fresh = await join(url_of(relay), space, space.creator)
    assert fresh.seq == seq and fresh.verifier.head == alice.verifier.head
    await fresh.close()


# --- sockets that never finish the websocket upgrade (slowloris) --------------------------------


async def test_sockets_that_never_finish_the_upgrade_are_capped_per_address(make_relay: RelayFactory) -> None:
    """Before the fix they were not counted at all: each held a file descriptor until the
    opening handshake timed out, however many one address opened."""
    # open_timeout is long: the slow sockets stay until the test closes them, however slow the machine.
    relay = await make_relay(max_opening_per_address=3, open_timeout=600, exempt_addresses=NO_EXEMPT)
    slow = [await _tcp(relay, "127.0.0.2") for _ in range(3)]
    for _, writer in slow:
        writer.write(PARTIAL_REQUEST)
    await wait_until(lambda: relay.opening.of("127.0.0.2") == 3, "three sockets opening")
    for _ in range(10):  # the flood: each further socket is answered 503 and closed at once
        reader, writer = await _tcp(relay, "127.0.0.2")
        writer.write(PARTIAL_REQUEST)
        answer = await _read_to_end(reader)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many connections opening" in answer
        writer.close()
    assert relay.opening.of("127.0.0.2") == 3  # a refused socket was never counted
    assert _dropped(relay, "opening_limit") == 10
    with pytest.raises(InvalidStatus) as refused:  # what a websocket client sees meanwhile
        await _ws_from(relay, "127.0.0.2")
    assert refused.value.response.status_code == 503
    # Another address is served as before.
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    await _still_served(relay, space, alice)
    # Closing the slow sockets frees their places.
    for _, writer in slow:
        writer.close()
    await wait_until(lambda: relay.opening.total == 0, "the slow sockets are uncounted")
    again = await _ws_from(relay, "127.0.0.2")
    assert isinstance(decode_message(await again.recv()), Challenge)  # type: ignore[arg-type]
    await again.close()
    await alice.close()


async def test_opening_sockets_are_capped_in_all(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_opening_connections=2, open_timeout=600, exempt_addresses=NO_EXEMPT)
    slow = [await _tcp(relay, source) for source in ("127.0.0.2", "127.0.0.3")]
    await wait_until(lambda: relay.opening.total == 2, "two sockets opening")
    reader, _ = await _tcp(relay, "127.0.0.4")
    assert (await _read_to_end(reader)).startswith(b"HTTP/1.1 503 ")
    for _, writer in slow:
        writer.close()
    await wait_until(lambda: relay.opening.total == 0, "the slow sockets are uncounted")


async def test_an_sdk_client_refused_at_accept_gets_relay_busy(make_relay: RelayFactory, tmp_path: Path) -> None:
    """What the SDK (and the CLI) make of the 503: the relay is busy, not unreachable."""
    relay = await make_relay(max_opening_connections=1, open_timeout=600)
    _, slow = await _tcp(relay)  # holds the one place for a socket opening
    await wait_until(lambda: relay.opening.total == 1, "the slow socket is opening")
    with pytest.raises(RelayBusyError, match="HTTP 503: too many connections opening") as busy:
        await create_space(url_of(relay), Identity.generate(), data_dir=tmp_path / "refused")
    assert isinstance(busy.value, ConnectionFailedError)
    assert "is the relay running" not in explain(busy.value)[0]
    slow.close()
    await wait_until(lambda: relay.opening.total == 0, "the slow socket is uncounted")
    space = await create_space(url_of(relay), Identity.generate(), data_dir=tmp_path / "served")
    await space.close()


async def test_sockets_that_never_finish_the_tls_handshake_are_capped(
    make_relay: RelayFactory, certificate: tuple[Path, Path],
) -> None:
    """With wss served by the relay, asyncio calls the connection only once TLS is done: before the
    fix, sockets that never sent a ClientHello were not counted, each holding a descriptor for
    open_timeout however many one address opened."""
    cert, key = certificate
    relay = await make_relay(tls_cert=cert, tls_key=key, max_opening_per_address=3, open_timeout=600,
                             exempt_addresses=NO_EXEMPT)
    slow = [await _tcp(relay, "127.0.0.2") for _ in range(3)]  # TCP only: no TLS byte ever
    await wait_until(lambda: relay.opening.of("127.0.0.2") == 3, "three sockets in the TLS handshake")
    for _ in range(5):  # closed at once, without an answer (a TLS client cannot read a plain 503)
        reader, writer = await _tcp(relay, "127.0.0.2")
        assert await _read_to_end(reader) == b""
        writer.close()
    assert relay.opening.of("127.0.0.2") == 3 and _dropped(relay, "opening_limit") == 5
    trusting = ssl.create_default_context(cafile=str(cert))
    # Another address is served over TLS as before; the same address once the slow ones are gone.
    other = await connect(f"wss://127.0.0.1:{relay.port}", ssl=trusting, compression=None, proxy=None,
                          local_addr=("127.0.0.3", 0))
    assert isinstance(decode_message(await other.recv()), Challenge)  # type: ignore[arg-type]
    await other.close()
    for _, writer in slow:
        writer.close()
    await wait_until(lambda: relay.opening.total == 0, "the slow sockets are uncounted")
    again = await connect(f"wss://127.0.0.1:{relay.port}", ssl=trusting, compression=None, proxy=None,
                          local_addr=("127.0.0.2", 0))
    assert isinstance(decode_message(await again.recv()), Challenge)  # type: ignore[arg-type]
    await again.close()


async def test_a_tls_handshake_that_fails_or_stalls_is_dropped_and_uncounted(
    make_relay: RelayFactory, certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    relay = await make_relay(tls_cert=cert, tls_key=key, open_timeout=0.3)
    stalled_reader, stalled = await _tcp(relay)  # never sends a ClientHello: open_timeout ends it
    garbage_reader, garbage = await _tcp(relay)
    garbage.write(PARTIAL_REQUEST + b"\r\n")  # plain HTTP to a TLS port: the handshake fails
    answer = await _read_to_end(garbage_reader)  # closed: after a TLS alert, or without a word
    assert not answer.startswith(b"HTTP/")
    assert await _read_to_end(stalled_reader) == b""
    await wait_until(lambda: relay.opening.total == 0 and relay.connections.total == 0, "both uncounted")
    for w in (stalled, garbage):
        w.close()


async def test_a_socket_that_never_finishes_the_upgrade_is_dropped(make_relay: RelayFactory) -> None:
    """open_timeout (configurable) ends it, and it is uncounted; so is a garbage request."""
    relay = await make_relay(open_timeout=0.2)
    reader, writer = await _tcp(relay)
    writer.write(PARTIAL_REQUEST)
    assert await _read_to_end(reader) == b""  # dropped without an answer: its request never ended
    garbage_reader, garbage = await _tcp(relay)
    garbage.write(b"\x16\x03\x01 not http at all\r\n\r\n")
    answer = await _read_to_end(garbage_reader)  # closed, with a 400 or without a word
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 ")
    await wait_until(lambda: relay.opening.total == 0 and relay.connections.total == 0, "both uncounted")
    for w in (writer, garbage):
        w.close()


async def test_connections_that_never_send_a_hello_are_capped(make_relay: RelayFactory) -> None:
    """Through the upgrade but never authenticating: at most max_connections_per_address of them
    (each closed with ``timeout`` after handshake_timeout: test_relay_handshake.py); the rest of
    the flood is refused ``busy`` and another address is served meanwhile. (Held before this
    branch too; here as the websocket half of the slowloris attack.)"""
    relay = await make_relay(max_connections_per_address=3, exempt_addresses=NO_EXEMPT)
    silent = [await _ws_from(relay, "127.0.0.2") for _ in range(3)]
    for ws in silent:
        assert isinstance(decode_message(await ws.recv()), Challenge)  # type: ignore[arg-type]
    for _ in range(10):
        ws = await _ws_from(relay, "127.0.0.2")
        refusal = decode_message(await ws.recv())  # type: ignore[arg-type]
        assert isinstance(refusal, Error) and refusal.code == "busy"
        await ws.wait_closed()
        assert ws.close_code == 1013
    assert relay.connections.of("127.0.0.2") == 3
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    await _still_served(relay, space, alice)
    for ws in silent:
        await ws.close()
    await wait_until(lambda: relay.connections.of("127.0.0.2") == 0, "the silent connections are uncounted")
    await alice.close()


# --- members that stop reading ------------------------------------------------------------------


async def _space_with_backlog(relay: RelayServer, entries: int, size: int) -> tuple[SpaceBuilder, Member, Identity]:
    """A space whose log holds ``entries`` entries of ``size`` bytes, its creator connected, and
    a second member (returned, not connected)."""
    space = SpaceBuilder(relay.public_key)
    bob = Identity.generate()
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.submit([space.add_member(bob)])
    if entries:
        await alice.submit([space.data(space.creator, bytes(size)) for _ in range(entries)])
    return space, alice, bob


async def test_the_keepalive_pings_a_connection_only_when_it_was_not_heard_from(make_relay: RelayFactory) -> None:
    """A connection that sent a message since the last round and took all it was sent is alive:
    a ping would cost the relay about what a message does and tell it nothing. One that was
    silent since the last round is pinged, and so is one heard from with bytes it has not
    taken (a peer that writes but stopped reading is still found by the ping's drain check)."""
    relay = await make_relay(cls=SmallBufferRelay, ping_interval=600)  # rounds run by the test
    space, alice, bob_id = await _space_with_backlog(relay, entries=0, size=0)
    bob = await join(url_of(relay), space, bob_id, sock=_small_receive_buffer(relay))
    alice_ws, bob_ws = _relay_side(relay, alice.client.ws), _relay_side(relay, bob.client.ws)
    ack = await alice.submit([space.data(space.creator, b"alice writes")])
    await bob.sync_to(ack.results[0][1])

    relay.ping_all(600)  # alice was heard from, bob was not
    assert relay.pings_in_flight() == 1
    await wait_until(lambda: relay.pings_in_flight() == 0, "bob's pong")
    assert bob_ws.latency > 0 and alice_ws.latency == 0  # only bob was pinged

    relay.ping_all(600)  # neither was heard from since the last round
    assert relay.pings_in_flight() == 2
    await wait_until(lambda: relay.pings_in_flight() == 0, "both pongs")
    assert alice_ws.latency > 0

    bob.client.ws.transport.pause_reading()  # bob stops reading, and still writes
    for _ in range(4):  # more than the kernel buffers of both ends hold: the relay keeps the rest
        ack = await alice.submit([space.data(space.creator, bytes(20_000))])
    await wait_until(lambda: bob_ws.transport.get_write_buffer_size() > 0, "bytes queued for bob")
    await bob.send_submit([space.data(bob_id, b"bob writes")])
    await alice.sync_to(ack.results[0][1] + 1)  # the relay has read bob's submission
    relay.ping_all(600)  # both heard from: alice took everything, bob has bytes unsent
    assert relay.pings_in_flight() == 1  # bob's: it waits for his socket, then for his pong
    bob.client.ws.transport.resume_reading()
    await wait_until(lambda: relay.pings_in_flight() == 0, "bob's pong, once he reads again")
    await alice.close()
    await bob.close()


async def test_a_member_that_reads_nothing_during_catch_up_is_dropped(make_relay: RelayFactory) -> None:
    """Catch-up waits for the socket (bounded: websockets' write limit plus one frame), and the
    keepalive drops the peer. Before the fix the keepalive's ping waited for the write buffer to
    drain before its timeout started: the connection was never dropped, its catch-up held for
    ever, and every keepalive round added one more waiting ping."""
    # The keepalive loop never fires by itself: the test runs its rounds (ping_all) once bob's
    # socket is full, so the ping meets the full buffer however fast the machine is.
    relay = await make_relay(cls=SmallBufferRelay, ping_interval=600)
    space, alice, bob = await _space_with_backlog(relay, entries=20, size=20_000)
    stalled = await _stalled_member(relay, space, bob, since_seq=0)
    relay_ws = _relay_side(relay, stalled)
    await wait_until(lambda: relay_ws.paused, "bob's socket is full")
    # While it waits, what the relay holds for bob is bounded by a count of frames, not by time:
    # catch-up sends one frame (20 KB entries, batched into frames of at most max_frame) at a time.
    assert relay_ws.transport.get_write_buffer_size() <= WRITE_LIMIT + relay.config.max_frame
    await alice.close()  # bob alone is pinged (a short pong timeout must not touch a reader)
    await wait_until(lambda: relay.connections.total == 1, "alice gone")
    relay.ping_all(0.05)
    relay.ping_all(0.05)  # a second round while the first waits: no second ping per connection
    assert relay.pings_in_flight() == 1
    await wait_until(lambda: relay_ws.protocol.state is State.CLOSED, "the stalled member is dropped")
    await wait_until(lambda: relay.connections.total == 0, "its session ended")
    assert relay.users_of(space.space) == 0
    await wait_until(lambda: relay.pings_in_flight() == 0, "no ping left waiting on bob")
    assert _dropped(relay, "not_reading") == 1 and _dropped(relay, "no_pong") == 0
    alice = await join(url_of(relay), space, space.creator)  # the relay serves the space as before
    await _still_served(relay, space, alice)
    await alice.close()


async def test_a_subscriber_that_stops_reading_is_closed_too_slow_and_released(
    make_relay: RelayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live frames are written without waiting; past max_buffered_bytes the subscriber is closed
    with 1013 "too slow". Before the fix that close waited for the peer to read its buffer first
    (websockets drains before its close timeout starts), so a peer that never read again kept
    its session, its connection slot and every unsent byte for ever."""
    bound = 64 << 10
    # ping_interval is long: the drop must come from the buffer bound, not from the keepalive.
    relay = await make_relay(cls=SmallBufferRelay, max_buffered_bytes=bound, close_timeout=0.2, ping_interval=600)
    space, alice, bob = await _space_with_backlog(relay, entries=0, size=0)
    carol = Identity.generate()
    await alice.submit([space.add_member(carol)])
    reader = await join(url_of(relay), space, carol)
    stalled = await _stalled_member(relay, space, bob, since_seq=0)
    room = relay.rooms[space.space]
    await wait_until(lambda: len(room.subscribers) == 3, "bob subscribed")
    relay_ws = _relay_side(relay, stalled)
    seen: list[int] = []  # bob's unsent bytes after each write the relay made to him
    within_bound: Callable[[Peer], bool] = Peer.within_bound

    def recording(peer: Peer) -> bool:
        if peer.ws is relay_ws:
            seen.append(peer.buffered_bytes())
        return within_bound(peer)

    monkeypatch.setattr(Peer, "within_bound", recording)
    entry_size = 10_000
    rounds = 0
    while len(room.subscribers) == 3:
        rounds += 1
        assert rounds < 500, "the stalled subscriber was never dropped"
        ack = await alice.submit([space.data(space.creator, bytes(entry_size))])
        await reader.sync_to(ack.results[0][1])  # carol keeps reading
    # Bounded by a count: at most the bound plus the one frame whose write crossed it.
    assert max(seen) <= bound + entry_size + 1024
    assert sum(1 for unsent in seen if unsent > bound) == 1  # nothing written to bob after that
    await wait_until(lambda: relay_ws.protocol.state is State.CLOSED, "bob's connection is gone")
    await wait_until(lambda: relay.connections.total == 2, "bob's session ended")
    close = relay_ws.protocol.close_sent
    assert close is not None and (close.code, close.reason) == (1013, "too slow")
    assert _dropped(relay, "close_timeout") == 1  # it never read its close frame
    assert relay.users_of(space.space) == 2
    await _still_served(relay, space, alice, reader)
    member = await join(url_of(relay), space, bob)  # bob reconnects and catches up from the store
    assert member.verifier.head == alice.verifier.head
    for m in (alice, reader, member):
        await m.close()


async def test_slow_readers_together_are_bounded_by_max_buffered_total(
    make_relay: RelayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three members that stopped reading, each far under max_buffered_bytes: together they pass
    max_buffered_total, and the ones holding the most are closed "too slow" until the total is
    under three quarters of it. Before, each was bounded alone (max_connections of them could
    hold ~35 GiB); the reading member and the writer are unaffected."""
    cap = 256 << 10
    relay = await make_relay(cls=SmallBufferRelay, max_buffered_total=cap, close_timeout=0.2, ping_interval=600)
    space, alice, bob = await _space_with_backlog(relay, entries=0, size=0)
    others = [Identity.generate() for _ in range(3)]
    for who in others:
        await alice.submit([space.add_member(who)])
    carol = await join(url_of(relay), space, others[0])
    stalled = [await _stalled_member(relay, space, who, since_seq=0) for who in (bob, *others[1:])]
    room = relay.rooms[space.space]
    await wait_until(lambda: len(room.subscribers) == 5, "everyone subscribed")
    relay_ends = [_relay_side(relay, ws) for ws in stalled]
    totals: list[int] = []  # the relay's count of all unsent bytes after each write it noted
    note = UnsentLedger.note

    def recording(ledger: UnsentLedger, peer: Peer, unsent: int) -> None:
        note(ledger, peer, unsent)
        totals.append(ledger.total)

    monkeypatch.setattr(UnsentLedger, "note", recording)
    rounds = 0
    while len(room.subscribers) > 2:
        rounds += 1
        assert rounds < 500, "the stalled subscribers were never dropped"
        ack = await alice.submit([space.data(space.creator, bytes(10_000))])
        await carol.sync_to(ack.results[0][1])  # carol keeps reading
    assert max(totals) <= cap  # after each write: over the cap, the heaviest were closed at once
    for ws in relay_ends:
        await wait_until(lambda ws=ws: ws.protocol.state is State.CLOSED, "a stalled member's connection is gone")  # type: ignore[misc]
        close = ws.protocol.close_sent
        assert close is not None and (close.code, close.reason) == (1013, "too slow")
    await wait_until(lambda: relay.connections.total == 2, "their sessions ended")
    # Nothing of the closed connections is still counted: the total is the readers' alone.
    assert relay.unsent.total == sum(relay.unsent.of(peer) for peer in room.subscribers.values())
    await _still_served(relay, space, alice, carol)
    await carol.close()
    await alice.close()


async def test_stop_is_not_held_by_a_peer_that_stopped_reading(make_relay: RelayFactory) -> None:
    """Shutdown closes every connection; websockets' close waits for the peer to read first, so
    before the fix a member that stopped reading held relay.stop() for ever."""
    relay = await make_relay(cls=SmallBufferRelay, close_timeout=0.2, ping_interval=600)
    space, alice, bob = await _space_with_backlog(relay, entries=20, size=20_000)
    await alice.close()  # only bob is left to close: the short close_timeout concerns him alone
    stalled = await _stalled_member(relay, space, bob, since_seq=0)
    relay_ws = _relay_side(relay, stalled)
    await wait_until(lambda: relay_ws.paused, "bob's socket is full")
    async with asyncio.timeout(WAIT):
        await relay.stop()
    assert relay_ws.protocol.state is State.CLOSED
    assert _dropped(relay, "close_timeout") == 1
