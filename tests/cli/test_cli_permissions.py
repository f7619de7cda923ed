"""Secrets and logs on disk are readable by their owner only: files 0600 in folders 0700.

Run with the common umask 022, under which SQLite and plain writes create files 0644: the
relay's database (and its WAL and SHM), its key and blobs; the device's identity, its list
of spaces and each space's local store.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import encspaces
from encspaces.core.identity import decode_space_id
from encspaces_relay.process import RelayProcess

from .conftest import User


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # children started meanwhile inherit it
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _check_private(root: Path, expected_files: list[str]) -> None:
    """Every folder under ``root`` (and it) is 0700, every file 0600; ``expected_files`` exist."""
    for name in expected_files:
        assert (root / name).is_file(), f"{name} missing under {root}"
    assert _mode(root) == 0o700, f"{root} is {_mode(root):o}"
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(folder) / name
            assert _mode(path) == 0o700, f"{path} is {_mode(path):o}"
        for name in files:
            path = Path(folder) / name
            assert _mode(path) == 0o600, f"{path} is {_mode(path):o}"


async def test_relay_and_device_files_are_private(umask_022: None, tmp_path: Path, alice: User) -> None:
    relay_dir = tmp_path / "relay" / "data"  # its parent is created too
    async with RelayProcess(relay_dir) as relay:
        await alice.ok("init")
        space_id = (await alice.ok("create", "notes", "--relay", relay.url)).strip()
        source = tmp_path / "report.bin"
        source.write_bytes(b"r" * 1000)
        await alice.ok("files", "notes", "put", str(source))
        space_hex = decode_space_id(space_id).hex()
        blobs = f"blobs/{space_hex}"
        assert any((relay_dir / blobs).iterdir())
        _check_private(relay_dir, ["relay.sqlite3", "relay.sqlite3-wal", "relay.sqlite3-shm", "relay.key"])
        assert _mode(relay_dir.parent) == 0o700
        _check_private(alice.home, ["identity.key", "spaces.json", f"data/{space_hex}/space.sqlite3"])
        # While a device has the space open, its store's WAL and SHM exist: private too.
        identity = encspaces.Identity.load(alice.home / "identity.key")
        space = await encspaces.connect(relay.url, identity, space_id, data_dir=alice.home / "data")
        try:
            store = alice.home / "data" / space_hex
            _check_private(store, ["space.sqlite3", "space.sqlite3-wal", "space.sqlite3-shm"])
        finally:
            await space.close()
