"""Real relays on 127.0.0.1 for SDK tests, honest or lying, and the helpers to wait on them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import encspaces
from relay.config import RelayConfig
from relay.server import RelayServer


class RelayHandle:
    """A relay that tests can stop and start again on the same port and data dir."""

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


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until ``condition()`` holds; fails the test (not a timing assertion) if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def make_members(
    url: str, tmp_path: Path, n: int
) -> tuple[list[encspaces.Identity], list[encspaces.Space]]:
    """A space created by the first of ``n`` fresh identities, the others added and connected."""
    identities = [encspaces.Identity.generate() for _ in range(n)]
    creator = await encspaces.create_space(url, identities[0], data_dir=tmp_path / "m0")
    for other in identities[1:]:
        await creator.add_member(other.public)
    spaces = [creator]
    for i, other in enumerate(identities[1:], start=1):
        spaces.append(await encspaces.connect(url, other, creator.id, data_dir=tmp_path / f"m{i}"))
    return identities, spaces


async def settle(spaces: list[encspaces.Space]) -> None:
    """Every member's edits in the log, and every member caught up with all of them."""
    for space in spaces:
        await space.sync()
    newest = max(space.seq for space in spaces)
    for space in spaces:
        await space.wait_for_seq(newest)
