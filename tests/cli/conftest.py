"""The ``encspaces`` command run as a user runs it: in subprocesses, against a relay daemon."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from encspaces_relay.process import RelayProcess

_SCRIPT = Path(sys.executable).with_name("encspaces")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "encspaces_clients.cli"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"


class User:
    """One device: its own home folder (identity, list of spaces, local stores)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    async def run(self, *args: str, stdin: str | None = None, timeout: float = 20.0,
                  env: dict[str, str] | None = None) -> Result:
        env = {**os.environ, **(env or {}), "ENCSPACES_HOME": str(self.home), "ENCSPACES_NAME": self.home.name}
        for key in ("ENCSPACES_IDENTITY", "ENCSPACES_DATA", "ENCSPACES_RELAY"):
            env.pop(key, None)
        proc = await asyncio.create_subprocess_exec(
            *COMMAND, "--timeout", str(timeout), *args, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(None if stdin is None else stdin.encode()), 60)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, stdin: str | None = None) -> str:
        result = await self.run(*args, stdin=stdin)
        assert result.code == 0, f"encspaces {' '.join(args)} failed:\n{result}"
        assert "Traceback" not in result.err
        return result.out


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RelayProcess]:
    async with RelayProcess(tmp_path / "relay") as process:
        yield process


@pytest.fixture
def alice(tmp_path: Path) -> User:
    return User(tmp_path / "alice")


@pytest.fixture
def bob(tmp_path: Path) -> User:
    return User(tmp_path / "bob")


async def member_pair(relay: RelayProcess, alice: User, bob: User, space: str = "notes") -> str:
    """Alice creates ``space`` and adds Bob by his public identity; Bob opens it by its id. The id."""
    await alice.ok("init")
    bob_identity = (await bob.ok("init")).strip()
    space_id = (await alice.ok("create", space, "--relay", relay.url)).strip()
    await alice.ok("add", space, bob_identity)
    assert (await bob.ok("join", space_id, "--relay", relay.url, "--name", space)).strip() == space
    return space_id
