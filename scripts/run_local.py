"""``make run``: a relay on ws://HOST:PORT and, beside it, a witness of its spaces.

The witness (``encspaces-witness``, data in DATA/witness/) is told the relay's key, so it
cosigns checkpoints of the spaces this relay serves; its verifier key and URL are printed
for a space's witness policy (``encspaces.Witness.from_vkey(KEY, URL)``, or
``create_space(..., witnesses=[...])``). Ctrl+C stops both. ``make run WITNESS=0`` runs the
relay alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from encspaces_relay.keys import load_or_create_signing_key, public_key_text
from encspaces_witness.process import WitnessProcess


async def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/run_local.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--witness-port", type=int, default=8766)
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    relay_key = public_key_text(load_or_create_signing_key(args.data_dir))
    stopping = asyncio.Event()
    relay: asyncio.subprocess.Process | None = None

    def stop() -> None:  # Ctrl+C or SIGTERM, whenever it comes
        stopping.set()
        if relay is not None and relay.returncode is None:
            relay.send_signal(signal.SIGTERM)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    witness = WitnessProcess(args.data_dir / "witness", [relay_key], host=args.host, port=args.witness_port)
    try:
        await witness.start()
        print(f"witness running at {witness.url} (data in {witness.data_dir}/), cosigning this relay's spaces")
        print(f"  its key, for a space's witness policy: {witness.vkey}")
        print(f"  a space it witnesses: encspaces create NAME --relay ws://{args.host}:{args.port} "
              f"--witness '{witness.vkey}' {witness.url}", flush=True)
        print(f"  in Python: create_space(..., witnesses=[encspaces.Witness.from_vkey({witness.vkey!r}, "
              f"{witness.url!r})])", flush=True)
        if stopping.is_set():
            return 0
        relay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "encspaces_relay", "--host", args.host, "--port", str(args.port),
            "--data-dir", str(args.data_dir), "--allow-private-witnesses")  # its witness is on this machine
        if stopping.is_set():
            stop()
        return await relay.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            await witness.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
