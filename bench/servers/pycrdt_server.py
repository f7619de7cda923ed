"""pycrdt-websocket's server (plaintext Yjs, Python) on a websockets listener.

pycrdt-websocket serves any object that behaves as a pycrdt ``Channel``; this file only
adapts a websockets connection to that interface (path, send, recv, async iteration) and
hands it to ``WebsocketServer.serve``, which does everything else: one YRoom per path, the
Yjs sync handshake, applying every update to the room's document and broadcasting it.
"""

from __future__ import annotations

import contextlib
import logging

from pycrdt.websocket import WebsocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.servers import listening, run, stop_event


class WebsocketsChannel:
    """A websockets server connection seen as a pycrdt Channel."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        self._path = ws.request.path if ws.request is not None else "/"

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WebsocketsChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration() from None

    async def send(self, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):  # the room still lists a client that is going away
            await self._ws.send(message)

    async def recv(self) -> bytes:
        message = await self._ws.recv(decode=False)
        return bytes(message)


async def main(host: str, port: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    stop = stop_event()
    log = logging.getLogger("pycrdt-websocket")
    # Rooms stay in memory when their last client leaves, as in y-websocket without persistence.
    async with WebsocketServer(auto_clean_rooms=False, log=log) as yserver:

        async def handler(ws: ServerConnection) -> None:
            await yserver.serve(WebsocketsChannel(ws))

        async with serve(handler, host, port, compression=None, max_size=None) as server:
            listening(host, server.sockets[0].getsockname()[1])
            await stop.wait()
            server.close()


if __name__ == "__main__":
    run(main, "python -m bench.servers.pycrdt_server", __doc__)
