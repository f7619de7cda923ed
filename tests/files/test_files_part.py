"""The temporary file of a download to a path (``.NAME.part`` beside it), over a real relay.

A download that fails or is cancelled removes its file; one that crashed (killed: no cleanup
ran) left it with nobody's lock on it, and the next download to the same path takes it over
(tests/cli/test_cli.py kills ``files get`` midway); a download that is running keeps its file
while another download to the same path runs beside it. The relay holds a chunk's answer
(``LyingBlobs``, as in test_files_attacks) to stop a download midway.
"""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from encspaces.core.log_state import LogState
from encspaces.core.messages import BlobGet, BlobPut, BlobReply
from encspaces.files import CHUNK_SIZE
from encspaces_relay.blobs import BlobStore
from tests.support import wait_for

from .conftest import Members, RelayHandle
from .test_files_attacks import DATA, _lie


def _holding_chunk(relay: RelayHandle, chunk: bytes) -> tuple[asyncio.Event, asyncio.Event]:
    """The relay holds its first answer for ``chunk`` until ``release`` is set; ``held`` says it is holding."""
    held, release = asyncio.Event(), asyncio.Event()

    async def script(store: BlobStore, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        if request.hash == chunk and not held.is_set():
            held.set()
            await release.wait()
        return await store.answer(state, member, request)

    _lie(relay, script)
    return held, release


async def test_a_part_file_left_by_a_crash_is_taken_over(members: Members, tmp_path: Path) -> None:
    space = await members.create()
    await space.files.put("victim.bin", DATA)
    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / ".victim.bin.part").write_bytes(b"x" * (5 * CHUNK_SIZE))  # longer than the file: emptied first
    assert await space.files.get("victim.bin", folder) == folder / "victim.bin"
    assert (folder / "victim.bin").read_bytes() == DATA
    assert [p.name for p in folder.iterdir()] == ["victim.bin"]


async def test_a_running_downloads_part_file_is_left_to_it(
    relay: RelayHandle, members: Members, tmp_path: Path,
) -> None:
    """Another download to the same path meanwhile (another member: its own connection) writes to
    a file of its own: emptying the running one's would leave a hole in what it saves."""
    space = await members.create()
    ref = await space.files.put("victim.bin", DATA)
    reader = await members.join(space, "reader")
    held, release = _holding_chunk(relay, ref.chunks[2])
    dest = tmp_path / "dl" / "victim.bin"
    part = dest.parent / ".victim.bin.part"
    first = asyncio.create_task(space.files.get("victim.bin", dest))
    try:
        await asyncio.wait_for(held.wait(), 30)
        await wait_for(lambda: part.exists() and part.stat().st_size == 2 * CHUNK_SIZE, "chunks 0 and 1 written")
        assert await reader.files.get("victim.bin", dest) == dest
        assert dest.read_bytes() == DATA and part.stat().st_size == 2 * CHUNK_SIZE
        assert sorted(p.name for p in dest.parent.iterdir()) == [".victim.bin.part", "victim.bin"]
    finally:
        release.set()
    assert await asyncio.wait_for(first, 30) == dest
    assert dest.read_bytes() == DATA
    assert [p.name for p in dest.parent.iterdir()] == ["victim.bin"]


async def test_a_download_cancelled_midway_removes_its_part_file(
    relay: RelayHandle, members: Members, tmp_path: Path,
) -> None:
    space = await members.create()
    ref = await space.files.put("victim.bin", DATA)
    held, release = _holding_chunk(relay, ref.chunks[2])
    folder = tmp_path / "dl"
    download = asyncio.create_task(space.files.get("victim.bin", folder / "victim.bin"))
    try:
        await asyncio.wait_for(held.wait(), 30)
        await wait_for(lambda: (folder / ".victim.bin.part").exists(), "the download to start writing")
        download.cancel()
        with pytest.raises(asyncio.CancelledError):
            await download
        assert list(folder.iterdir()) == []
    finally:
        release.set()
    assert await space.files.get("victim.bin", folder) == folder / "victim.bin"  # and the next one works
    assert [p.name for p in folder.iterdir()] == ["victim.bin"]


async def test_on_a_file_system_without_locks_a_download_uses_a_name_of_its_own(
    members: Members, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where ``flock`` fails (some network and FUSE mounts), nothing tells a crashed download's
    file from a running one's: the download writes to a name of its own, as before, leaves the
    file it found, and none of its own (it first removes the ``.part`` it created)."""
    space = await members.create()
    await space.files.put("victim.bin", DATA)

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "no locks available")

    monkeypatch.setattr("encspaces.files.fcntl.flock", no_locks)
    folder = tmp_path / "dl"
    assert await space.files.get("victim.bin", folder / "victim.bin") == folder / "victim.bin"
    assert [p.name for p in folder.iterdir()] == ["victim.bin"]
    (folder / ".victim.bin.part").write_bytes(b"someone's")
    assert await space.files.get("victim.bin", folder) == folder / "victim.bin"
    assert (folder / "victim.bin").read_bytes() == DATA
    assert sorted(p.name for p in folder.iterdir()) == [".victim.bin.part", "victim.bin"]
    assert (folder / ".victim.bin.part").read_bytes() == b"someone's"
