"""Contender servers the harness starts as their own processes (the Node one is started from npm's files).

Each prints ``listening on ws://HOST:PORT`` once bound (the harness waits for that line) and
stops on SIGTERM; ``run`` and ``stop_event`` are that shared part.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any


def stop_event() -> asyncio.Event:
    """Set by SIGTERM (how the harness stops a server) or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def listening(host: str, port: int) -> None:
    print(f"listening on ws://{host}:{port}", flush=True)


def run(main: Callable[[str, int], Coroutine[Any, Any, None]], prog: str, description: str | None) -> None:
    """The server's command line: ``--host``, ``--port`` (0: any free one), then ``main`` until stopped."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
    sys.exit(0)
