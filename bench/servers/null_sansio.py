"""A lower floor: the null relay on websockets' sans-I/O protocol, one asyncio.Protocol per socket.

``bench.servers.null_relay`` pays websockets' asyncio layer per message (a reader task, the
message assembler, a future); this one feeds each socket's bytes to ``ServerProtocol`` in
``data_received`` and forwards every complete binary message to the other connections of its
room from that callback. What it costs per delivery is what a Python relay built on the
sans-I/O core would pay at least (bench/README.md, "What websockets' asyncio layer costs").
"""

from __future__ import annotations

import asyncio

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from bench.servers import listening, run, stop_event

ROOMS: dict[str, set[Connection]] = {}


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.ws = ServerProtocol(max_size=None)
        self.transport: asyncio.Transport | None = None
        self.room: set[Connection] | None = None
        self.path = "/"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self.ws.send_response(self.ws.accept(event))
                if self.ws.state is State.OPEN:
                    self.path = event.path
                    self.room = ROOMS.setdefault(self.path, set())
                    self.room.add(self)
            elif isinstance(event, Frame) and event.opcode is Opcode.BINARY and self.room is not None:
                for other in self.room:
                    if other is not self:
                        other.send(event.data)
        self.flush()

    def send(self, data: bytes) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_binary(data)
            self.flush()

    def flush(self) -> None:
        assert self.transport is not None
        chunks = self.ws.data_to_send()
        if chunks:
            self.transport.write(b"".join(chunks))
        if self.ws.close_expected() and not self.transport.is_closing():
            self.transport.close()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.room is not None:
            self.room.discard(self)
            if not self.room:
                ROOMS.pop(self.path, None)


async def main(host: str, port: int) -> None:
    stop = stop_event()
    server = await asyncio.get_running_loop().create_server(Connection, host, port)
    listening(host, server.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()


if __name__ == "__main__":
    run(main, "python -m bench.servers.null_sansio", __doc__)
