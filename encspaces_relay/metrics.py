"""Health and Prometheus metrics on a port of their own (``--metrics-port``, off by default).

``GET /healthz`` answers 200 and a small JSON object when the store answers a query, 503
when it does not (or the relay is stopping). ``GET /metrics`` is the Prometheus text format.

The hot path only increments: one counter add and one histogram observation per group commit,
one counter per refusal. Everything that is a current level (connections, loaded spaces,
queued submissions, unsent bytes, blob bytes) is read when the endpoint is scraped.
Each RelayServer has its own registry, so several relays in one process (the tests) do not
collide and nothing is registered globally.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .server import RelayServer

log = logging.getLogger(__name__)

_HEALTH_TIMEOUT = 5.0
_READ_TIMEOUT = 10.0
_MAX_REQUEST = 8192


class RelayMetrics:
    """The counters the relay increments; the levels are collected at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.entries = Counter("encspaces_relay_entries_sequenced", "Entries sequenced and stored (all spaces)",
                               registry=self.registry)
        self.commits = Histogram("encspaces_relay_commit_seconds",
                                 "Time to store one group commit (one transaction, one fsync)",
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                 registry=self.registry)
        self.refusals = Counter("encspaces_relay_refusals", "Error frames sent, by code", ["code"],
                                registry=self.registry)
        self.lost_commits = Counter("encspaces_relay_lost_commits",
                                    "Commits another relay of the cluster beat to a space's next seq (reloaded, "
                                    "sequenced again)", registry=self.registry)
        self.checkpoints = Counter("encspaces_relay_checkpoints_signed",
                                   "Checkpoints of a space's Merkle tree the relay signed (all spaces)",
                                   registry=self.registry)
        self.witness_submissions = Counter(
            "encspaces_relay_witness_submissions",
            "Checkpoints submitted to witnesses, by result (cosigned, refused, unreachable)", ["result"],
            registry=self.registry)
        self.backlog_waits = Histogram(
            "encspaces_relay_backlog_wait_seconds",
            "Time a connection waited before its submission was read on, while the relay had its limit of "
            "entries verified and not yet committed (max_pending_entries)",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10), registry=self.registry)
        self.proofs = Counter("encspaces_relay_proofs_served", "Proofs and checkpoints sent to clients, by kind",
                              ["kind"], registry=self.registry)
        self.dropped = Counter(
            "encspaces_relay_dropped_connections",
            "Sockets closed without a completed close, by reason: opening_limit (503 at accept), not_reading "
            "(took none of its queued bytes), no_pong, close_timeout (did not take its close frame)", ["reason"],
            registry=self.registry)

    def refused(self, code: str) -> None:
        self.refusals.labels(code).inc()

    def watch(self, levels: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        """Report ``(name, help, value)`` gauges computed when scraped."""
        self.registry.register(_Levels(levels))


class _Levels(Collector):
    def __init__(self, levels: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        self._levels = levels

    def collect(self) -> Iterator[Metric]:
        for name, text, value in self._levels():
            yield GaugeMetricFamily(name, text, value=value)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the names are fixed, but their values must not be computed at registration


def server_levels(server: RelayServer) -> Iterable[tuple[str, str, float]]:
    rooms = list(server.rooms.values())
    subscribers = [peer for room in rooms for peer in room.subscribers.values()]
    return [
        ("encspaces_relay_connections", "Open websocket connections", server.connections.total),
        ("encspaces_relay_opening_connections", "Sockets accepted and not yet through the websocket upgrade",
         server.opening.total),
        ("encspaces_relay_spaces_loaded", "Spaces loaded in memory", len(rooms)),
        ("encspaces_relay_subscribers", "Connections receiving a space's live stream", len(subscribers)),
        ("encspaces_relay_commit_queue_depth", "Submissions waiting for their space's committer",
         sum(room.queued() for room in rooms)),
        ("encspaces_relay_backlog_entries", "Entries verified and not yet answered, all spaces (max_pending_entries)",
         server.backlog.pending),
        ("encspaces_relay_backlog_waiting", "Connections waiting for the backlog to shrink before reading on",
         server.backlog.waiting),
        ("encspaces_relay_fanout_buffered_bytes", "Bytes written to subscribers and not yet sent (fan-out backlog)",
         sum(peer.buffered_bytes() for peer in subscribers if peer.is_open)),
        ("encspaces_relay_blob_bytes", "Bytes of encrypted file chunks stored (all spaces), once counted",
         server.blobs.known_total()),
        ("encspaces_relay_heads_signed", "Heads signed for commits since the relay started (all spaces)",
         server.head_signer.heads),
        ("encspaces_relay_head_signatures", "Signatures made for those heads (one per batch of heads)",
         server.head_signer.signatures),
    ]


@dataclass
class _Response:
    status: int
    reason: str
    content_type: str
    body: bytes


class MetricsServer:
    """A minimal HTTP/1.1 server for the two endpoints (one request per connection)."""

    def __init__(self, relay: RelayServer, host: str, port: int) -> None:
        self._relay = relay
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("health and metrics on http://%s:%d/healthz and /metrics", self._host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            response = await self._answer(head)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        try:
            writer.write(f"HTTP/1.1 {response.status} {response.reason}\r\nContent-Type: {response.content_type}\r\n"
                         f"Content-Length: {len(response.body)}\r\nConnection: close\r\n\r\n".encode()
                         + response.body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, head: bytes) -> _Response:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or len(head) > _MAX_REQUEST:
            return _Response(400, "Bad Request", "text/plain", b"bad request\n")
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if method != "GET":
            return _Response(405, "Method Not Allowed", "text/plain", b"only GET\n")
        if path == "/healthz":
            ok, detail = await self._relay.health()
            body = json.dumps({"status": "ok" if ok else "unavailable", **detail}).encode() + b"\n"
            return _Response(200, "OK", "application/json", body) if ok else \
                _Response(503, "Service Unavailable", "application/json", body)
        if path == "/metrics":
            await self._relay.blobs.total_usage()  # counted once, then kept up to date by the writes
            return _Response(200, "OK", CONTENT_TYPE_LATEST, generate_latest(self._relay.metrics.registry))
        return _Response(404, "Not Found", "text/plain", b"not found: try /healthz or /metrics\n")


async def check_health(relay: RelayServer) -> tuple[bool, dict[str, object]]:
    """Whether the relay can serve: listening, and its store answers a query in time."""
    if relay.stopping or relay.port is None:
        return False, {"reason": "the relay is not running"}
    try:
        async with asyncio.timeout(_HEALTH_TIMEOUT):
            spaces = await relay.store.count_spaces()
    except Exception as exc:
        return False, {"reason": f"the store does not answer: {type(exc).__name__}: {exc}"}
    return True, {"spaces": spaces, "spaces_loaded": len(relay.rooms), "connections": relay.connections.total}
