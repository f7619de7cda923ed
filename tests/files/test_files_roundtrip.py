"""Files go up and come back identical, as bytes or through paths, for every member."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

import encspaces
from encspaces.core import crypto
from encspaces.errors import FileChangedError, FileSourceNotFoundError, FileTooLargeError, UnknownFileError
from encspaces.files import CHUNK_SIZE, MAX_CHUNKS, FileRef, chunk_count

from .conftest import Members, Progress, RelayHandle


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


SIZES = {"empty": 0, "small": 1000, "one-chunk": CHUNK_SIZE, "multi-mb": 3 * CHUNK_SIZE + 123}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
async def test_round_trip_bytes_and_paths(members: Members, tmp_path: Path, size: int) -> None:
    space = await members.create()
    data = _data(size, size)
    up = Progress()
    ref = await space.files.put("data.bin", data, progress=up)
    up.check(size, chunk_count(size, CHUNK_SIZE))
    assert (ref.name, ref.size, ref.content_type) == ("data.bin", size, "application/octet-stream")
    assert len(ref.chunks) == max(1, -(-size // CHUNK_SIZE))
    assert [r.name for r in space.files.list()] == ["data.bin"]

    down = Progress()
    assert await space.files.get("data.bin", progress=down) == data
    down.check(size, len(ref.chunks))

    source = tmp_path / "source.bin"
    source.write_bytes(data)
    from_path = await space.files.put("from-path.bin", source, progress=Progress())
    assert from_path.chunks == ref.chunks  # same content, same space: the same blobs
    dest = tmp_path / "out" / "copy.bin"
    dest.parent.mkdir()
    assert await space.files.get(from_path, dest, progress=Progress()) == dest
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.bin"]  # no temp file left


async def test_another_member_downloads_what_one_uploaded(members: Members, tmp_path: Path) -> None:
    alice = await members.create()
    bob = await members.join(alice)
    data = _data(2 * CHUNK_SIZE + 7, 1)
    ref = await alice.files.put("report.pdf", data)
    assert ref.content_type == "application/pdf"
    await bob.wait_for_seq(alice.seq)
    assert bob.files.list() == [ref]
    assert "report.pdf" in bob.files
    saved = await bob.files.get("report.pdf", tmp_path)  # a folder: saved under the file's name
    assert saved == tmp_path / "report.pdf"
    assert saved.read_bytes() == data


async def test_get_into_a_missing_folder_and_put_from_a_missing_path(members: Members, tmp_path: Path) -> None:
    space = await members.create()
    await space.files.put("report.pdf", b"%PDF- a report")
    # The README's snippet: the folder "downloads" does not exist yet.
    saved = await space.files.get("report.pdf", tmp_path / "downloads" / "report.pdf")
    assert saved.read_bytes() == b"%PDF- a report"
    missing = tmp_path / "nowhere" / "absent.pdf"
    with pytest.raises(FileSourceNotFoundError) as caught:
        await space.files.put("absent.pdf", missing)
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, encspaces.FileError)
    assert caught.value.filename == str(missing) and str(missing) in str(caught.value)
    assert "absent.pdf" not in space.files


async def test_delete_unlists_but_a_kept_ref_still_reads(members: Members) -> None:
    alice = await members.create()
    bob = await members.join(alice)
    ref = await alice.files.put("notes.txt", b"some notes")
    await bob.wait_for_seq(alice.seq)
    await bob.files.delete("notes.txt")
    await alice.wait_for_seq(bob.seq)
    assert alice.files.list() == []
    with pytest.raises(UnknownFileError):
        await alice.files.get("notes.txt")
    with pytest.raises(UnknownFileError):
        await alice.files.delete("notes.txt")
    assert await alice.files.get(ref) == b"some notes"  # blobs stay until the relay collects them


async def test_put_replaces_a_file_of_the_same_name(members: Members) -> None:
    space = await members.create()
    await space.files.put("a.txt", b"first")
    second = await space.files.put("a.txt", b"second", content_type="text/x-mine")
    assert space.files.list() == [second]
    assert second.content_type == "text/x-mine"
    assert await space.files.get("a.txt") == b"second"


async def test_files_survive_reopening(relay: RelayHandle, tmp_path: Path) -> None:
    identity = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, identity, data_dir=tmp_path / "a")
    ref = await space.files.put("kept.bin", b"kept across restarts")
    space_id = space.id
    await space.close()
    async with encspaces.connect(relay.url, identity, space_id, data_dir=tmp_path / "a") as again:
        assert again.files.list() == [ref]
        assert await again.files.get("kept.bin") == b"kept across restarts"


async def test_file_changed_during_upload_is_not_listed(members: Members, tmp_path: Path) -> None:
    space = await members.create()
    source = tmp_path / "growing.log"
    source.write_bytes(_data(2 * CHUNK_SIZE, 2))

    def change_it(done: int, total: int) -> None:
        if done == 0:  # after the hashing pass, before the encrypting one
            with source.open("r+b") as f:
                f.seek(CHUNK_SIZE + 5)
                f.write(b"changed")

    with pytest.raises(FileChangedError):
        await space.files.put("growing.log", source, progress=change_it)
    assert space.files.list() == []


async def test_waits_for_the_connection_then_uploads(relay: RelayHandle, members: Members) -> None:
    space = await members.create()
    await relay.stop()
    space.files.timeout = 0.3
    with pytest.raises(encspaces.errors.ConnectionFailedError):
        await space.files.put("x.bin", b"x")
    space.files.timeout = 20.0
    upload = asyncio.create_task(space.files.put("x.bin", os.urandom(3 * CHUNK_SIZE)))
    await asyncio.sleep(0.1)
    assert not upload.done()
    await relay.start()
    ref = await upload
    assert isinstance(ref, FileRef)
    assert space.files.list() == [ref]


async def test_largest_manifest_fits_in_an_entry(members: Members) -> None:
    """A 2 GiB file's manifest (MAX_CHUNKS hashes) travels as one entry; one chunk more is refused."""
    alice = await members.create()
    bob = await members.join(alice)
    small = await alice.files.put("seed.bin", b"x")
    huge = FileRef(name="huge.iso", size=MAX_CHUNKS * CHUNK_SIZE, content_type="application/x-iso9660-image",
                   file_id=small.file_id, key=small.key, chunk_size=CHUNK_SIZE,
                   chunks=tuple(crypto.hash_parts(b"test", i) for i in range(MAX_CHUNKS)), time_ms=0)
    alice.files._map()["huge.iso"] = huge.encode()
    await alice.sync()
    await bob.wait_for_seq(alice.seq)
    assert bob.files.ref("huge.iso") == huge
    alice.files.chunk_size = 1
    with pytest.raises(FileTooLargeError):
        await alice.files.put("too-big.bin", b"z" * (MAX_CHUNKS + 1))


async def test_memory_stays_flat(members: Members, tmp_path: Path) -> None:
    """A 24 MiB file goes up from a path and comes down to a path with a few chunks in memory at a time."""
    import tracemalloc

    space = await members.create()
    size = 96 * CHUNK_SIZE
    source = tmp_path / "big.bin"
    with source.open("wb") as f:
        for i in range(96):
            f.write(random.Random(i).randbytes(CHUNK_SIZE))
    tracemalloc.start()
    try:
        ref = await space.files.put("big.bin", source)
        _, up_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dest = await space.files.get(ref, tmp_path / "copy.bin")
        _, down_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ref.size == size and dest.stat().st_size == size
    # Client and relay run in this process: each holds a window of chunks, far below the file.
    assert up_peak < size // 4 and down_peak < size // 4, (up_peak, down_peak)
    with source.open("rb") as a, dest.open("rb") as b:
        while block := a.read(1 << 20):
            assert block == b.read(1 << 20)
