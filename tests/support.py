"""What the test suites share: a restartable in-process relay, and a hang guard for conditions.

Suites import this as ``tests.support`` (the project root is on pytest's path).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from encspaces.core.encoding import DEFAULT_MAX_MESSAGE
from encspaces.core.entry import Entry, Kind, build_entry
from encspaces.core.identity import Identity
from encspaces.core.session import Acked, ClientSession, Event, Notice, Send, SessionState
from encspaces.core.verifier import LogVerifier
from encspaces_relay.config import RelayConfig
from encspaces_relay.server import RelayServer


class RelayHandle:
    """A relay on 127.0.0.1 that a test can stop and start again on the same port and data dir."""

    def __init__(self, data_dir: Path, cls: type[RelayServer] = RelayServer, **overrides: Any) -> None:
        self.data_dir = data_dir
        self.cls = cls
        self.overrides = overrides
        self.port = 0
        self.server: RelayServer | None = None

    async def start(self) -> RelayServer:
        self.server = self.cls(RelayConfig(data_dir=self.data_dir, port=self.port, **self.overrides))
        self.port = await self.server.start()
        return self.server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RelayHandle]:
    """One honest relay for the test, stopped at the end."""
    handle = RelayHandle(tmp_path / "relay")
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


async def wait_for(condition: Callable[[], bool], what: str = "condition", timeout: float = 15.0) -> None:
    """Poll until ``condition()`` holds; fails the test (not a timing assertion) if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class RawMember:
    """A (possibly dishonest) member's own client without ``Space``: a raw ``ClientSession`` over a
    real websocket to the real relay, which submits exactly the entry bytes a test builds.

    ``connect`` handshakes and catches up (the ``LogVerifier`` learns the member's keys);
    ``entry`` builds a correctly numbered and chained entry with the core (``build_entry``), any
    field overridable; ``submit`` sends exact bytes and returns the relay's answer (``Acked`` or a
    ``Notice``), or raises the ``RelayError`` with which the relay closed the connection.
    """

    def __init__(self, url: str, identity: Identity, space: bytes) -> None:
        self.url = url
        self.identity = identity
        self.verifier = LogVerifier(space, identity)
        self.session = ClientSession(identity, self.verifier)
        self._ws: ClientConnection | None = None
        self._numbered = 0  # the newest author_seq ``entry`` handed out

    async def __aenter__(self) -> RawMember:
        self._ws = await ws_connect(self.url, compression=None, max_size=DEFAULT_MAX_MESSAGE)
        while self.session.state is not SessionState.LIVE:
            await self._receive()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def _receive(self) -> list[Event]:
        assert self._ws is not None
        message = await asyncio.wait_for(self._ws.recv(), 15)
        assert isinstance(message, bytes)
        events = self.session.receive(message, int(time.time() * 1000))
        for event in events:
            if isinstance(event, Send):
                await self._ws.send(event.data)
        return events

    def entry(self, kind: Kind, payload: bytes, **fields: Any) -> Entry:
        """The member's next entry (numbered after the verified log and any entry built before) on top
        of the verified log; ``fields`` override ``build_entry``'s."""
        state = self.verifier.state
        args: dict[str, Any] = {
            "space": self.verifier.space,
            "author_seq": max(self._numbered, state.author_seqs.get(self.identity.public.sign_key, 0)) + 1,
            "epoch": state.epoch,
            "kind": kind,
            "parent_seq": self.verifier.seq,
            "parent_hash": self.verifier.head,
            "payload": payload,
            "epoch_key": self.verifier.epoch_keys.get(state.epoch),
        }
        args.update(fields)
        self._numbered = args["author_seq"]
        return build_entry(self.identity, **args)

    async def submit(self, *entries: Entry) -> Acked | Notice:
        """Send the entries' exact bytes in one submission; the relay's ack or notice for it."""
        assert self._ws is not None
        await self._ws.send(self.session.submit([e.raw for e in entries]))
        while True:
            for event in await self._receive():
                if isinstance(event, (Acked, Notice)):
                    return event

    async def commit(self, *entries: Entry) -> int:
        """Submit entries the relay must accept; the seq it gave the last of them."""
        answer = await self.submit(*entries)
        assert isinstance(answer, Acked), f"the relay did not accept the entries: {answer}"
        return max(seq for _, seq in answer.results)

    async def presence(self, data: bytes) -> None:
        """Send a (sealed) presence message to the other members."""
        assert self._ws is not None
        await self._ws.send(self.session.presence(data))
