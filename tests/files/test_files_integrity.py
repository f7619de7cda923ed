"""What the relay can do to a file's chunks is caught: altered, truncated, swapped, missing, reordered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from encspaces import Space
from encspaces.errors import BlobMissingError, FileError, FileIntegrityError
from encspaces.files import CHUNK_SIZE, FileRef

from .conftest import Members, RelayHandle

SIZE = 3 * CHUNK_SIZE + 99


async def _uploaded(members: Members) -> tuple[Space, FileRef]:
    space = await members.create()
    data = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)
    return space, await space.files.put("victim.bin", data)


def _blob(relay: RelayHandle, space: Space, digest: bytes) -> Path:
    return relay.data_dir / "blobs" / space.space_bytes.hex() / digest.hex()


async def _fails_cleanly(space: Space, tmp_path: Path, error: type[FileError]) -> FileError:
    """The download raises ``error``, with bytes or to a path, and leaves no file behind."""
    with pytest.raises(error):
        await space.files.get("victim.bin")
    dest = tmp_path / "dl" / "victim.bin"
    dest.parent.mkdir(exist_ok=True)
    with pytest.raises(error) as caught:
        await space.files.get("victim.bin", dest)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a temp file
    return caught.value


async def test_altered_chunk(relay: RelayHandle, members: Members, tmp_path: Path) -> None:
    space, ref = await _uploaded(members)
    path = _blob(relay, space, ref.chunks[2])
    blob = bytearray(path.read_bytes())
    blob[100] ^= 1
    path.write_bytes(bytes(blob))
    error = await _fails_cleanly(space, tmp_path, FileIntegrityError)
    assert "chunk 2" in str(error) and "hash" in str(error)


async def test_truncated_chunk(relay: RelayHandle, members: Members, tmp_path: Path) -> None:
    space, ref = await _uploaded(members)
    path = _blob(relay, space, ref.chunks[1])
    path.write_bytes(path.read_bytes()[:1000])
    await _fails_cleanly(space, tmp_path, FileIntegrityError)


async def test_swapped_chunks(relay: RelayHandle, members: Members, tmp_path: Path) -> None:
    space, ref = await _uploaded(members)
    first, second = _blob(relay, space, ref.chunks[0]), _blob(relay, space, ref.chunks[1])
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    error = await _fails_cleanly(space, tmp_path, FileIntegrityError)
    assert "chunk 0" in str(error)


async def test_missing_chunk(relay: RelayHandle, members: Members, tmp_path: Path) -> None:
    space, ref = await _uploaded(members)
    _blob(relay, space, ref.chunks[-1]).unlink()
    error = await _fails_cleanly(space, tmp_path, BlobMissingError)
    assert f"chunk {len(ref.chunks) - 1}" in str(error)


async def test_an_existing_destination_is_untouched_on_failure(
    relay: RelayHandle, members: Members, tmp_path: Path
) -> None:
    space, ref = await _uploaded(members)
    _blob(relay, space, ref.chunks[1]).unlink()
    dest = tmp_path / "keep.bin"
    dest.write_bytes(b"what was there")
    with pytest.raises(BlobMissingError):
        await space.files.get(ref, dest)
    assert dest.read_bytes() == b"what was there"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


async def test_chunks_bound_to_their_position(members: Members) -> None:
    """A manifest listing genuine chunks out of order (a member's doing): hashes match, decryption does not."""
    space, ref = await _uploaded(members)
    reordered = dataclasses.replace(ref, chunks=(ref.chunks[1], ref.chunks[0], *ref.chunks[2:]))
    with pytest.raises(FileIntegrityError, match="does not decrypt"):
        await space.files.get(reordered)
    # Nor can chunks of one file be passed off as another's, even with the key.
    other = await space.files.put("other.bin", b"y" * (CHUNK_SIZE + 1))
    mixed = dataclasses.replace(ref, chunks=(other.chunks[0], *ref.chunks[1:]))
    with pytest.raises(FileIntegrityError, match="does not decrypt"):
        await space.files.get(mixed)


async def test_a_shorter_manifest_is_caught(members: Members) -> None:
    space, ref = await _uploaded(members)
    short = dataclasses.replace(ref, chunks=ref.chunks[:-1], size=ref.size - ref.chunk_length(len(ref.chunks) - 1))
    with pytest.raises(FileIntegrityError, match="does not decrypt"):
        await space.files.get(short)  # the chunk count is bound into every chunk


async def test_a_malformed_manifest_is_skipped(members: Members) -> None:
    import pycrdt

    space, ref = await _uploaded(members)
    manifests = space.doc.get("encspaces:files", type=pycrdt.Map)
    manifests["junk"] = b"not a manifest"
    manifests["renamed"] = ref.encode()  # names another file
    await space.sync()
    assert [r.name for r in space.files.list()] == ["victim.bin"]
    with pytest.raises(FileIntegrityError):
        space.files.ref("junk")
