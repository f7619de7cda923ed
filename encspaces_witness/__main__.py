"""``encspaces-witness``: run a witness until SIGTERM or SIGINT.

The first line on stdout is the witness's verifier key (clients and the space's witness policy
name it), the second the URL it listens on, flushed at once; logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from encspaces.core.identity import member_id, parse_member_id
from encspaces.core.note import CosignatureSigner
from encspaces.errors import EncspacesError

from .core import Witness
from .store import DB_FILE, SqliteWitnessStore, load_or_create_key

DEFAULT_PORT = 8766


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="encspaces-witness", description="An encspaces log witness (C2SP tlog-witness)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port, 0 for any free one (default {DEFAULT_PORT})")
    parser.add_argument("--data-dir", type=Path, required=True, help="where the key and the database are kept")
    parser.add_argument("--log-key", action="append", default=[], metavar="RELAY_KEY",
                        help="public key of a relay whose spaces this witness serves, as the relay prints it "
                             "(repeatable); without one every checkpoint is refused as of an unknown origin")
    parser.add_argument("--name", default=None,
                        help="key name of the cosignatures (default encspaces-witness/<public key>)")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    from .server import start  # aiohttp is in the 'witness' extra: fail with a clear message at start

    key = load_or_create_key(args.data_dir)
    name = args.name or f"encspaces-witness/{member_id(bytes(key.verify_key))}"
    store = SqliteWitnessStore(args.data_dir / DB_FILE)
    witness = Witness(CosignatureSigner(name, key), [parse_member_id(k) for k in args.log_key], store)
    runner, port = await start(witness, args.host, args.port)
    print(witness.signer.verifier().vkey(), flush=True)
    print(f"http://{args.host}:{port}", flush=True)
    if not args.log_key:
        logging.getLogger("encspaces.witness").warning("no --log-key: every checkpoint will be refused (404)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        store.close()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except ModuleNotFoundError as exc:
        sys.exit(f"encspaces-witness: {exc.name} is missing; install with: pip install 'encspaces[witness]'")
    except EncspacesError as exc:
        sys.exit(f"encspaces-witness: {exc}")


if __name__ == "__main__":
    main()
