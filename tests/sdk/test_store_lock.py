"""One opener at a time for a device's copy of a space (encspaces.core.file_lock).

Two ``Space`` objects on one data dir used to run side by side: both signed entries with the
same author_seqs, the relay refused the second writer, and the two overwrote each other's
outbox and checkpoint, the space silently stuck with edits that never reached the log.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

import encspaces
from encspaces.errors import StoreError, StoreInUseError
from encspaces.store import STORE_FILE

from .conftest import RelayHandle

GUARD = 20.0  # seconds: a hang guard, never the behaviour under test


async def test_a_second_space_on_the_same_data_dir_is_refused(relay: RelayHandle, tmp_path: Path) -> None:
    identity = encspaces.Identity.generate()
    first = await encspaces.create_space(relay.url, identity, data_dir=tmp_path / "a")
    try:
        first.text("t").insert(0, "one")
        await first.sync(timeout=GUARD)
        with pytest.raises(StoreInUseError, match=rf"open already, in this process or another \(pid {os.getpid()}\)"):
            await encspaces.connect(relay.url, identity, first.id, data_dir=tmp_path / "a", timeout=GUARD)
        with pytest.raises(StoreInUseError):
            await encspaces.open_local(identity, first.id, data_dir=tmp_path / "a")
        assert issubclass(StoreInUseError, StoreError)
        # The first one is untouched and goes on.
        first.text("t").insert(3, " two")
        await first.sync(timeout=GUARD)
        assert first.error is None and first.unsent == 0
    finally:
        await first.close()
    again = await encspaces.connect(relay.url, identity, first.id, data_dir=tmp_path / "a", timeout=GUARD)
    try:
        assert again.text("t").to_py() == "one two"
    finally:
        await again.close()
    view = await encspaces.open_local(identity, first.id, data_dir=tmp_path / "a")
    assert view.text("t").to_py() == "one two"


async def test_a_copy_held_by_another_process_is_refused_until_that_process_dies(
    relay: RelayHandle, tmp_path: Path
) -> None:
    identity = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, identity, data_dir=tmp_path / "a")
    space_hex = space.space_bytes.hex()
    await space.close()
    holder = textwrap.dedent(f"""
        import asyncio, sys
        from encspaces.store import LocalStore
        async def main():
            store = await LocalStore.open({str(tmp_path / "a")!r}, {space_hex!r})
            print("HELD", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        asyncio.run(main())
    """)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", holder, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent.parent)
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), GUARD) == b"HELD\n"
        with pytest.raises(StoreInUseError, match=rf"\(pid {child.pid}\)"):
            await encspaces.connect(relay.url, identity, space.id, data_dir=tmp_path / "a", timeout=GUARD)
    finally:
        child.kill()  # SIGKILL: the kernel releases the lock, nothing to clean up
        await child.wait()
    again = await encspaces.connect(relay.url, identity, space.id, data_dir=tmp_path / "a", timeout=GUARD)
    await again.close()


async def test_an_open_that_fails_releases_the_copy(relay: RelayHandle, tmp_path: Path) -> None:
    """Whatever stops an opening call (a corrupt store here; a timeout or a cancellation alike)
    closes what it opened: the next attempt sees the same fault, not a copy still held."""
    identity = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, identity, data_dir=tmp_path / "a")
    space.text("t").insert(0, "x")
    await space.close()  # takes a checkpoint
    path = tmp_path / "a" / space.space_bytes.hex() / STORE_FILE
    with sqlite3.connect(path) as db:
        assert db.execute("UPDATE checkpoint SET verifier = x'00'").rowcount == 1
    for _ in range(2):
        with pytest.raises(StoreError, match="checkpoint is corrupt") as caught:
            await encspaces.connect(relay.url, identity, space.id, data_dir=tmp_path / "a", timeout=GUARD)
        assert not isinstance(caught.value, StoreInUseError)
        with pytest.raises(StoreError, match="checkpoint is corrupt"):
            await encspaces.open_local(identity, space.id, data_dir=tmp_path / "a")
    with sqlite3.connect(path) as db:  # and closing what failed to restore wrote nothing over it
        assert db.execute("SELECT verifier FROM checkpoint").fetchall() == [(b"\x00",)]
