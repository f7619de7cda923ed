"""``encspaces-relay``: run the relay until SIGTERM or SIGINT, then shut down cleanly.

The first lines on stdout are the relay's public key (clients pin it in every genesis) and
the URL it listens on, flushed at once so a parent process can read them; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import encspaces
from encspaces.core.encoding import DEFAULT_MAX_MESSAGE
from encspaces.errors import DataDirLockedError, EncspacesError

from .backup import backup
from .collector import tune_collector
from .compact import compact, compact_postgres
from .config import DEFAULT_PORT, CreatePolicy, RelayConfig
from .keys import load_or_create_signing_key, public_key_text
from .logs import LOG_FORMATS, setup_logging
from .server import RelayServer
from .settings import resolve, settable_actions
from .storage import is_postgres
from .store import DB_FILE

COMMANDS_HELP = """commands (each has its own --help):
  encspaces-relay [FLAGS]            run the relay (this help)
  encspaces-relay compact [FLAGS]    drop encrypted bodies that a snapshot covers
  encspaces-relay backup [FLAGS]     copy the data dir consistently while the relay runs
  encspaces-relay key [FLAGS]        print the relay's public key (creating the key if there is none)

Every flag can also be set with the environment variable ENCSPACES_RELAY_<FLAG> (--max-frame:
ENCSPACES_RELAY_MAX_FRAME) or as a key of the TOML file given by --config (max-frame = 1048576).
A flag wins over the environment, which wins over the file, which wins over the default.
"""

# Exit codes besides 0 (stopped cleanly) and 2 (bad flags, from argparse).
EXIT_ERROR = 1
EXIT_LOCKED = 3  # another relay runs on the data dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encspaces-relay", description="The encspaces relay daemon.",
                                     epilog=COMMANDS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="a TOML file of flag values, keys named like the flags (max-frame = 1048576); "
                             "also ENCSPACES_RELAY_CONFIG")
    parser.add_argument("--version", action="version", version=f"encspaces-relay {encspaces.__version__}")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on, 0 for any free port (default {DEFAULT_PORT})")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the key, the log and the file chunks are kept (required)")
    parser.add_argument("--store", default=None, metavar="postgresql://...",
                        help="keep the log in this PostgreSQL database, which several relays may share "
                             "(docs/cluster.md; default: the SQLite file in --data-dir)")
    parser.add_argument("--bus", default=None, metavar="nats://...",
                        help="with --store postgresql://...: tell the other relays of the cluster through this "
                             "NATS server what this one sequenced, so their members see it at once "
                             "(docs/cluster.md; default: none)")
    parser.add_argument("--max-frame", type=int, default=DEFAULT_MAX_MESSAGE,
                        help=f"largest websocket message in bytes (default {DEFAULT_MAX_MESSAGE})")
    parser.add_argument("--max-blob-size", type=int, default=RelayConfig.max_blob_size,
                        help=f"largest encrypted file chunk in bytes (default {RelayConfig.max_blob_size})")
    parser.add_argument("--blob-quota", type=int, default=RelayConfig.blob_quota,
                        help=f"bytes of file chunks one space may store (default {RelayConfig.blob_quota})")
    parser.add_argument("--total-blob-quota", type=int, default=RelayConfig.total_blob_quota,
                        help="bytes of file chunks all spaces together may store "
                             f"(default {RelayConfig.total_blob_quota})")
    parser.add_argument("--max-pending-entries", type=int, default=RelayConfig.max_pending_entries,
                        help="entries verified and not yet committed, all spaces together, before connections wait "
                             "to be read on (backpressure under overload)")
    limits = parser.add_argument_group("limits on anonymous clients (for the counts, 0 is no limit)")
    limits.add_argument("--max-hello-frame", type=int, default=RelayConfig.max_hello_frame,
                        help="largest message in bytes before a client is admitted; --max-frame applies "
                             f"after (default {RelayConfig.max_hello_frame})")
    limits.add_argument("--max-connections", type=int, default=RelayConfig.max_connections,
                        help=f"open connections in all (default {RelayConfig.max_connections}); "
                             "more are refused with the error 'busy'")
    limits.add_argument("--max-connections-per-address", type=int, default=RelayConfig.max_connections_per_address,
                        help="open connections from one remote address "
                             f"(default {RelayConfig.max_connections_per_address})")
    limits.add_argument("--max-opening-connections", type=int, default=RelayConfig.max_opening_connections,
                        help="sockets not yet through the websocket upgrade, in all "
                             f"(default {RelayConfig.max_opening_connections}); more get HTTP 503 and are closed")
    limits.add_argument("--max-opening-per-address", type=int, default=RelayConfig.max_opening_per_address,
                        help="sockets not yet through the websocket upgrade from one remote address "
                             f"(default {RelayConfig.max_opening_per_address})")
    limits.add_argument("--open-timeout", type=float, default=RelayConfig.open_timeout,
                        help="seconds a socket may take to finish the websocket upgrade (and TLS) "
                             f"(default {RelayConfig.open_timeout:g})")
    limits.add_argument("--handshake-timeout", type=float, default=RelayConfig.handshake_timeout,
                        help="seconds a connection may take to send its hello after the challenge: 'timeout' "
                             f"(default {RelayConfig.handshake_timeout:g})")
    limits.add_argument("--max-buffered-bytes", type=int, default=RelayConfig.max_buffered_bytes,
                        help="unsent bytes a connection may have queued before it is closed with 1013 'too slow' "
                             f"(default {RelayConfig.max_buffered_bytes})")
    limits.add_argument("--max-buffered-total", type=int, default=RelayConfig.max_buffered_total,
                        help="unsent bytes of all connections together (0: no limit); past it the connections "
                             f"holding the most are closed 'too slow' (default {RelayConfig.max_buffered_total})")
    limits.add_argument("--ping-interval", type=float, default=RelayConfig.ping_interval,
                        help="seconds between keepalive rounds; a connection not heard from since the last "
                             "round (or with bytes unsent) is pinged, and dropped if it takes no bytes or sends "
                             f"no pong for as long again (default {RelayConfig.ping_interval:g})")
    limits.add_argument("--close-timeout", type=float, default=RelayConfig.close_timeout,
                        help="seconds a closing connection may take to read its close frame before it is dropped "
                             f"(default {RelayConfig.close_timeout:g})")
    limits.add_argument("--max-creates-per-address", type=int, default=RelayConfig.max_creates_per_address,
                        help="spaces one remote address may create per --create-window "
                             f"(default {RelayConfig.max_creates_per_address}); more are refused 'rate_limited'")
    limits.add_argument("--create-window", type=float, default=RelayConfig.create_window,
                        help="the window of --max-creates-per-address, in seconds "
                             f"(default {RelayConfig.create_window:g})")
    limits.add_argument("--exempt-addresses", default=",".join(sorted(RelayConfig.exempt_addresses)),
                        help="comma-separated remote addresses the per-address limits skip, '' for none "
                             "(default: the loopback, where a reverse proxy on this host connects from)")
    limits.add_argument("--create-policy", choices=[p.value for p in CreatePolicy], default=CreatePolicy.OPEN.value,
                        help="who may create spaces: anyone (open, the default), the members listed in "
                             "--create-allowlist (listed), or nobody (closed); others are refused 'create_forbidden'")
    limits.add_argument("--create-allowlist", type=Path, default=None,
                        help="with --create-policy listed: a file of member ids or public identities, one a line")
    limits.add_argument("--idle-room-seconds", type=float, default=RelayConfig.idle_room_seconds,
                        help="unload a space from memory after this many seconds without a connection "
                             f"(default {RelayConfig.idle_room_seconds:g})")
    witnessed = parser.add_argument_group("the witnessed log")
    witnessed.add_argument("--checkpoint-interval", type=float, default=RelayConfig.checkpoint_interval,
                           help="sign a space's checkpoint (and send it to its witnesses) at most this often, "
                                f"in seconds, while its log grows (default {RelayConfig.checkpoint_interval:g})")
    witnessed.add_argument("--witness-timeout", type=float, default=RelayConfig.witness_timeout,
                           help="seconds one request to a witness may take "
                                f"(default {RelayConfig.witness_timeout:g})")
    witnessed.add_argument("--allow-private-witnesses", action="store_true",
                           help="also submit checkpoints to witnesses at private, loopback or link-local addresses "
                                "(default: public addresses only, since any space's admin chooses the URLs)")
    ops = parser.add_argument_group("operations")
    ops.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="the least severe log lines written to stderr (default INFO)")
    ops.add_argument("--log-format", default="text", choices=list(LOG_FORMATS),
                     help="text lines, or one JSON object per line with time, level, logger, message and "
                          "fields such as space and peer (default text)")
    ops.add_argument("--metrics-port", type=int, default=None,
                     help="serve GET /healthz and GET /metrics (Prometheus) over HTTP on this port "
                          "(default: not served; 0 for any free port)")
    ops.add_argument("--metrics-host", default=RelayConfig.metrics_host,
                     help=f"address of the metrics port (default {RelayConfig.metrics_host})")
    ops.add_argument("--tls-cert", type=Path, default=None,
                     help="serve wss:// with this PEM certificate chain (with --tls-key; default: plain ws://)")
    ops.add_argument("--tls-key", type=Path, default=None, help="the PEM private key of --tls-cert")
    return parser


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> argparse.Namespace:
    """The daemon's flags, with defaults from the environment and the --config file."""
    argv = sys.argv[1:] if argv is None else argv
    return resolve(build_parser(), argv, environ=environ, required=("data-dir",))


def config_of(args: argparse.Namespace) -> RelayConfig:
    """The RelayConfig the parsed flags describe (ValueError names a bad combination)."""
    return RelayConfig(
        data_dir=args.data_dir, host=args.host, port=args.port, max_frame=args.max_frame,
        max_blob_size=args.max_blob_size, blob_quota=args.blob_quota, total_blob_quota=args.total_blob_quota,
        max_pending_entries=args.max_pending_entries,
        max_hello_frame=args.max_hello_frame, max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        max_opening_connections=args.max_opening_connections, max_opening_per_address=args.max_opening_per_address,
        open_timeout=args.open_timeout, handshake_timeout=args.handshake_timeout,
        max_buffered_bytes=args.max_buffered_bytes, max_buffered_total=args.max_buffered_total,
        ping_interval=args.ping_interval, close_timeout=args.close_timeout,
        max_creates_per_address=args.max_creates_per_address, create_window=args.create_window,
        exempt_addresses=frozenset(a.strip() for a in args.exempt_addresses.split(",") if a.strip()),
        create_policy=CreatePolicy(args.create_policy), create_allowlist=args.create_allowlist,
        idle_room_seconds=args.idle_room_seconds, metrics_port=args.metrics_port, metrics_host=args.metrics_host,
        tls_cert=args.tls_cert, tls_key=args.tls_key,
        store=args.store, bus=args.bus,
        checkpoint_interval=args.checkpoint_interval, witness_timeout=args.witness_timeout,
        allow_private_witnesses=args.allow_private_witnesses,
    )


def url_of(host: str, port: int, scheme: str = "ws") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def serve(config: RelayConfig) -> None:
    server = RelayServer(config)
    port = await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"relay public key: {public_key_text(server.signing_key)}", flush=True)
    print(f"listening on {url_of(config.host, port, config.scheme)}", flush=True)
    if server.metrics_port is not None:
        print(f"metrics on http://{config.metrics_host}:{server.metrics_port}/metrics", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def _daemon_keys() -> set[str]:
    return set(settable_actions(build_parser()))


def compact_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="encspaces-relay compact",
                                     description="Drop encrypted bodies the newest agreed snapshot of a space covers.")
    parser.add_argument("--version", action="version", version=f"encspaces-relay {encspaces.__version__}")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="the relay's TOML config file (for data-dir and store)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the relay's data dir, whose SQLite file is compacted (required without --store)")
    parser.add_argument("--store", default=None, metavar="postgresql://...",
                        help="compact this PostgreSQL database instead, the one the cluster's relays share; "
                             "safe while they run (docs/cluster.md)")
    parser.add_argument("--keep-seconds", type=float, default=7 * 24 * 3600,
                        help="keep bodies younger than this many seconds (retention; default 7 days)")
    try:
        args = resolve(parser, argv, also_known=_daemon_keys())
    except ValueError as exc:
        print(f"encspaces-relay compact: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if is_postgres(args.store):
        try:
            report = asyncio.run(compact_postgres(args.store, args.keep_seconds))
        except ModuleNotFoundError as exc:
            print(f"encspaces-relay compact: {exc.name} is missing; install with: pip install 'encspaces[postgres]'",
                  file=sys.stderr)
            return EXIT_ERROR
        except EncspacesError as exc:
            print(f"encspaces-relay compact: {exc}", file=sys.stderr)
            return EXIT_ERROR
    else:
        if args.data_dir is None:
            parser.error("--data-dir is required (or ENCSPACES_RELAY_DATA_DIR, or 'data-dir' in the --config file), "
                         "or --store postgresql://...")
        if args.store is not None and Path(args.store) != args.data_dir:
            print(f"encspaces-relay compact: --store takes a postgresql:// URL, not {args.store!r}", file=sys.stderr)
            return EXIT_ERROR
        if not (args.data_dir / DB_FILE).exists():
            print(f"encspaces-relay compact: no relay database in {args.data_dir}", file=sys.stderr)
            return 1
        report = compact(args.data_dir, args.keep_seconds)
    for line in report:
        where = f"newest agreed snapshot at seq {line.snapshot_seq}" if line.snapshot_seq else "no agreed snapshot yet"
        print(f"space {line.space}: {where}; stripped {line.stripped} bodies, {line.bytes_freed} bytes")
    return 0


def backup_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="encspaces-relay backup",
        description="Copy a relay's data dir consistently, also while the relay runs: the database (SQLite's "
                    "online backup), the file chunks, and the relay's private key. Keep the copy secret.")
    parser.add_argument("--config", type=Path, metavar="PATH", help="the relay's TOML config file (for data-dir)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the relay's data dir (required)")
    parser.add_argument("--out", type=Path, default=None, help="a new directory to write the backup to (required)")
    parser.add_argument("--version", action="version", version=f"encspaces-relay {encspaces.__version__}")
    try:
        args = resolve(parser, argv, also_known=_daemon_keys(), required=("data-dir", "out"))
        result = backup(args.data_dir, args.out)
    except (ValueError, OSError, EncspacesError) as exc:
        print(f"encspaces-relay backup: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"backed up {result.spaces} spaces ({result.entries} entries) and {result.blobs} file chunks "
          f"({result.blob_bytes} bytes) to {args.out}")
    return 0


def key_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="encspaces-relay key",
        description="Print the public key of the relay key in --data-dir (relay.key), creating the key if there "
                    "is none. Every relay of a cluster signs with one key: create it once, copy relay.key to "
                    "every node (docs/cluster.md).")
    parser.add_argument("--config", type=Path, metavar="PATH", help="the relay's TOML config file (for data-dir)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the relay's data dir (required)")
    parser.add_argument("--version", action="version", version=f"encspaces-relay {encspaces.__version__}")
    try:
        args = resolve(parser, argv, also_known=_daemon_keys(), required=("data-dir",))
        key = load_or_create_signing_key(args.data_dir)
    except (ValueError, OSError, EncspacesError) as exc:
        print(f"encspaces-relay key: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(public_key_text(key))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compact"]:
        return compact_main(argv[1:])
    if argv[:1] == ["backup"]:
        return backup_main(argv[1:])
    if argv[:1] == ["key"]:
        return key_main(argv[1:])
    if argv[:1] == ["migrate"]:
        from .migrate import migrate_main

        return migrate_main(argv[1:])
    try:
        args = parse_args(argv)
        config = config_of(args)
    except ValueError as exc:
        print(f"encspaces-relay: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    setup_logging(args.log_level, args.log_format)
    tune_collector()
    try:
        asyncio.run(serve(config))
    except DataDirLockedError as exc:
        print(f"encspaces-relay: {exc}", file=sys.stderr, flush=True)
        return EXIT_LOCKED
    except (ValueError, OSError, EncspacesError) as exc:
        print(f"encspaces-relay: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
