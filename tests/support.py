"""What the test suites share: a restartable in-process relay, and a hang guard for conditions.

Suites import this as ``tests.support`` (the project root is on pytest's path).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

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
