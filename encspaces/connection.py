"""The connection runner of a space: connect, handshake and receive through ``ClientSession``,
the one writer to the socket, reconnect with backoff.

A space given several relay URLs (a cluster's relays, docs/cluster.md) stays with the one it
reached while the connection holds, and on a lost connection (or a failed attempt) tries the
next one, round robin, with the same backoff. Nothing else changes on failover: the new
session resumes from the verified seq, the outbox is sent again once it is live (an entry the
old relay stored is answered with its seq), and every relay of a cluster signs with the
cluster's one key, so the verifier checks its heads exactly as before.

A ``Connection`` is owned by its ``Space`` and wired through the ``SpaceHost`` protocol
(encspaces/host.py): it reports the session's events to the host and never touches the
space's state itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from ssl import SSLContext

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from . import faults
from .core.codes import RefusalCode
from .core.encoding import DEFAULT_MAX_MESSAGE
from .core.messages import Submit, decode_message
from .core.session import (
    Acked,
    Anchored,
    BecameLive,
    BlobReplyReceived,
    CheckpointReceived,
    ClientSession,
    Event,
    Notice,
    PresenceReceived,
    ProofReplyReceived,
    Send,
    SessionState,
    Verified,
)
from .errors import ConnectionFailedError, HandshakeError, RelayError, VerificationError
from .host import SpaceHost
from .relay_url import connect_failure, connect_options, none_reachable
from .supervision import as_failure

log = logging.getLogger(__name__)

# Relay refusals that reconnecting cannot cure: the space is failed with the RelayError.
PERMANENT_REFUSALS = frozenset(code for code in RefusalCode if code.permanent)


class Connection:
    """The space's link to the relay: one runner task, and one sender task per live socket."""

    def __init__(self, host: SpaceHost, tls: SSLContext | None = None) -> None:
        self._host = host
        self.tls = tls  # for wss://: whom to trust (None: the system's CAs, SSL_CERT_FILE)
        self.session: ClientSession | None = None
        self._send_queue: asyncio.Queue[bytes] | None = None  # one writer keeps submissions in order
        self._runner: asyncio.Task[None] | None = None
        self._index = 0  # which of the host's relay URLs is in use (or tried next)
        self._refreshing = False  # we closed the socket for a fresher view: the relay did nothing wrong

    @property
    def url(self) -> str:
        """The relay URL in use, or the one the next attempt tries."""
        urls = self._host.urls
        return urls[self._index % len(urls)]

    def start_at(self, url: str) -> None:
        """Try ``url`` (one of the host's) first: the relay an opening call already reached."""
        self._index = self._host.urls.index(url)

    def start(self) -> None:
        self._runner = self._host.tasks.spawn(self._run(), "the connection runner")

    def stop_applying(self) -> None:
        """The space failed: stop applying anything more from this relay (unless called from the runner)."""
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    def live_session(self) -> ClientSession | None:
        session, queue = self.session, self._send_queue
        if session is None or queue is None or session.state is not SessionState.LIVE:
            return None
        return session

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the one writer (``b""``: close the socket and reconnect for a fresher view)."""
        if self._send_queue is not None:
            self._send_queue.put_nowait(data)

    def send_live(self, build: Callable[[ClientSession], bytes]) -> bool:
        """Send ``build(session)`` if the session is live; False if it is not."""
        session = self.live_session()
        if session is None:
            return False
        self.send(build(session))
        return True

    async def _run(self) -> None:
        host = self._host
        delay = host.options.reconnect_min
        # While an opening call has nothing to show: why each relay could not be reached.
        unreachable: dict[str, ConnectionFailedError] = {}
        while not host.closed and host.error is None:
            url = self.url
            self._refreshing = False
            # While an opening call waits for the first sync of an empty store, its timeout governs
            # (unless there are other relays to try).
            opening = host.opening and len(host.urls) == 1
            try:
                async with ws_connect(url, compression=None, max_size=DEFAULT_MAX_MESSAGE,
                                      open_timeout=None if opening else host.options.open_timeout,
                                      ping_interval=20, ping_timeout=20, **connect_options(url, self.tls)) as ws:
                    delay = host.options.reconnect_min
                    unreachable.clear()
                    try:
                        await self._serve(ws)
                    except asyncio.CancelledError:
                        if host.closed:  # close(): a normal closure (1000), not the 1011 of an error exit
                            await ws.close()
                        raise
            except VerificationError as exc:
                host.fail(exc)
            except RelayError as exc:
                if exc.code in PERMANENT_REFUSALS or (exc.code == RefusalCode.DEVICE_IN_USE and host.opening):
                    host.fail(exc)  # device_in_use while opening: this key is live elsewhere, say so
                elif exc.code == RefusalCode.DEVICE_IN_USE:
                    log.warning("%s", exc)  # maybe our own connection, half-open after a drop: retry
                    host.on_device_in_use(exc)
                else:
                    log.info("relay at %s closed the connection: %s", url, exc)
            except HandshakeError as exc:
                host.fail(exc)
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException) as exc:
                log.info("connection to %s lost: %s", url, exc)
                if host.opening and host.genesis is None:
                    # Nothing to open from: fail once every relay was tried (one relay: at once).
                    unreachable[url] = connect_failure(url, exc)
                    if len(unreachable) == len(host.urls):
                        host.fail(none_reachable([unreachable[u] for u in host.urls]))
            except Exception as exc:  # anything else is a bug or a broken store: fail before going offline
                host.fail(as_failure("the connection runner", exc))
            finally:
                self._send_queue = None
                self.session = None
                host.on_offline()
            if host.closed or host.error is not None:
                return
            if len(host.urls) > 1 and not self._refreshing:
                self._index = (self._index + 1) % len(host.urls)  # fail over: the next relay, round robin
                log.info("failing over from %s to %s", url, self.url)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, host.options.reconnect_max)

    async def _serve(self, ws: ClientConnection) -> None:
        host = self._host
        session = ClientSession(host.identity, host.verifier, host.genesis, host.invite)
        self.session = session
        self._send_queue = queue = asyncio.Queue[bytes]()
        host.connection_started()
        sender = host.tasks.spawn(self._send_loop(ws, queue), "the connection's sender")
        try:
            await self._receive_loop(ws, session, queue)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_loop(self, ws: ClientConnection, queue: asyncio.Queue[bytes]) -> None:
        while True:
            data = await queue.get()
            if not data:
                self._refreshing = True  # reconnect to the same relay
                await ws.close()  # asked for a fresher view (freshness_limit): reconnect
                return
            try:
                await ws.send(data)
            except websockets.exceptions.ConnectionClosed:
                return  # the receive loop sees the close and reconnects
            if faults.ARMED and isinstance(decode_message(data), Submit):
                faults.reached("sent")

    async def _receive_loop(self, ws: ClientConnection, session: ClientSession, queue: asyncio.Queue[bytes]) -> None:
        host = self._host
        while True:
            try:
                received = [await ws.recv()]
                # What already waits behind it is taken too: the session verifies queued frames
                # as one batch, so a device that fell behind catches up cheaply.
                received += [await ws.recv() for _ in range(queued_messages(ws))]
            except websockets.exceptions.ConnectionClosedOK:
                return
            messages = [message for message in received if isinstance(message, bytes)]
            if len(messages) != len(received):
                raise HandshakeError("the relay sent a text frame; the protocol is binary")
            if host.error is not None:
                return
            for events in session.receive_all(messages, host.options.clock.now_ms()):
                self._dispatch(events, queue)
                if host.error is not None:
                    return

    def _dispatch(self, events: list[Event], queue: asyncio.Queue[bytes]) -> None:
        host = self._host
        for event in events:
            if isinstance(event, Send):
                queue.put_nowait(event.data)  # the handshake's reply: one writer, the send loop
            elif isinstance(event, Verified):
                host.on_verified(event.entries)
            elif isinstance(event, Anchored):
                host.on_anchored(event.seq)
            elif isinstance(event, BecameLive):
                host.on_live()
            elif isinstance(event, Acked):
                # The verified log, not the ack, completes an edit; presence tells peers about it.
                host.on_acked(event.head)
                if faults.ARMED:
                    faults.reached("acked")
            elif isinstance(event, PresenceReceived):
                host.on_presence(event.data)
            elif isinstance(event, Notice):
                host.on_notice(event)
            elif isinstance(event, BlobReplyReceived):
                host.on_blob_reply(event.reply)
            elif isinstance(event, CheckpointReceived):
                host.on_checkpoint(event.note, event.id)
            elif isinstance(event, ProofReplyReceived):
                host.on_proof_reply(event.reply)


def queued_messages(ws: ClientConnection) -> int:
    """How many whole messages ``ws`` has received that nobody asked for yet (0 if unknown).

    websockets' asyncio connection keeps received frames in ``recv_messages.frames`` (a queue
    with a deque ``queue``), which is not documented API: any other shape counts as nothing
    queued, and each message is then handled alone, as before batching. Only frames that end
    a message (``fin``) count, so ``recv`` returns each counted message without waiting.
    """
    try:
        frames = ws.recv_messages.frames.queue
        return sum(1 for frame in frames if frame.fin)
    except (AttributeError, TypeError):
        return 0
