"""The two kinds of client the benchmarks drive, behind one small interface.

- ``YjsClient``: a plaintext Yjs peer written with pycrdt's own sync helpers
  (``create_sync_message``, ``handle_sync_message``, ``create_update_message``). The same
  code drives the null relay, pycrdt-websocket and the Node y-websocket server, so between
  those three only the server differs. Like y-websocket's browser provider, it sends one
  update message per local transaction and applies every update it receives.
- ``SpaceClient``: a real encspaces member (``encspaces.connect``): edits are batched into
  signed, encrypted entries, and every frame is verified before anything is applied.

Both expose a pycrdt ``Text`` per name to observe (``observed_text``), so "applied at the
reader" is measured the same way for every contender: by an observer on the reader's own
document, which pycrdt calls synchronously when the transaction carrying the edit commits.
For encspaces that happens only after the entry was verified and decrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pycrdt
from pycrdt import (
    YMessageType,
    YSyncMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import encspaces
from encspaces.core.encoding import DEFAULT_MAX_MESSAGE
from encspaces.core.identity import decode_space_id
from encspaces.core.session import BecameLive, ClientSession, Send
from encspaces.core.verifier import LogVerifier
from encspaces.shared.kinds import root_name

YIELD_EVERY = 32  # messages a Yjs client handles between two yields to the event loop


class YjsClient:
    """One connection to a plaintext Yjs server (or the null relay) with its own pycrdt Doc."""

    def __init__(self, url: str, room: str, *, handshake: bool) -> None:
        self.url = f"{url.rstrip('/')}/{room}"
        self.handshake = handshake  # the null relay has no document to sync with
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.received = 0  # messages received
        self.synced = asyncio.Event()
        self._local: list[bytes] = []
        self._remote = False
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._texts: dict[str, pycrdt.Text] = {}
        self.doc.observe(self._on_transaction)

    def _on_transaction(self, event: pycrdt.TransactionEvent) -> None:
        if not self._remote:
            self._local.append(event.update)

    async def open(self, timeout: float = 30.0) -> None:
        self._ws = await ws_connect(self.url, compression=None, max_size=None, ping_interval=None,
                                    open_timeout=timeout, close_timeout=1)
        self._task = asyncio.create_task(self._receive())
        if self.handshake:
            await self._ws.send(create_sync_message(self.doc))
            await asyncio.wait_for(self.synced.wait(), timeout)
        else:
            self.synced.set()

    async def _receive(self) -> None:
        ws = self._ws
        assert ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                self.received += 1
                if self.received % YIELD_EVERY == 0:
                    # websockets hands over every message already parsed without suspending:
                    # yield now and then so 50 clients in one process take turns.
                    await asyncio.sleep(0)
                if not isinstance(message, bytes) or len(message) < 2 or message[0] != YMessageType.SYNC:
                    continue  # awareness and anything else: not part of these workloads
                self._remote = True
                try:
                    reply = handle_sync_message(message[1:], self.doc)
                finally:
                    self._remote = False
                if reply is not None:
                    await ws.send(reply)
                if message[1] == YSyncMessageType.SYNC_STEP2:
                    self.synced.set()

    def observed_text(self, name: str) -> pycrdt.Text:
        text = self._texts.get(name)
        if text is None:
            text = self._texts[name] = self.doc.get(name, type=pycrdt.Text)
        return text

    def append(self, name: str, s: str) -> None:
        """A local edit: ``s`` typed at the end of text ``name``."""
        text = self.observed_text(name)
        text.insert(len(text), s)

    def text_str(self, name: str) -> str:
        return str(self.observed_text(name))

    async def flush(self) -> None:
        """Send every local transaction as its own update message."""
        ws = self._ws
        assert ws is not None
        pending, self._local = self._local, []
        for update in pending:
            await ws.send(create_update_message(update))

    @property
    def messages(self) -> int:
        return self.received

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class SpaceClient:
    """One encspaces member's device: a Space opened with ``encspaces.connect``."""

    def __init__(self, url: str, identity: encspaces.Identity, space_id: str, data_dir: Path) -> None:
        self.url = url
        self.identity = identity
        self.space_id = space_id
        self.data_dir = data_dir
        self._space: encspaces.Space | None = None
        self._texts: dict[str, pycrdt.Text] = {}

    @property
    def space(self) -> encspaces.Space:
        assert self._space is not None
        return self._space

    async def open(self, timeout: float = 60.0) -> None:
        self._space = await asyncio.wait_for(
            encspaces.connect(self.url, self.identity, self.space_id, data_dir=self.data_dir), timeout)

    def observed_text(self, name: str) -> pycrdt.Text:
        text = self._texts.get(name)
        if text is None:
            text = self._texts[name] = self.space.doc.get(root_name("text", name), type=pycrdt.Text)
        return text

    def append(self, name: str, s: str) -> None:
        text = self.space.text(name)
        text.insert(len(text), s)

    def text_str(self, name: str) -> str:
        return str(self.space.text(name))

    async def flush(self) -> None:
        await asyncio.sleep(0)  # the SDK batches and sends on its own

    @property
    def messages(self) -> int:
        return self.space.seq  # log entries verified (each one a batch of edits)

    async def close(self) -> None:
        if self._space is not None:
            await self._space.close()


class SessionClient:
    """An encspaces connection without a device store: the SDK's own ClientSession and
    LogVerifier over a websocket. The relay sees exactly what ``encspaces.connect`` shows it
    (challenge, signed hello, welcome, verified catch-up, then a live subscriber), without the
    SQLite file and document a full Space keeps on the device. Used for the 1,000 idle
    connections, where only the relay is measured."""

    def __init__(self, url: str, identity: encspaces.Identity, space_id: str) -> None:
        self.url = url
        self.identity = identity
        self.space = decode_space_id(space_id)
        self.live = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, timeout: float = 60.0) -> None:
        self._ws = await ws_connect(self.url, compression=None, max_size=DEFAULT_MAX_MESSAGE, ping_interval=None,
                                    open_timeout=timeout, close_timeout=1)
        self._task = asyncio.create_task(self._receive(ClientSession(self.identity, LogVerifier(self.space,
                                                                                                 self.identity))))
        await asyncio.wait_for(self.live.wait(), timeout)

    async def _receive(self, session: ClientSession) -> None:
        ws = self._ws
        assert ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                assert isinstance(message, bytes)
                for event in session.receive(message, int(time.time() * 1000)):
                    if isinstance(event, Send):
                        await ws.send(event.data)
                    elif isinstance(event, BecameLive):
                        self.live.set()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


Client = YjsClient | SpaceClient


class Arrivals:
    """Counts (and optionally timestamps) the characters that arrive in append-only texts.

    Each writer ``i`` only ever appends to text ``w{i}``, one character per edit, so the
    length of that text at a reader is the number of that writer's edits applied there.
    The observer reads the new length from the event's delta (retain + insert): pycrdt does
    not allow reading the document inside an observer.
    """

    def __init__(self, writers: int, *, record_times: bool) -> None:
        self.counts = [0] * writers
        self.total = 0
        self.times: list[list[float]] = [[] for _ in range(writers)] if record_times else []
        self.progress = asyncio.Event()
        self._subscriptions: list[tuple[pycrdt.Text, Any]] = []

    def watch(self, client: Client) -> None:
        for i in range(len(self.counts)):
            text = client.observed_text(f"w{i}")
            self._subscriptions.append((text, text.observe(self._callback(i))))

    def _callback(self, i: int) -> Callable[[Any], None]:
        record = bool(self.times)

        def on_event(event: Any) -> None:
            length = 0
            for op in event.delta:
                retain = op.get("retain")
                if retain is not None:
                    length += retain
                inserted = op.get("insert")
                if inserted is not None:
                    length += len(inserted)
            new = length - self.counts[i]
            if new <= 0:
                return
            if record:
                self.times[i].extend([time.monotonic()] * new)
            self.counts[i] = length
            self.total += new
            self.progress.set()

        return on_event

    def unwatch(self) -> None:
        for text, sub in self._subscriptions:
            with contextlib.suppress(Exception):
                text.unobserve(sub)
        self._subscriptions.clear()
