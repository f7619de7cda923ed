"""The floor: a websockets server that only forwards every message to the other connections.

Connections are grouped by URL path (one group per document, like the Yjs servers' rooms).
It parses nothing and keeps no state but the set of connections, so what it costs per
delivery is Python websockets' own cost: what any Python relay pays at least.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from bench.servers import listening, run, stop_event

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
    stop = stop_event()
    async with serve(handler, host, port, compression=None, max_size=None) as server:
        listening(host, server.sockets[0].getsockname()[1])
        await stop.wait()


if __name__ == "__main__":
    run(main, "python -m bench.servers.null_relay", __doc__)
