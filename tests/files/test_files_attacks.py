"""A relay that lies about blobs, and a writer whose manifest lies, over a real relay and socket.

The relay is the real RelayServer with its blob store wrapped (``LyingBlobs``): each test scripts
what it answers to a member's requests. Every attack must end in a precise error naming the
chunk, with neither the destination nor a temporary file left, and never in a hang.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pycrdt
import pytest

from encspaces import Space
from encspaces.core.encoding import pack, unpack
from encspaces.core.log_state import LogState
from encspaces.core.messages import BlobAck, BlobData, BlobGet, BlobPut, BlobReply
from encspaces.errors import ConnectionFailedError, FileError, FileIntegrityError
from encspaces.files import CHUNK_SIZE, MANIFEST_ROOT, FileRef
from encspaces_relay.blobs import BlobStore
from encspaces_relay.peer import PeerGoneError

from .conftest import Members, RelayHandle

SIZE = 3 * CHUNK_SIZE + 99
DATA = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)

Script = Callable[[BlobStore, LogState, bytes, "BlobPut | BlobGet"], Awaitable[BlobReply]]


class LyingBlobs:
    """The relay's blob store, answering gets as ``script`` says (uploads stay honest)."""

    def __init__(self, store: BlobStore, script: Script) -> None:
        self.store = store
        self.script = script
        self.gets = 0

    async def answer(self, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        if isinstance(request, BlobPut):
            return await self.store.answer(state, member, request)
        self.gets += 1
        return await self.script(self.store, state, member, request)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def _lie(relay: RelayHandle, script: Script) -> LyingBlobs:
    assert relay.server is not None
    honest = relay.server.blobs
    assert isinstance(honest, BlobStore)
    lying = LyingBlobs(honest, script)
    relay.server.blobs = lying  # type: ignore[assignment]
    return lying


async def _fails_cleanly(space: Space, file: str | FileRef, tmp_path: Path,
                         error: type[FileError] | type[ConnectionFailedError]) -> str:
    """``get`` raises ``error`` with bytes and to a path; an existing destination is untouched."""
    with pytest.raises(error):
        await space.files.get(file)
    folder = tmp_path / "dl"
    folder.mkdir(exist_ok=True)
    dest = folder / "victim.bin"
    dest.write_bytes(b"what was there")
    with pytest.raises(error) as caught:
        await space.files.get(file, dest)
    assert dest.read_bytes() == b"what was there"
    assert [p.name for p in folder.iterdir()] == ["victim.bin"]  # no temporary file left
    return str(caught.value)


async def test_relay_serves_another_files_chunk_under_its_own_name(
    relay: RelayHandle, members: Members, tmp_path: Path,
) -> None:
    """A genuine blob of another file, sent under the name of the one asked for (its hash in the answer)."""
    space = await members.create()
    ref = await space.files.put("victim.bin", DATA)
    other = await space.files.put("other.bin", b"o" * (CHUNK_SIZE + 5))

    async def script(store: BlobStore, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        reply = await store.answer(state, member, request)
        if request.hash == ref.chunks[1]:
            genuine = await store.answer(state, member, BlobGet(request.id, other.chunks[0]))
            assert isinstance(genuine, BlobData)
            return BlobData(request.id, request.hash, genuine.data)
        return reply

    _lie(relay, script)
    assert "chunk 1" in await _fails_cleanly(space, "victim.bin", tmp_path, FileIntegrityError)


async def test_relay_answers_with_another_blob_correctly_named(
    relay: RelayHandle, members: Members, tmp_path: Path,
) -> None:
    """The answer names (and is) another stored blob: caught before its bytes are even hashed."""
    space = await members.create()
    ref = await space.files.put("victim.bin", DATA)

    async def script(store: BlobStore, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        swapped = ref.chunks[0] if request.hash == ref.chunks[2] else request.hash
        return await store.answer(state, member, BlobGet(request.id, swapped))

    _lie(relay, script)
    message = await _fails_cleanly(space, "victim.bin", tmp_path, FileIntegrityError)
    assert "chunk 2" in message and "another blob" in message


async def test_relay_replays_an_earlier_answer(relay: RelayHandle, members: Members, tmp_path: Path) -> None:
    """Each request answered with the previous request's blob (relabelled with the new id)."""
    space = await members.create()
    await space.files.put("victim.bin", DATA)
    previous: list[BlobData] = []

    async def script(store: BlobStore, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        reply = await store.answer(state, member, request)
        assert isinstance(reply, BlobData)
        if previous:
            stale = previous[-1]
            previous.append(reply)
            return BlobData(request.id, stale.hash, stale.data)
        previous.append(reply)
        return reply

    _lie(relay, script)
    assert "another blob" in await _fails_cleanly(space, "victim.bin", tmp_path, FileIntegrityError)


async def test_relay_answers_a_download_with_an_upload_ack(
    relay: RelayHandle, members: Members, tmp_path: Path,
) -> None:
    space = await members.create()
    await space.files.put("victim.bin", DATA)

    async def script(store: BlobStore, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        return BlobAck(request.id, request.hash)

    _lie(relay, script)
    message = await _fails_cleanly(space, "victim.bin", tmp_path, FileError)
    assert "chunk 0" in message and "BlobAck" in message


async def test_relay_withholds_an_answer(relay: RelayHandle, members: Members, tmp_path: Path) -> None:
    """The relay never answers chunk 2: the transfer gives up after ``files.timeout`` (no hang)."""
    space = await members.create()
    ref = await space.files.put("victim.bin", DATA)
    space.files.timeout = 0.5
    never = asyncio.Event()
    async def script(store: BlobStore, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        if request.hash == ref.chunks[2]:
            await never.wait()
        return await store.answer(state, member, request)

    _lie(relay, script)
    try:
        message = await _fails_cleanly(space, "victim.bin", tmp_path, ConnectionFailedError)
    finally:
        never.set()  # lets the relay's session end with the test
    # (the second attempt's chunk 0: the relay answers a connection's requests in order)
    assert "did not answer the request for chunk" in message


async def test_download_interrupted_and_resumed(relay: RelayHandle, members: Members, tmp_path: Path) -> None:
    """The relay drops the connection at chunk 2, twice: the download resumes and is exact."""
    space = await members.create()
    ref = await space.files.put("victim.bin", DATA)
    drops = [2]

    async def script(store: BlobStore, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        if request.hash == ref.chunks[2] and drops[0]:
            drops[0] -= 1
            raise PeerGoneError()
        return await store.answer(state, member, request)

    lying = _lie(relay, script)
    dest = tmp_path / "out.bin"
    assert await space.files.get("victim.bin", dest) == dest
    assert dest.read_bytes() == DATA
    assert drops == [0] and lying.gets >= len(ref.chunks) + 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


async def _post_manifest(space: Space, ref: FileRef, **lies: object) -> None:
    """Write ``ref``'s manifest with some fields replaced, as a lying writer would."""
    fields = unpack(ref.encode())
    fields.update(lies)
    space.doc.get(MANIFEST_ROOT, type=pycrdt.Map)[ref.name] = pack(fields)
    await space.sync()


async def test_manifest_listing_one_chunk_twice(members: Members, tmp_path: Path) -> None:
    """A writer lists chunk 0 again in place of chunk 1 (the hashes match what the relay serves)."""
    writer_space = await members.create()
    reader = await members.join(writer_space, "reader")
    ref = await writer_space.files.put("victim.bin", DATA)
    lying = dataclasses.replace(ref, chunks=(ref.chunks[0], ref.chunks[0], *ref.chunks[2:]))
    await _post_manifest(writer_space, lying)
    await reader.wait_for_seq(writer_space.seq)
    message = await _fails_cleanly(reader, "victim.bin", tmp_path, FileIntegrityError)
    assert "chunk 1" in message and "does not decrypt" in message


@pytest.mark.parametrize("lies", [
    {"size": -1}, {"size": 1 << 62}, {"size": SIZE + CHUNK_SIZE}, {"chunk": 0}, {"chunk": -CHUNK_SIZE},
    {"chunk": 1 << 40}, {"chunks": b"\x00" * 31}, {"key": b"k" * 32}, {"time": -1}, {"v": 2}, {"name": "other"},
])
async def test_manifest_with_lying_numbers_is_not_listed(members: Members, lies: dict[str, object]) -> None:
    writer_space = await members.create()
    reader = await members.join(writer_space, "reader")
    ref = await writer_space.files.put("victim.bin", DATA)
    await _post_manifest(writer_space, ref, **lies)
    await reader.wait_for_seq(writer_space.seq)
    assert reader.files.list() == []
    with pytest.raises(FileIntegrityError, match="malformed"):
        reader.files.ref("victim.bin")


async def test_manifest_whose_last_chunk_is_longer_than_its_size_says(members: Members, tmp_path: Path) -> None:
    """A writer's manifest says one byte less than the chunks hold (the count still fits the size)."""
    writer_space = await members.create()
    reader = await members.join(writer_space, "reader")
    ref = await writer_space.files.put("victim.bin", DATA)
    await _post_manifest(writer_space, ref, size=SIZE - 1)
    await reader.wait_for_seq(writer_space.seq)
    lying = reader.files.ref("victim.bin")
    assert lying.size == SIZE - 1  # it parses (the chunk count fits): only the download can tell
    message = await _fails_cleanly(reader, lying, tmp_path, FileIntegrityError)
    assert "chunk 3" in message and "99 bytes, the manifest says 98" in message


async def test_relay_answers_with_an_oversized_blob(relay: RelayHandle, members: Members, tmp_path: Path) -> None:
    """An answer past the message limit: the client stops reading it and fails, it does not buffer it."""
    space = await members.create()
    await space.files.put("victim.bin", DATA)

    async def script(store: BlobStore, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        return BlobData(request.id, request.hash, b"\x00" * (3 << 20))

    _lie(relay, script)
    with pytest.raises(ConnectionFailedError, match="dropped 11 times"):
        await space.files.get("victim.bin")  # each answer closes the connection at its header (1009)
