"""Every tunable of the relay in one frozen value, so tests and the CLI configure it the same way.

The defaults are the production values; tests shrink the limits (frame size, entries per
frame, handshake timeout) to reach the interesting paths with small logs and no waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from encspaces.core.encoding import DEFAULT_MAX_MESSAGE
from encspaces.core.messages import MAX_ENTRIES_PER_MESSAGE

DEFAULT_PORT = 8765
LOOPBACK = frozenset({"127.0.0.1", "::1"})


class CreatePolicy(StrEnum):
    """Who may create a space on this relay."""

    OPEN = "open"  # anyone (the default)
    LISTED = "listed"  # only the members listed in ``create_allowlist``
    CLOSED = "closed"  # nobody: the relay only serves the spaces it already hosts


@dataclass(frozen=True)
class RelayConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    # Largest websocket message in either direction. Clients use the same default, so every
    # frame the relay sends, and every entry it accepts, must fit in it.
    max_frame: int = DEFAULT_MAX_MESSAGE
    # Entries per Entries frame: bounds the work a client does per frame (one Ed25519 verify
    # each, ~80 µs) and so the latency of everything queued behind a catch-up frame.
    max_entries_per_frame: int = 1024
    # Entries validated and written per group commit; more wait for the next batch.
    max_entries_per_commit: int = MAX_ENTRIES_PER_MESSAGE
    # A client that does not send a valid hello within this many seconds is dropped.
    handshake_timeout: float = 10.0
    # How far the clock in a hello may be from ours: bounds replay of a captured hello.
    max_clock_skew_ms: int = 5 * 60 * 1000
    # A subscriber whose unsent bytes exceed this is too slow for the live stream: it is
    # closed and will catch up from the store when it reconnects.
    max_buffered_bytes: int = 8 << 20
    # ... and the unsent bytes of all connections together (0: no limit). max_buffered_bytes
    # alone let max_connections slow readers hold ~35 GiB; past this the connections with the
    # most unsent bytes are closed "too slow" until the total is back under three quarters of it.
    max_buffered_total: int = 1 << 30
    # Submissions a connection may have queued before the relay stops reading from it.
    max_inflight_submits: int = 64
    # Entries verified and queued for commit but not yet answered, in all spaces together: past
    # it, connections wait in line before their next submission is read (encspaces_relay/backlog.py),
    # so under overload the relay reads no more than it commits instead of stalling its commits.
    max_pending_entries: int = 4096
    # Presence is forwarded, never stored; each connection may send this many per second
    # (with bursts up to presence_burst). Excess presence is dropped, not refused.
    presence_rate: float = 10.0
    presence_burst: int = 20
    # Presence is skipped for a subscriber with more unsent bytes than this: it is the first
    # thing to shed, and must never be what makes a subscriber "too slow".
    presence_skip_buffered: int = 256 << 10
    # Encrypted file chunks (encspaces_relay/blobs.py): the largest blob accepted (clients send chunks of
    # 256 KiB plus 40 bytes; a blob must also fit in one message of max_frame), and the bytes of
    # blobs one space may store in all.
    max_blob_size: int = 512 << 10
    blob_quota: int = 1 << 30
    # ... and the bytes of blobs all spaces together may store (0: no blob is accepted).
    total_blob_quota: int = 100 << 30

    # --- limits on anonymous clients (docs/PROTOCOL.md, "Relay limits") ---
    # The largest message before admission (hello verified, membership or invite checked): an
    # honest hello is under 1 KiB. Until then websockets itself stops reading at twice this
    # (as it does at twice max_frame afterwards), so a stranger holds at most that much of a
    # partial frame; max_frame applies from admission on.
    max_hello_frame: int = 16 << 10
    # Open connections, in all and per remote address (0: no limit). Past either, a new
    # connection gets one Error frame (code "busy") and is closed. Raise the open-files limit
    # (ulimit -n) above max_connections.
    max_connections: int = 4000
    max_connections_per_address: int = 100
    # TCP connections that have not finished the websocket opening handshake (with wss, the TLS
    # handshake and the HTTP upgrade: counted from the accept, before TLS), in
    # all and per remote address (0: no limit). They are not yet among the connections above,
    # so without their own cap a peer opening sockets and sending nothing held a file descriptor
    # each for open_timeout. Past either, the socket gets a bare HTTP 503 (with wss: nothing) and
    # is closed at once.
    # Keep ulimit -n above max_connections + max_opening_connections.
    max_opening_connections: int = 1000
    max_opening_per_address: int = 20
    # Seconds a TCP connection may take to finish the opening handshake (TLS and the HTTP
    # upgrade); then it is dropped. The hello that follows has handshake_timeout of its own.
    open_timeout: float = 10.0
    # Seconds the closing handshake may take (a close frame and the peer's answer) before the
    # TCP connection is dropped: a peer that stops reading never answers, and must not keep its
    # unsent bytes, its connection slot or the relay's shutdown waiting.
    close_timeout: float = 10.0
    # Spaces created per remote address in any window of create_window seconds (0: no limit).
    max_creates_per_address: int = 20
    create_window: float = 3600.0
    # Addresses the per-address limits do not apply to: by default the loopback, which is where
    # every client comes from behind a reverse proxy on the same host (limit there, per client).
    exempt_addresses: frozenset[str] = LOOPBACK
    # Who may create spaces; with LISTED, create_allowlist names a file of member ids or public
    # identities, one a line ('#' starts a comment), read when the relay starts.
    create_policy: CreatePolicy = CreatePolicy.OPEN
    create_allowlist: Path | None = None
    # A space with no connection for this many seconds is unloaded: its memory is released, and
    # the next connection loads it from the store again (0: never unload).
    idle_room_seconds: float = 300.0
    # Where the log is: None for the SQLite file in data_dir (one relay process), or a
    # postgresql:// URL that several relays may share (encspaces_relay/storage.py, docs/cluster.md).
    store: str | None = None
    # Cross-relay fan-out: a nats:// URL (encspaces_relay/bus.py, docs/cluster.md), only with a shared store.
    bus: str | None = None

    # Every connection is pinged this often, and closed if its pong does not come within as long
    # again (websockets' defaults; one loop for all connections: RelayServer._keepalive). One that
    # sent a message since the last round and has nothing unsent is alive: it skips that round.
    ping_interval: float = 20.0

    # --- the witnessed log (docs/PROTOCOL.md section 18) ---
    # A space's checkpoint is signed (and sent to its witnesses) at most this often while its
    # log grows, and once more when it goes idle; also the first backoff for a witness that is down.
    checkpoint_interval: float = 1.0
    # How long one add-checkpoint request to a witness may take.
    witness_timeout: float = 10.0
    # Witness URLs are written by spaces' admins: by default the relay contacts public addresses
    # only, never its own network (encspaces_relay/witness_client.py). True for a local setup.
    allow_private_witnesses: bool = False

    # --- operations (docs/operations.md) ---
    # Health (/healthz) and Prometheus metrics (/metrics) over plain HTTP on a port of their own;
    # None: not served. Bound to the loopback by default: metrics are for the operator.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Serve wss:// with this certificate chain and private key (PEM files); both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def hello_limit(self) -> int:
        """The largest message before admission: max_hello_frame, or max_frame if smaller."""
        return min(self.max_hello_frame, self.max_frame)

    def __post_init__(self) -> None:
        if self.max_frame < 4096:
            raise ValueError(f"max_frame of {self.max_frame} bytes is too small to carry an entry")
        if not 1 <= self.max_entries_per_frame <= MAX_ENTRIES_PER_MESSAGE:
            raise ValueError(f"max_entries_per_frame must be in [1, {MAX_ENTRIES_PER_MESSAGE}]")
        if min(self.max_entries_per_commit, self.max_inflight_submits, self.max_pending_entries) < 1:
            raise ValueError("commit, in-flight and pending-entries limits must be at least 1")
        if self.max_blob_size < 1 or self.blob_quota < 0 or self.total_blob_quota < 0:
            raise ValueError("max_blob_size must be at least 1, blob_quota and total_blob_quota at least 0")
        if self.max_hello_frame < 1024:
            raise ValueError(f"max_hello_frame of {self.max_hello_frame} bytes is too small to carry a hello")
        if min(self.max_connections, self.max_connections_per_address, self.max_creates_per_address,
               self.max_opening_connections, self.max_opening_per_address) < 0:
            raise ValueError("connection and creation limits must be at least 0 (0: no limit)")
        if min(self.open_timeout, self.close_timeout, self.handshake_timeout) <= 0:
            raise ValueError("open_timeout, close_timeout and handshake_timeout must be positive")
        if self.max_buffered_bytes < 1 or self.max_buffered_total < 0:
            raise ValueError("max_buffered_bytes must be at least 1, max_buffered_total at least 0")
        if self.ping_interval <= 0:
            raise ValueError("ping_interval must be positive")
        if self.checkpoint_interval <= 0 or self.witness_timeout <= 0:
            raise ValueError("checkpoint_interval and witness_timeout must be positive")
        if self.create_window <= 0 or self.idle_room_seconds < 0:
            raise ValueError("create_window must be positive and idle_room_seconds at least 0")
        if (self.create_policy is CreatePolicy.LISTED) != (self.create_allowlist is not None):
            raise ValueError("create_allowlist is required with the 'listed' create policy, and only with it")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside [0, 65535]")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics port {self.metrics_port} is outside [0, 65535]")
        if self.bus is not None:
            if not self.bus.startswith(("nats://", "tls://")):
                raise ValueError(f"--bus takes a nats:// URL, not {self.bus!r}")
            if self.store is None or not self.store.startswith(("postgresql://", "postgres://")):
                raise ValueError("--bus fans out entries between relays that share a store: it needs "
                                 "--store postgresql://... (the SQLite store serves one relay alone)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate (--tls-cert) and its private key (--tls-key)")

    @property
    def scheme(self) -> str:
        """What clients put in front of the address: wss with TLS, else ws."""
        return "ws" if self.tls_cert is None else "wss"
