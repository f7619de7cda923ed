"""``files.put`` from an async byte stream: round trip in bounded memory, and no trace on failure.

The stream is spooled to a 0600 file in the space's folder first (the key derives from the
whole content); these tests check it is gone on success, cancellation and error, and that
nothing is listed unless the upload completed.
"""

from __future__ import annotations

import asyncio
import random
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import encspaces
from encspaces.errors import FileTooLargeError
from encspaces.files import CHUNK_SIZE, MAX_CHUNKS, SPOOL_PREFIX, chunk_count
from tests.support import wait_for

from .conftest import Members, Progress, RelayHandle

PIECE = 100_000  # not a multiple of the chunk size, as an upload's pieces would not be


def spools(members: Members, space: encspaces.Space) -> list[Path]:
    """The upload spool files in the space's folder of its member's data dir."""
    folder = members.folder(space)
    assert folder.is_dir(), f"no folder {folder}"
    return sorted(folder.glob(f"{SPOOL_PREFIX}*"))


async def pieces(total: int, seed: int) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    sent = 0
    while sent < total:
        piece = rng.randbytes(min(PIECE, total - sent))
        sent += len(piece)
        await asyncio.sleep(0)
        yield piece


def expected(total: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < total:
        out += rng.randbytes(min(PIECE, total - len(out)))
    return bytes(out)


async def test_a_large_stream_round_trips_in_bounded_memory(members: Members) -> None:
    import tracemalloc

    alice = await members.create()
    bob = await members.join(alice)
    size = 96 * CHUNK_SIZE + 12_345  # 24 MiB: the peak below is a few chunks in flight, client and relay
    progress = Progress()
    tracemalloc.start()
    try:
        ref = await alice.files.put("upload.bin", pieces(size, 1), progress=progress)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 4, peak  # a window of chunks, never the whole stream
    progress.check(size, chunk_count(size, CHUNK_SIZE))
    assert ref.size == size and ref.content_type == "application/octet-stream"
    assert spools(members, alice) == []
    await bob.wait_for_seq(alice.seq)
    assert await bob.files.get("upload.bin") == expected(size, 1)
    # Keys derive from the content: the same bytes as plain bytes give the same file.
    assert (await alice.files.put("again.bin", expected(size, 1))).chunks == ref.chunks


async def test_cancelled_while_receiving_leaves_nothing(members: Members) -> None:
    space = await members.create()
    stalled = asyncio.Event()

    async def stream() -> AsyncIterator[bytes]:
        yield b"a" * PIECE
        yield b"b" * PIECE
        stalled.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b"never"

    upload = asyncio.create_task(space.files.put("partial.bin", stream()))
    await stalled.wait()
    await wait_for(lambda: any(p.stat().st_size == 2 * PIECE for p in spools(members, space)),
                   "the spool to hold both pieces")
    (spool,) = spools(members, space)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o600
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert spools(members, space) == [] and space.files.list() == []


async def test_cancelled_while_uploading_leaves_nothing(relay: RelayHandle, members: Members) -> None:
    space = await members.create()
    await relay.stop()  # the stream is received, then the upload waits for the relay
    upload = asyncio.create_task(space.files.put("waiting.bin", pieces(3 * CHUNK_SIZE, 2)))
    await wait_for(lambda: any(p.stat().st_size == 3 * CHUNK_SIZE for p in spools(members, space)), "the whole spool")
    await asyncio.sleep(0.05)
    assert not upload.done()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert spools(members, space) == []
    await relay.start()
    await space.sync()
    assert space.files.list() == []


async def test_a_stream_that_fails_midway_leaves_nothing(members: Members) -> None:
    space = await members.create()

    async def stream() -> AsyncIterator[bytes]:
        yield b"x" * CHUNK_SIZE
        yield b"y" * CHUNK_SIZE
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await space.files.put("broken.bin", stream())
    assert spools(members, space) == [] and space.files.list() == []


async def test_a_stream_longer_than_a_file_may_be_stops_at_the_limit(members: Members) -> None:
    space = await members.create()
    space.files.chunk_size = 1
    served = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal served
        while True:
            served += 1000
            yield b"z" * 1000

    with pytest.raises(FileTooLargeError):
        await space.files.put("endless.bin", endless())
    assert served <= MAX_CHUNKS + 1000  # refused as soon as it is too long, not read to the end
    assert spools(members, space) == [] and space.files.list() == []


async def test_a_stream_of_non_bytes_is_refused(members: Members) -> None:
    space = await members.create()

    async def stream() -> AsyncIterator[str]:
        yield "text"

    with pytest.raises(TypeError):
        await space.files.put("text.txt", stream())  # type: ignore[arg-type]
    assert spools(members, space) == [] and space.files.list() == []


async def test_a_cancel_that_comes_as_the_connection_changes_is_not_lost(relay: RelayHandle, members: Members) -> None:
    """The upload waits for the relay; its cancel arrives in the same loop pass as a change of the
    connection's state (every reconnect attempt makes one). Through Python 3.11's wait_for, that
    cancel was lost and the upload waited out its whole timeout."""
    space = await members.create()
    await relay.stop()
    space.files.timeout = 5.0
    upload = asyncio.create_task(space.files.put("waiting.bin", pieces(3 * CHUNK_SIZE, 2)))
    await wait_for(lambda: any(p.stat().st_size == 3 * CHUNK_SIZE for p in spools(members, space)), "the whole spool")
    await asyncio.sleep(0.05)
    space.files._changed.set()  # the state change the waiting upload is woken by
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert spools(members, space) == []


async def test_a_spool_left_by_a_crash_is_removed_when_the_space_opens_again(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """A process killed while spooling an upload leaves its spool (plaintext, up to 2 GiB): reopening removes it."""
    identity = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, identity, data_dir=tmp_path / "a")
    folder = tmp_path / "a" / space.space_bytes.hex()
    space_id = space.id
    await space.close()
    fd, left = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=".spool", dir=folder)  # as put makes it
    with open(fd, "wb") as handle:
        handle.write(b"plaintext of an upload the crash interrupted")
    async with encspaces.connect(relay.url, identity, space_id, data_dir=tmp_path / "a") as again:
        assert not Path(left).exists()
        assert [p.name for p in folder.iterdir() if p.name.startswith(SPOOL_PREFIX)] == []
        assert (await again.files.put("after.bin", b"works")).size == 5
