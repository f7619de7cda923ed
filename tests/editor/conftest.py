"""Editors under Textual's headless pilot, on spaces served by a real relay on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

import encspaces
from relay.config import RelayConfig
from relay.server import RelayServer

SIZE = (110, 30)


class RelayHandle:
    """An in-process relay that a test can stop and start again on the same port."""

    def __init__(self, data_dir: Path, cls: type[RelayServer] = RelayServer) -> None:
        self.data_dir = data_dir
        self.cls = cls
        self.port = 0
        self.server: RelayServer | None = None

    async def start(self) -> RelayServer:
        self.server = self.cls(RelayConfig(data_dir=self.data_dir, port=self.port))
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
    handle = RelayHandle(tmp_path / "relay")
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll until ``condition()`` holds; fails the test (not a timing assertion) if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def pair(url: str, tmp_path: Path) -> tuple[encspaces.Space, encspaces.Space]:
    """Alice's new space with Bob added, both connected."""
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice = await encspaces.create_space(url, alice_id, data_dir=tmp_path / "alice")
    await alice.add_member(bob_id.public)
    bob = await encspaces.connect(url, bob_id, alice.id, data_dir=tmp_path / "bob")
    return alice, bob


KEY_NAMES = {" ": "space", "\n": "enter", ",": "comma", ".": "full_stop", "!": "exclamation_mark"}


async def type_text(pilot: Pilot[int], text: str) -> None:
    """Type ``text`` key by key, as a person would."""
    await pilot.press(*(KEY_NAMES.get(ch, ch) for ch in text))
