"""RelayServer: the websocket endpoint, the registry of loaded spaces, and the frame encoders.

The relay is not trusted by its clients, and its tests prove that by running a relay that
lies. Every frame that carries the log to a client is therefore built by one overridable
method, so a test can subclass RelayServer into a malicious relay over a real websocket
without touching the honest code paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from http import HTTPStatus

import nacl.signing
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from encspaces.core import crypto
from encspaces.core.codes import RefusalCode
from encspaces.core.file_lock import FileLock
from encspaces.core.head import SignedHead, next_head
from encspaces.core.identity import member_id
from encspaces.core.log_state import GENESIS_SEQ, LogState
from encspaces.core.messages import Ack, AnchorState, CheckpointNote, Entries, Presence, ProofReply, Welcome
from encspaces.core.private_file import make_private_dir
from encspaces.errors import EncspacesError, SpaceExistsError, StoreUnavailableError

from .backlog import Backlog
from .blobs import BLOBS_DIR, BlobStore
from .bus import Bus, NatsBus, NullBus
from .config import RelayConfig
from .datadir_lock import lock_data_dir
from .handshake import Admission
from .head_signer import HeadSigner
from .inline import InlineConnection
from .keys import load_or_create_signing_key
from .limits import ConnectionCounter, CreateGate, OpeningCounter
from .metrics import MetricsServer, RelayMetrics, check_health, server_levels
from .peer import Peer, UnsentLedger, close_within, drop, remote_host
from .refusals import Refusal, internal, unavailable
from .room import Room
from .session import Session
from .shared_log import refresh
from .storage import BlobBackend, RelayStore, open_store
from .store import EntryRow

log = logging.getLogger(__name__)

UNAVAILABLE_REASON = "relay shutting down"
# What a plain HTTP request (a browser, curl) to the relay's port gets instead of 426.
PLAIN_HTTP_ANSWER = ("This is an encspaces relay. It speaks the encspaces protocol over websockets: "
                     "use an encspaces client (the encspaces CLI or SDK) with a ws:// or wss:// URL.\n")


class RelayServer:
    """The relay daemon: ``await start()`` to listen, ``await stop()`` to shut down cleanly.

    Hooks for tests (override in a subclass to build a misbehaving relay). Each receives the
    space id and returns the exact bytes sent; the honest implementation is the default:

    - ``encode_welcome(space, head, anchor) -> bytes``: the Welcome after admission.
    - ``encode_entries_frame(space, first_seq, entries, head) -> bytes``: one Entries frame
      (entries ``first_seq..`` and the head signed at the last one). Tamper with entries,
      first_seq or the head here; re-sign heads with ``self.signing_key`` via
      ``SignedHead.create``.
    - ``frames_for_entries(space, first_seq, entries, head) -> Sequence[bytes]``: the frames
      actually sent for that run of entries, by default ``[encode_entries_frame(...)]``.
      Return ``[]`` to drop it, several frames to replay, or hold one back and send it later
      to reorder.
    - ``encode_ack(space, results) -> bytes``: the Ack of one Submit, ``(author_seq, seq)`` pairs.
    - ``encode_presence(space, presence) -> bytes``: a member's presence, forwarded to the others
      (return ``b""`` to drop it).
    - ``checkpoint_for(space) -> bytes | None``: the checkpoint note a client is given in its
      Welcome and in answer to ``checkpoint_req`` (the newest cosigned one, else the newest signed).
    - ``encode_checkpoint(space, note, id) -> bytes``: a ``checkpoint`` message (pushed when
      witnesses cosigned, ``id`` None; or an answer).
    - ``encode_proof(space, reply) -> bytes``: the answer to a consistency or inclusion request.

    ``encode_welcome`` runs once per connection and the entries hooks once per catch-up
    frame of that connection, so a stateful hook can show each client a different history.
    A live frame is encoded once and broadcast to every subscriber of the space.
    """

    def __init__(self, config: RelayConfig, signing_key: nacl.signing.SigningKey | None = None) -> None:
        self._config = config
        make_private_dir(config.data_dir)
        self._signing_key = signing_key or load_or_create_signing_key(config.data_dir)
        self._head_signer = HeadSigner(self._signing_key)
        self.public_key = bytes(self._signing_key.verify_key)
        self.rooms: dict[bytes, Room] = {}
        self._space_locks = _KeyedLocks()
        self._store: RelayStore | None = None
        self._server: Server | None = None
        self._stopping = False
        self._numbers = itertools.count(1)
        self.port: int | None = None
        self.blobs: BlobBackend = BlobStore(config.data_dir / BLOBS_DIR, max_blob_size=config.max_blob_size,
                               quota=config.blob_quota, total_quota=config.total_blob_quota)
        self.connections = ConnectionCounter(config)
        # Sockets accepted and not yet through the websocket opening handshake (_OpeningConnection).
        self.opening = OpeningCounter(config)
        # With wss: the TLS handshakes of sockets accepted and counted (cancelled at stop).
        self._tls_handshakes: set[asyncio.Task[None]] = set()
        self.create_gate = CreateGate(config)  # reads the allowlist now: a bad file stops the start
        # Connections using each loaded space (from open_room to the session's end), and since
        # when a loaded space has had none: the sweeper unloads it after idle_room_seconds.
        self._users: dict[bytes, int] = {}
        self._idle_since: dict[bytes, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        # The keepalive's ping of each connection until its pong (or the connection's drop): at
        # most one per connection, however long a peer that stopped reading keeps it waiting.
        self._pings: dict[ServerConnection, asyncio.Task[None]] = {}
        # Each connection's peer while its session runs: the keepalive skips one heard from.
        self._peers: dict[ServerConnection, Peer] = {}
        self.metrics = RelayMetrics()
        # Entries verified and not yet committed, all spaces (encspaces_relay/backlog.py).
        self.backlog = Backlog(config.max_pending_entries, self.metrics)
        # Unsent bytes of all connections together, against max_buffered_total (peer.py).
        self.unsent = UnsentLedger(config.max_buffered_total)
        self.metrics.watch(lambda: server_levels(self))
        self._metrics_server: MetricsServer | None = None
        self._lock: FileLock | None = None
        # Cross-relay fan-out (encspaces_relay/bus.py): NATS with --bus, else nobody to tell.
        self.bus: Bus = NatsBus(config.bus) if config.bus else NullBus()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def metrics_port(self) -> int | None:
        """The bound port of /healthz and /metrics, if served."""
        return None if self._metrics_server is None else self._metrics_server.port

    async def health(self) -> tuple[bool, dict[str, object]]:
        """Whether the relay can serve (its store answers), and a few figures: ``/healthz``."""
        return await check_health(self)

    @property
    def config(self) -> RelayConfig:
        return self._config

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        return self._signing_key

    @property
    def head_signer(self) -> HeadSigner:
        return self._head_signer

    @property
    def store(self) -> RelayStore:
        if self._store is None:
            raise RuntimeError("the relay is not started")
        return self._store

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> int:
        """Open the store and listen; returns the bound port (useful with port 0)."""
        if self._server is not None:
            raise RuntimeError("the relay is already started")
        config = self._config
        tls = _tls_context(config)  # a bad certificate stops the start before anything is opened
        self._lock = lock_data_dir(config.data_dir)  # DataDirLockedError if another relay has it
        try:
            self._store = await open_store(config.store, config.data_dir)
            self.blobs = self._store.blob_store(config.data_dir / BLOBS_DIR, max_blob_size=config.max_blob_size,
                                                quota=config.blob_quota, total_quota=config.total_blob_quota)
            await self.bus.start(self)
        except BaseException:
            if self._store is not None:
                await self._store.close()
                self._store = None
            self._release_lock()
            raise
        try:
            self._server = await serve(
                self._handle,
                config.host,
                config.port,
                ssl=None,  # TLS is started by each connection once counted (_OpeningConnection)
                process_request=_answer_plain_http,
                compression=None,  # ciphertext does not compress
                # Room above the limit so an oversized message is read and answered with an
                # Error frame; beyond twice the limit websockets closes with 1009 itself. Until
                # admission the limit is hello_limit; the session raises it to max_frame.
                max_size=2 * self._config.hello_limit,
                # Messages read ahead per connection (each up to max_size) while a session
                # waits, e.g. for its in-flight submissions to be committed.
                max_queue=4,
                ping_interval=None,  # one keepalive loop for all connections (_keepalive), not a task each
                open_timeout=config.open_timeout,
                close_timeout=config.close_timeout,
                # Counts each socket from its accept (max_opening_connections, _per_address).
                create_connection=_opening_connection_class(self.opening, self.metrics, tls, config.open_timeout,
                                                            self._tls_handshakes),
            )
            if config.metrics_port is not None:
                self._metrics_server = MetricsServer(self, config.metrics_host, config.metrics_port)
                await self._metrics_server.start()
        except BaseException:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            await self.bus.close()
            await self._store.close()
            self._store = None
            self._release_lock()
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep(), name="relay sweeper")
        self._pinger = asyncio.create_task(self._keepalive(), name="relay keepalive")
        log.info("relay %s listening on %s://%s:%d", member_id(self.public_key), config.scheme, config.host, self.port)
        return self.port

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    async def stop(self) -> None:
        """Stop accepting, commit and ack what is queued, close every connection, close the store."""
        server = self._server
        if server is None or self._stopping:
            return
        self._stopping = True
        log.info("relay stopping")
        tasks = [self._sweeper, self._pinger, *self._pings.values()]
        for task in tasks:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
        server.server.close()  # no new connections
        for handshake in list(self._tls_handshakes):
            handshake.cancel()
        await asyncio.gather(*self._tls_handshakes, return_exceptions=True)
        await self._close_rooms()  # finish commits in flight
        server.close(code=CloseCode.GOING_AWAY, reason=UNAVAILABLE_REASON)
        try:
            async with asyncio.timeout(self._config.close_timeout):
                await server.wait_closed()  # every connection closed, every handler returned
        except TimeoutError:
            # websockets' close waits for the write buffer to drain before its own timeout
            # applies, so a peer that stopped reading would hold the shutdown forever: drop them.
            for ws in list(server.all_connections):
                if ws.protocol.state is not State.CLOSED:
                    drop(ws, f"it did not close within {self._config.close_timeout:g} s", self.metrics,
                         "close_timeout")
            await server.wait_closed()
        await self._close_rooms()  # rooms a handshake in progress opened meanwhile
        if self._metrics_server is not None:
            await self._metrics_server.stop()
            self._metrics_server = None
        await self.bus.close()
        await self.store.close()
        self._release_lock()
        self._server = None
        log.info("relay stopped")

    async def _close_rooms(self) -> None:
        for room in list(self.rooms.values()):
            await room.close()

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _OpeningConnection)  # the connection class start() serves with
        ws.opened()  # through the opening handshake: a connection now, counted below
        number = next(self._numbers)
        address = remote_host(ws)
        try:
            self.connections.open(address)
        except Refusal as refusal:
            log.info("conn#%d from %s: refused: %s: %s", number, address, refusal.code, refusal.message)
            await Peer(ws, number, self._config, self.metrics).refuse(refusal)
            return
        session = Session(self, ws, number, address)
        self._peers[ws] = session.peer
        try:
            await session.run()
        finally:
            del self._peers[ws]
            self.connections.close(address)
            if ws.protocol.state is not State.CLOSED:
                # websockets closes it after this returns, waiting for the peer to read first:
                # bound that, so a peer that stopped reading cannot hold the connection.
                await close_within(ws, CloseCode.NORMAL_CLOSURE, "", self._config.close_timeout, self.metrics)

    # --- spaces -------------------------------------------------------------------------------

    async def open_room(self, admission: Admission, address: str = "") -> Room:
        """The loaded space, loading it from the store or creating it from the genesis.

        The caller is a connection from ``address`` that now uses the room: it calls
        ``release_room`` when it ends, so the room is not unloaded while anyone uses it.
        """
        space = admission.space
        async with self._space_locks.hold(space):
            if self._stopping:
                raise unavailable()
            room = self.rooms.get(space)
            if room is None:
                room = await self._load(space)
            elif self.store.shared:
                await self._refresh(room)  # what other relays committed since
            if room is None:
                if admission.genesis is None:
                    raise Refusal(RefusalCode.UNKNOWN_SPACE, f"this relay hosts no space {member_id(space)}")
                now = time.monotonic()
                self.create_gate.check(admission.member, address, now)
                self.create_gate.created(address, now)  # before the write: concurrent creates count
                room = await self._create(admission)
            elif admission.genesis is not None and admission.genesis.raw != room.genesis:
                raise Refusal(RefusalCode.BAD_GENESIS, f"space {member_id(space)} exists with another genesis entry")
            self._users[space] = self._users.get(space, 0) + 1
            self._idle_since.pop(space, None)
            return room

    def release_room(self, room: Room) -> None:
        """A connection that ``open_room`` returned ``room`` to has ended."""
        space = room.space
        users = self._users[space] - 1
        if users:
            self._users[space] = users
        else:
            del self._users[space]
            self._idle_since[space] = time.monotonic()

    def users_of(self, space: bytes) -> int:
        """Connections using a space (tests check that every one is released)."""
        return self._users.get(space, 0)

    async def _sweep(self) -> None:
        """Now and then: unload the rooms idle for idle_room_seconds, forget old create records."""
        idle = self._config.idle_room_seconds
        interval = min(idle / 4, 5.0) if idle else 5.0
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            self.create_gate.prune(now)
            if idle:
                for space, since in list(self._idle_since.items()):
                    if now - since >= idle:
                        await self.unload_room(space, min_idle=idle)

    async def _keepalive(self) -> None:
        """Ping every open connection each ``ping_interval``; drop one whose pong does not come
        within as long again (as websockets' own keepalive does).

        websockets' keepalive is a task per connection for its whole life, about 5 KiB of relay
        memory per space of three connected members (bench/README.md, issue 12 relay section).
        Here one loop sweeps them all, and a ping's task lives only until its pong arrives. A
        connection that sent a message since the last round, and has nothing unsent, is alive
        and reading: it is not pinged (a ping and its pong cost the relay about what a message
        does; bench/README.md, "Many spaces: the relay's CPU per edit is not the sum of its parts").
        """
        interval = self._config.ping_interval
        while self._server is not None:
            await asyncio.sleep(interval)
            self.ping_all(interval)

    def ping_all(self, timeout: float) -> None:
        """One keepalive round: ping every open connection that has no ping in flight, except
        one heard from since the last round whose queued bytes were all taken (it skips this
        round, so a connection that falls silent is pinged within two rounds)."""
        server = self._server
        if server is None:
            return
        for ws in list(server.connections):
            if ws.protocol.state is State.OPEN and ws not in self._pings:
                peer = self._peers.get(ws)
                if peer is not None and peer.heard:
                    peer.heard = False
                    if not peer.buffered_bytes():
                        continue
                task = asyncio.create_task(self._ping(ws, timeout))
                self._pings[ws] = task
                task.add_done_callback(lambda _, ws=ws: self._pings.pop(ws, None))  # type: ignore[misc]

    def pings_in_flight(self) -> int:
        """Keepalive pings waiting (tests check that a stalled peer never has more than one)."""
        return len(self._pings)

    async def _ping(self, ws: ServerConnection, timeout: float) -> None:
        """Ping ``ws``; drop it if it stops taking bytes, or if its pong does not come in time.

        ``ws.ping()`` returns only once the write buffer has drained below websockets' low-water
        mark, so a peer that stopped reading would keep it (and the connection, and its unsent
        bytes) waiting forever. The wait for the drain gets ``timeout`` again as long as the
        buffer shrank meanwhile (a slow reader is still reading); the pong then gets ``timeout``.
        """
        sent = time.monotonic()
        try:
            ping = asyncio.ensure_future(ws.ping())
            try:
                buffered = ws.transport.get_write_buffer_size()
                while not ping.done():
                    await asyncio.wait({ping}, timeout=timeout)
                    unsent = ws.transport.get_write_buffer_size()
                    if not ping.done() and unsent >= buffered:
                        drop(ws, f"{unsent} bytes unsent and none taken in {timeout:g} s", self.metrics, "not_reading")
                        return
                    buffered = unsent
                pong = ping.result()
            finally:
                ping.cancel()  # only if this task was cancelled or dropped the peer
            sent = time.monotonic()
            async with asyncio.timeout(timeout):
                await pong
        except TimeoutError:
            if self.backlog.waited_since(ws, sent):
                # Its session waited for the backlog and did not read meanwhile: the pong may be
                # behind its unread submissions. Not a sign of a dead peer; the next round pings again.
                return
            drop(ws, f"no pong within {timeout:g} s", self.metrics, "no_pong")
        except ConnectionClosed:
            pass

    async def unload_room(self, space: bytes, *, min_idle: float = 0.0) -> bool:
        """Release an idle room's memory (its log is on disk); True if it was unloaded.

        Under the space's lock, so a connection that arrives meanwhile waits in ``open_room``
        and then loads the space again from the store; one that got the room first keeps it.
        """
        async with self._space_locks.hold(space):
            since = self._idle_since.get(space)
            if self._users.get(space) or since is None or time.monotonic() - since < min_idle:
                return False  # used again (maybe gone again) since the sweeper looked
            del self._idle_since[space]
            room = self.rooms.get(space)
            if room is None:
                return False
            await room.close()  # commits what a gone connection left queued
            if self.rooms.get(space) is room:
                del self.rooms[space]
            log.info("%s unloaded (idle)", room.label)
            return True

    async def _load(self, space: bytes) -> Room | None:
        try:
            loaded = await self.store.load_space(space)
        except StoreUnavailableError as exc:
            log.error("cannot load space %s: %s", member_id(space), exc)
            raise internal("the relay's database is unavailable: reconnect and resubmit later") from exc
        except EncspacesError as exc:
            log.error("cannot load space %s: %s", member_id(space), exc)
            raise internal("the relay cannot load this space from its store") from exc
        if loaded is None:
            return None
        room = Room(self, self.store, space, loaded.state, loaded.genesis, loaded.signed_head, loaded.tree,
                    loaded.checkpoint)
        self.rooms[space] = room
        self._idle_since.setdefault(space, time.monotonic())  # until a connection uses it
        log.info("%s loaded at seq %d", room.label, loaded.state.seq)
        return room

    async def _create(self, admission: Admission) -> Room:
        genesis = admission.genesis
        assert genesis is not None
        space = admission.space
        digest = genesis.digest()
        head = next_head(crypto.ZERO_HASH, GENESIS_SEQ, digest)
        signed = SignedHead.create(self._signing_key, space, GENESIS_SEQ, head)
        row = EntryRow(GENESIS_SEQ, genesis.header.author, genesis.header.author_seq, digest, head, genesis.raw)
        try:
            await self.store.create_space(space, row, signed)
        except SpaceExistsError:  # another relay of the cluster created it first (the same genesis: same id)
            room = await self._load(space)
            if room is None:
                raise internal(f"space {member_id(space)} was created and is gone") from None
            return room
        except StoreUnavailableError as exc:
            log.error("cannot create space %s: %s", member_id(space), exc)
            raise internal("the relay's database is unavailable: reconnect and resubmit later") from exc
        state = LogState(space)
        state.apply(genesis, GENESIS_SEQ, head)
        room = Room(self, self.store, space, state, genesis.raw, signed)
        self.rooms[space] = room
        self._idle_since.setdefault(space, time.monotonic())
        log.info("%s created by %s", room.label, member_id(admission.member)[:12])
        return room

    async def _refresh(self, room: Room) -> None:
        try:
            await refresh(room)
        except StoreUnavailableError as exc:
            log.error("%s: cannot read what other relays committed: %s", room.label, exc)
            raise internal("the relay's database is unavailable: reconnect and resubmit later") from exc
        except EncspacesError as exc:
            log.error("%s: what other relays committed does not extend the log: %s", room.label, exc)
            raise internal("the relay cannot load this space from its store") from exc

    def room_failed(self, room: Room) -> None:
        """Forget a room whose memory may be ahead of its disk: the next connection reloads it."""
        if self.rooms.get(room.space) is room:
            del self.rooms[room.space]

    # --- frame encoders: the hooks a malicious test relay overrides --------------------------

    def encode_welcome(self, space: bytes, head: SignedHead, anchor: SignedHead | None) -> bytes:
        return Welcome(head, anchor, self.checkpoint_for(space)).encode()

    def checkpoint_for(self, space: bytes) -> bytes | None:
        room = self.rooms.get(space)
        return None if room is None else room.checkpointer.sign_now()

    def encode_checkpoint(self, space: bytes, note: bytes, id: int | None = None) -> bytes:
        return CheckpointNote(note, id).encode()

    def encode_proof(self, space: bytes, reply: ProofReply) -> bytes:
        return reply.encode()

    def encode_entries_frame(self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead) -> bytes:
        return Entries(first_seq, entries, head).encode()

    def frames_for_entries(
        self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
    ) -> Sequence[bytes]:
        return [self.encode_entries_frame(space, first_seq, entries, head)]

    def encode_ack(self, space: bytes, results: list[tuple[int, int]], head: SignedHead | None = None) -> bytes:
        return Ack(results, head).encode()

    def encode_anchor_state(self, space: bytes, seq: int, state: bytes) -> bytes:
        """The log state at an anchor, for a new device that starts there (encspaces_relay/anchors.py)."""
        return AnchorState(seq, state).encode()

    def encode_presence(self, space: bytes, presence: Presence) -> bytes:
        """The presence frame forwarded to the other subscribers (encoded once for all)."""
        return presence.encode()


# What a socket over max_opening_connections or max_opening_per_address gets: there is no
# websocket yet to send an Error frame on, and the HTTP request need not be read to refuse it.
_OPENING_REFUSAL_TEXT = b"too many connections opening from this address or in all: try again later\n"
OPENING_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(_OPENING_REFUSAL_TEXT), _OPENING_REFUSAL_TEXT))


class _OpeningConnection(InlineConnection):
    """A ServerConnection counted against the opening caps from the moment its socket is accepted.

    Until the websocket opening handshake is done it is not one of the relay's connections
    (ConnectionCounter), yet it holds a file descriptor until open_timeout; over a cap it is
    closed before its request is read (a plain socket is answered 503 first). With wss the
    count comes before the TLS handshake, which this class starts itself: asyncio calls a
    protocol only once TLS is done, so sockets that never finish it (a TLS slowloris) would
    hold a descriptor each, uncounted, for open_timeout. ``opening``, ``metrics``, ``tls`` and
    ``handshakes`` are set per relay by ``_opening_connection_class``.
    """

    opening: OpeningCounter
    metrics: RelayMetrics
    tls: ssl.SSLContext | None
    tls_timeout: float
    handshakes: set[asyncio.Task[None]]  # the relay's: cancelled when it stops
    _opening_address: str | None = None
    _tls_pending = False  # the TLS handshake runs: websockets has not been given the connection yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        assert isinstance(transport, asyncio.Transport)
        if self.opening.admit(address):
            self._opening_address = address
            if self.tls is None:
                super().connection_made(transport)
            else:
                # Nothing reaches websockets before TLS: start_tls takes the socket over from here.
                transport.pause_reading()
                self._tls_pending = True
                task = asyncio.get_running_loop().create_task(self._start_tls(transport), name="relay TLS handshake")
                self.handshakes.add(task)
                task.add_done_callback(self.handshakes.discard)
            return
        super().connection_made(transport)  # (its handler sees the close at once and returns)
        # Debug, not info: a flood would write a line per socket (the dropped metric counts them).
        log.debug("a connection from %s refused at accept: too many opening (%d from it, %d in all)",
                  address, self.opening.of(address), self.opening.total)
        self.metrics.dropped.labels("opening_limit").inc()
        if self.tls is None:
            transport.write(OPENING_REFUSAL)
        transport.close()

    async def _start_tls(self, transport: asyncio.Transport) -> None:
        """TLS over the counted socket, then the websocket connection over TLS; a handshake that
        fails, times out (open_timeout) or is cancelled drops the socket and uncounts it."""
        assert self.tls is not None
        try:
            secure = await asyncio.get_running_loop().start_tls(
                transport, self, self.tls, server_side=True, ssl_handshake_timeout=self.tls_timeout)
        except BaseException as exc:
            transport.abort()  # (its connection_lost, if it still reaches us, skips websockets)
            self.opened()
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.debug("a TLS handshake failed: %s", exc or type(exc).__name__)
            return
        self._tls_pending = False
        if secure is None:  # (the socket closed as the handshake ended)
            transport.abort()
            self.opened()
            return
        super().connection_made(secure)

    def opened(self) -> None:
        """No longer opening (the handshake is done, or the socket is gone): uncount it, once."""
        address, self._opening_address = self._opening_address, None
        if address is not None:
            self.opening.close(address)

    def connection_lost(self, exc: Exception | None) -> None:
        self.opened()
        if not self._tls_pending:  # (else websockets never had the connection)
            super().connection_lost(exc)


def _opening_connection_class(opening: OpeningCounter, metrics: RelayMetrics, tls: ssl.SSLContext | None,
                              tls_timeout: float, handshakes: set[asyncio.Task[None]]) -> type[ServerConnection]:
    """The connection class websockets creates for each socket this relay accepts."""
    return type("RelayConnection", (_OpeningConnection,), {
        "opening": opening, "metrics": metrics, "tls": tls, "tls_timeout": tls_timeout, "handshakes": handshakes})


def _tls_context(config: RelayConfig) -> ssl.SSLContext | None:
    """The server side of wss:// from the configured PEM files, or None for plain ws://."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use the TLS certificate {config.tls_cert} with the key {config.tls_key}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from exc
    return context


def _answer_plain_http(connection: ServerConnection, request: Request) -> Response | None:
    """A request that is not a websocket upgrade (a browser, curl) gets a short text, not a 426."""
    if "websocket" in request.headers.get("Upgrade", "").lower():
        return None
    return connection.respond(HTTPStatus.OK, PLAIN_HTTP_ANSWER)


class _KeyedLocks:
    """One asyncio lock per space id, existing only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: bytes) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
