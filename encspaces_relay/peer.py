"""One client connection as the rest of the relay sees it: where to write, and whether it still counts.

Rooms write to subscribers synchronously (websockets' ``broadcast`` pushes bytes into the
transport without waiting), so one slow reader never stalls the committer or the other
subscribers. The price is that nothing pushes back on a subscriber that stops reading, so
every synchronous write is followed by a look at its write buffer: past the bound it is
closed (1013, "too slow") and will catch up from the store when it reconnects. Every close is
bounded by ``close_timeout`` (``close_within``): websockets' close first waits for the peer to
read what is queued, which a peer that stopped reading never does.
"""

from __future__ import annotations

import asyncio
import logging
import time

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from encspaces.core.messages import Error

from .backlog import Backlog
from .config import RelayConfig
from .metrics import RelayMetrics
from .refusals import Refusal

log = logging.getLogger(__name__)

TOO_SLOW_REASON = "too slow"
_MAX_ERROR_MESSAGE = 2000  # clients accept error messages up to 2048 characters


class UnsentLedger:
    """The unsent bytes of all connections together, against ``max_buffered_total``.

    Each peer's count (``Peer.counted``) is the size of its write buffer after the relay's last
    write to it, noted by ``Peer.within_bound`` when it changed (usually it stays 0: the kernel
    took the frame at once, and the check is one comparison). Since then the kernel may have
    taken more, so the total is an upper bound; only when it passes the cap are all counts read
    again from their sockets (O(connections), rare), and if the true total is still over, the
    peers holding the most are closed "too slow" until it is under three quarters of the cap
    (so the next writes do not land on the cap again at once).
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self._counted: set[Peer] = set()  # the peers with a count above 0

    def note(self, peer: Peer, unsent: int) -> None:
        """``peer`` has ``unsent`` bytes waiting after a write (called only when its count changed)."""
        if not self.cap:
            return
        self._set(peer, unsent)
        if self.total > self.cap:
            self._shed()

    def forget(self, peer: Peer) -> None:
        """``peer`` is closing or gone: its bytes are freed within close_timeout."""
        self._set(peer, 0)

    def of(self, peer: Peer) -> int:
        return peer.counted if peer in self._counted else 0

    def _set(self, peer: Peer, unsent: int) -> None:
        self.total += unsent - peer.counted
        peer.counted = unsent
        if unsent:
            self._counted.add(peer)
        else:
            self._counted.discard(peer)

    def _shed(self) -> None:
        for peer in list(self._counted):  # the kernel may have taken bytes since each was noted
            self._set(peer, peer.buffered_bytes() if peer.is_open else 0)
        if self.total <= self.cap:
            return
        target = self.cap * 3 // 4
        for peer in sorted(self._counted, key=lambda p: p.counted, reverse=True):
            if self.total <= target:
                break
            log.warning("%s: %d bytes unsent while all connections have %d, over the relay's bound of %d: "
                        "closing it (too slow)", peer.name, peer.counted, self.total, self.cap)
            self.forget(peer)
            peer.close_later(CloseCode.TRY_AGAIN_LATER, TOO_SLOW_REASON)


class InFlight:
    """A connection's submissions queued and not yet answered: at most ``limit``.

    ``try_take`` serves a message handled as it is parsed (encspaces_relay/inline.py), which
    must not wait; ``take`` serves the session's task, which waits (and so stops reading the
    connection) while all places are taken. Only that one task ever waits.
    """

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._freed: asyncio.Future[None] | None = None

    def try_take(self) -> bool:
        if not self._free:
            return False
        self._free -= 1
        return True

    async def take(self) -> None:
        while not self.try_take():
            self._freed = asyncio.get_running_loop().create_future()
            await self._freed

    def release(self) -> None:
        self._free += 1
        freed, self._freed = self._freed, None
        if freed is not None and not freed.done():
            freed.set_result(None)


class PeerGoneError(Exception):
    """The peer is closing (too slow, refused, or gone): stop writing to it; its session just ends."""


class Peer:
    """A websocket, its admitted member (once admitted) and its in-flight submissions."""

    def __init__(self, ws: ServerConnection, number: int, config: RelayConfig,
                 metrics: RelayMetrics | None = None, backlog: Backlog | None = None,
                 unsent: UnsentLedger | None = None) -> None:
        self.ws = ws
        self._metrics = metrics
        self.name = f"conn#{number}"
        self.member: bytes | None = None
        # The invite this connection was let in with (a newcomer, not yet a member).
        self.invite: bytes | None = None
        # Set once the relay refused this peer: its queued submissions are dropped.
        self.failed = False
        # Bounds the submissions a peer has queued: past it the session stops reading.
        self.inflight = InFlight(config.max_inflight_submits)
        self.backlog = backlog
        self._presence_rate = config.presence_rate
        self._presence_burst = float(config.presence_burst)
        self._presence_tokens = float(config.presence_burst)
        self._presence_time = time.monotonic()
        self._max_buffered = config.max_buffered_bytes
        self.unsent = unsent  # the relay's count of all connections' unsent bytes
        self.counted = 0  # this peer's unsent bytes as that count holds them (UnsentLedger)
        self._close_timeout = config.close_timeout
        self._closer: asyncio.Task[None] | None = None
        # A message came from the peer since the keepalive's last round (RelayServer.ping_all).
        self.heard = False

    @property
    def is_open(self) -> bool:
        return self.ws.protocol.state is State.OPEN and self._closer is None

    def buffered_bytes(self) -> int:
        return self.ws.transport.get_write_buffer_size()

    def within_bound(self) -> bool:
        """False (and the peer is being closed) when its unsent bytes passed the bound."""
        if self._closer is not None:
            return False
        unsent = self.buffered_bytes()
        if unsent <= self._max_buffered:
            if unsent != self.counted and self.unsent is not None:
                self.unsent.note(self, unsent)  # may close this peer, or others, if all hold too much
            return self._closer is None
        log.warning("%s: %d bytes unsent, over the bound of %d: closing it (too slow)",
                    self.name, unsent, self._max_buffered)
        self.close_later(CloseCode.TRY_AGAIN_LATER, TOO_SLOW_REASON)
        return False

    def answered(self, weight: int) -> None:
        """A submission of this peer was answered (or dropped): its in-flight place and its
        ``weight`` in the relay's backlog are free."""
        self.inflight.release()
        if self.backlog is not None:
            self.backlog.give(weight)

    def presence_allowed(self) -> bool:
        """Token bucket: ``presence_rate`` a second, bursts up to ``presence_burst``."""
        now = time.monotonic()
        self._presence_tokens = min(
            self._presence_burst, self._presence_tokens + (now - self._presence_time) * self._presence_rate
        )
        self._presence_time = now
        if self._presence_tokens < 1.0:
            return False
        self._presence_tokens -= 1.0
        return True

    def write_now(self, *messages: bytes) -> None:
        """Queue messages without waiting for the socket; PeerGoneError if closing or past the bound.

        Several messages go to the socket in one write (a submitter's ack and the frame with its
        own entries, one commit apart from nothing): one system call instead of two. The frames
        are built by websockets' protocol as ``broadcast`` builds them, in order.
        """
        if not self.is_open:
            raise PeerGoneError(f"{self.name} is closing")
        ws = self.ws
        if len(messages) == 1 or ws.send_in_progress is not None:
            for data in messages:
                broadcast([ws], data)  # a fragmented send in progress: broadcast skips and logs, as before
        else:
            for data in messages:
                ws.protocol.send_binary(data)
            # Frames only (the connection is open, so no end-of-stream marker among them).
            ws.transport.write(b"".join(ws.protocol.data_to_send()))
        if not self.within_bound():
            raise PeerGoneError(f"{self.name} does not read fast enough")

    def refuse_now(self, refusal: Refusal) -> None:
        """From another task (the committer): send the Error frame and close, without waiting."""
        if self.failed:
            return
        self.failed = True
        if self.is_open:
            self.count_refusal(refusal.code)
            broadcast([self.ws], _error_frame(refusal))
        self.close_later(refusal.close_code, refusal.code)

    async def refuse(self, refusal: Refusal) -> None:
        """From the peer's own session: send the Error frame, then close and wait for the close."""
        already = self.failed
        self.failed = True
        try:
            async with asyncio.timeout(self._close_timeout):
                if not already and self.is_open:
                    self.count_refusal(refusal.code)
                    await self.ws.send(_error_frame(refusal))
                if self._closer is None:
                    await self.ws.close(refusal.close_code, refusal.code)
        except ConnectionClosed:
            return
        except TimeoutError:
            drop(self.ws, f"{self.name} did not take its refusal within {self._close_timeout:g} s", self._metrics,
                 "close_timeout")

    def count_refusal(self, code: str) -> None:
        """An Error frame with ``code`` is being sent to this peer (the refusals metric)."""
        if self._metrics is not None:
            self._metrics.refused(code)

    def close_later(self, code: int, reason: str) -> None:
        if self.unsent is not None:
            self.unsent.forget(self)
        if self._closer is None:
            self._closer = asyncio.create_task(
                close_within(self.ws, code, reason, self._close_timeout, self._metrics), name=f"close {self.name}")

    async def finish(self) -> None:
        """Wait for a close started by ``close_later``, so no task outlives the connection."""
        if self._closer is not None:
            await self._closer


async def close_within(ws: ServerConnection, code: int, reason: str, timeout: float,
                       metrics: RelayMetrics | None = None) -> None:
    """``ws.close(code, reason)``, dropping the TCP connection if it takes over ``timeout`` seconds.

    websockets' own close_timeout starts only once the close frame is written out, after the
    write buffer drained: a peer that stopped reading would keep the close (its session, its
    unsent bytes, its place in the connection count) waiting forever. The close frame is
    queued first, so a peer that reads again in time still sees the code and reason.
    """
    try:
        async with asyncio.timeout(timeout):
            await ws.close(code, reason)
    except TimeoutError:
        drop(ws, f"the close ({code} {reason}) was not taken within {timeout:g} s", metrics, "close_timeout")


def remote_host(ws: ServerConnection) -> str:
    """The remote address the per-address limits count (host only; "" if the socket has none)."""
    try:
        return str(ws.remote_address[0])
    except (TypeError, IndexError):
        return ""


def drop(ws: ServerConnection, why: str, metrics: RelayMetrics | None, reason: str) -> None:
    """A peer that does not read or answer would not read a close frame either: drop the TCP
    connection now (its session ends as on a lost connection, its unsent bytes are freed), and
    count it under ``reason`` in the dropped-connections metric."""
    log.info("a connection from %s: %s: dropping it", remote_host(ws), why)
    if metrics is not None:
        metrics.dropped.labels(reason).inc()
    ws.transport.abort()


def _error_frame(refusal: Refusal) -> bytes:
    return Error(refusal.code, refusal.message[:_MAX_ERROR_MESSAGE], fatal=True).encode()
