"""The floor: a websockets server that only forwards every message to the other connections.

Connections are grouped by URL path (one group per document, like the Yjs servers' rooms).
It parses nothing and keeps no state but the set of connections, so what it costs per
delivery is Python websockets' own cost: what any Python relay pays at least.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

ROOMS: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else "/"
    room = ROOMS.setdefault(path, set())
    room.add(ws)
    try:
        async for message in ws:
            if len(room) > 1:
                broadcast([c for c in room if c is not ws], message)
    except ConnectionClosed:
        pass
    finally:
        room.discard(ws)
        if not room:
            ROOMS.pop(path, None)


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(handler, host, port, compression=None, max_size=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on ws://{host}:{bound}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.servers.null_relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
    sys.exit(0)
