"""``queued_messages`` reads websockets' undocumented queue of received frames: this holds it to
the pinned websockets version, over a real socket (the connection batches on what it counts)."""

from __future__ import annotations

from typing import cast

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, serve

from encspaces.connection import queued_messages

from .conftest import wait_for


async def test_it_counts_the_whole_messages_received_and_not_yet_taken() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(b"one")
        await ws.send([b"tw", b"o"])  # one message in two frames: counted once, when whole
        await ws.send(b"three")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with ws_connect(f"ws://127.0.0.1:{port}") as ws:
            await wait_for(lambda: queued_messages(ws) == 3, "the three messages to be queued")
            assert await ws.recv() == b"one"
            assert queued_messages(ws) == 2
            assert await ws.recv() == b"two"
            assert await ws.recv() == b"three"
            assert queued_messages(ws) == 0


def test_a_connection_of_another_shape_has_nothing_queued() -> None:
    assert queued_messages(cast(ClientConnection, object())) == 0
