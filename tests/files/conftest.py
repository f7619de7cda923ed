"""A real relay on 127.0.0.1 with file limits of the test's choosing, and spaces on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import encspaces
from encspaces_relay.server import RelayServer
from tests.support import RelayHandle


class Relay(RelayHandle):
    """A restartable relay (tests.support) whose blob files a test can look at."""

    def blob_files(self, space: encspaces.Space) -> list[Path]:
        folder = self.data_dir / "blobs" / space.space_bytes.hex()
        return sorted(folder.iterdir()) if folder.exists() else []


RelayFactory = Callable[..., Awaitable[Relay]]


@pytest.fixture
async def make_relay(tmp_path: Path) -> AsyncIterator[RelayFactory]:
    started: list[Relay] = []

    async def make(**overrides: Any) -> Relay:
        relay = Relay(tmp_path / f"relay{len(started)}", RelayServer, **overrides)
        await relay.start()
        started.append(relay)
        return relay

    yield make
    for relay in started:
        await relay.stop()


@pytest.fixture
async def relay(make_relay: RelayFactory) -> Relay:
    return await make_relay()


class Members:
    """Spaces of one space's members, all closed at the end of the test."""

    def __init__(self, relay: Relay, tmp_path: Path) -> None:
        self.relay = relay
        self.tmp_path = tmp_path
        self.spaces: list[encspaces.Space] = []

    async def create(self) -> encspaces.Space:
        identity = encspaces.Identity.generate()
        space = await encspaces.create_space(self.relay.url, identity, data_dir=self.tmp_path / f"m{len(self.spaces)}")
        self.spaces.append(space)
        return space

    async def join(self, creator: encspaces.Space, role: str = "writer") -> encspaces.Space:
        identity = encspaces.Identity.generate()
        await creator.add_member(identity.public, role)
        space: encspaces.Space = await encspaces.connect(self.relay.url, identity, creator.id,
                                                         data_dir=self.tmp_path / f"m{len(self.spaces)}")
        self.spaces.append(space)
        await space.wait_for_seq(creator.seq)
        return space

    async def close(self) -> None:
        for space in self.spaces:
            await space.close()


@pytest.fixture
async def members(relay: Relay, tmp_path: Path) -> AsyncIterator[Members]:
    group = Members(relay, tmp_path)
    try:
        yield group
    finally:
        await group.close()


@pytest.fixture
async def other_members(members: Members, tmp_path: Path) -> AsyncIterator[Members]:
    """Members of other spaces on the same relay."""
    group = Members(members.relay, tmp_path / "other")
    try:
        yield group
    finally:
        await group.close()


class Progress:
    """Records every progress call and checks they make sense."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))

    def check(self, total: int, chunks: int) -> None:
        assert self.calls[0] == (0, total)
        assert self.calls[-1] == (total, total)
        assert len(self.calls) == chunks + 1
        dones = [done for done, _ in self.calls]
        assert dones == sorted(dones)
        assert all(t == total for _, t in self.calls)
