"""Encrypted files in a space: chunks stored at the relay, manifests in the space's document.

``space.files.put(name, data_or_path)`` cuts a file into chunks of ``CHUNK_SIZE`` bytes,
encrypts each with XChaCha20-Poly1305 under a key of that file and uploads it as a *blob*,
which the relay stores under the hash of its bytes. Only once the relay has acknowledged
every chunk is the **manifest** (name, size, content type, key, chunk hashes) written to a
reserved map of the document, so it travels as an ordinary encrypted, signed, verified data
entry, and the file is listed. ``get`` fetches the chunks the manifest names and checks each
one (its hash, then its decryption under the file key at its position) before a byte of it is
written; the destination appears, complete, only at the end.

Keys are **convergent within a space** (docs/PROTOCOL.md, "Encrypted files"): the file key is
derived from a secret of the space's epoch key and the hash of the file's content, and each
chunk's nonce from the key, the chunk's index and its content (SIV style). The same content
uploaded twice in one space and epoch therefore yields the same blobs, which the relay stores
once; the price is that members (and only members) can tell two uploads of one content apart
from two different ones, and the relay sees equal blob hashes.

Memory stays flat: files are read, hashed, encrypted, sent, received, checked and written a
chunk at a time, with at most ``WINDOW`` requests in flight per transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import mimetypes
import os
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias, overload

import pycrdt

from . import faults
from .core import crypto
from .core.encoding import as_bytes, as_int, as_map, as_str, pack, unpack
from .core.encoding import field as msg_field
from .core.messages import MAX_BLOB_REQUEST_ID, BlobAck, BlobData, BlobGet, BlobMissing, BlobPut, BlobRefused, BlobReply
from .core.session import ClientSession
from .errors import (
    ArgumentTypeError,
    BlobMissingError,
    BlobRefusedError,
    ConnectionFailedError,
    FileArgumentError,
    FileChangedError,
    FileError,
    FileIntegrityError,
    FileSourceNotFoundError,
    FileTooLargeError,
    ProtocolError,
    UnknownFileError,
)

if TYPE_CHECKING:
    from .host import SpaceHost

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 << 10
# A manifest holds 32 bytes per chunk and must fit in one entry with room to spare:
# 8192 chunks is a 256 KiB manifest and a largest file of 2 GiB.
MAX_CHUNKS = 8192
MAX_CHUNK_SIZE = 1 << 20
WINDOW = 4  # chunk requests in flight per transfer
DEFAULT_TIMEOUT = 30.0  # seconds to wait for a live connection, and for each answer
MAX_RECONNECTS = 10  # connection losses one transfer survives (it resumes where it was)
MANIFEST_ROOT = "encspaces:files"  # a document root no shared object can be named as
MANIFEST_VERSION = 1
MAX_NAME = 1024
MAX_CONTENT_TYPE = 255
TAG_SIZE = 16
_READ_BLOCK = 1 << 20

Progress: TypeAlias = Callable[[int, int], object]
"""Called as ``progress(bytes_done, bytes_total)``: once at 0, then after every chunk."""
# What ``put`` reads at once: bytes in memory or a path; an async stream is spooled to a path first.
LocalSource: TypeAlias = bytes | bytearray | memoryview | str | os.PathLike[str]
Source: TypeAlias = LocalSource | AsyncIterable[bytes]
SPOOL_PREFIX = ".upload-"  # spool files of uploads from a stream, in the space's folder (see _spool)


@dataclass(frozen=True)
class FileRef:
    """A file listed in a space: what its manifest says. Pass it to ``get`` as is."""

    name: str
    size: int
    content_type: str
    file_id: bytes = field(repr=False)
    key: bytes = field(repr=False)
    chunk_size: int
    chunks: tuple[bytes, ...] = field(repr=False)
    time_ms: int  # the uploader's clock, unchecked

    @property
    def id(self) -> str:
        return self.file_id.hex()

    def chunk_length(self, index: int) -> int:
        """Plaintext bytes of chunk ``index`` (every chunk is full but the last)."""
        if index < len(self.chunks) - 1:
            return self.chunk_size
        return self.size - self.chunk_size * (len(self.chunks) - 1)

    def encode(self) -> bytes:
        return pack({"v": MANIFEST_VERSION, "name": self.name, "size": self.size, "type": self.content_type,
                     "id": self.file_id, "key": self.key, "chunk": self.chunk_size,
                     "chunks": b"".join(self.chunks), "time": self.time_ms})

    @classmethod
    def decode(cls, data: bytes) -> FileRef:
        """Parse and check a manifest; ProtocolError names what is wrong."""
        m = as_map(unpack(data, max_size=MAX_CHUNKS * crypto.HASH_SIZE + 8192, what="manifest"), "manifest")
        version = as_int(msg_field(m, "v", "manifest"), "manifest version")
        if version != MANIFEST_VERSION:
            raise ProtocolError(f"manifest version {version}, expected {MANIFEST_VERSION}")
        size = as_int(msg_field(m, "size", "manifest"), "manifest size")
        chunk_size = as_int(msg_field(m, "chunk", "manifest"), "manifest chunk size", 1, MAX_CHUNK_SIZE)
        joined = as_bytes(msg_field(m, "chunks", "manifest"), "manifest chunks",
                          max_size=MAX_CHUNKS * crypto.HASH_SIZE)
        key = as_bytes(msg_field(m, "key", "manifest"), "manifest key", crypto.KEY_SIZE)
        ref = cls(
            name=check_name(as_str(msg_field(m, "name", "manifest"), "manifest name", MAX_NAME)),
            size=size,
            content_type=as_str(msg_field(m, "type", "manifest"), "manifest content type", MAX_CONTENT_TYPE),
            file_id=as_bytes(msg_field(m, "id", "manifest"), "manifest file id", crypto.HASH_SIZE),
            key=key,
            chunk_size=chunk_size,
            chunks=tuple(joined[i:i + crypto.HASH_SIZE] for i in range(0, len(joined), crypto.HASH_SIZE)),
            time_ms=as_int(msg_field(m, "time", "manifest"), "manifest time"),
        )
        if len(joined) % crypto.HASH_SIZE or len(ref.chunks) != chunk_count(size, chunk_size):
            raise ProtocolError(f"manifest: {len(joined)} bytes of chunk hashes do not fit a file of {size} "
                                f"bytes in chunks of {chunk_size}")
        if ref.file_id != file_id_of(key):
            raise ProtocolError("manifest: the file id is not the one its key gives")
        return ref


# --- the key scheme (docs/PROTOCOL.md, "Encrypted files") ----------------------------------


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of a file: at least one (an empty file is one empty chunk)."""
    return max(1, -(-size // chunk_size))


def convergence_secret(space: bytes, epoch: int, epoch_key: bytes) -> bytes:
    return crypto.hash_parts(crypto.CTX_FILE_SECRET, space, epoch, epoch_key)


def file_key_of(secret: bytes, content_hash: bytes, size: int, chunk_size: int) -> bytes:
    # The chunk size is bound in: the same content cut otherwise must never share a key.
    return crypto.hash_parts(crypto.CTX_FILE_KEY, secret, content_hash, size, chunk_size)


def file_id_of(key: bytes) -> bytes:
    return crypto.hash_parts(crypto.CTX_FILE_ID, key)


def chunk_associated_data(file_id: bytes, index: int, count: int) -> bytes:
    return crypto.hash_parts(crypto.CTX_FILE_CHUNK, file_id, index, count)


def seal_chunk(key: bytes, file_id: bytes, index: int, count: int, plaintext: bytes) -> bytes:
    """``nonce ‖ ciphertext``: the nonce is derived from the key, index and content (SIV style)."""
    nonce = crypto.hash_parts(crypto.CTX_FILE_NONCE, key, index, plaintext)[: crypto.NONCE_SIZE]
    return nonce + crypto.aead_seal(key, nonce, plaintext, chunk_associated_data(file_id, index, count))


def open_chunk(ref: FileRef, index: int, blob: bytes) -> bytes:
    """The plaintext of chunk ``index``, or FileIntegrityError saying what is wrong with it."""
    where = f"chunk {index} of {ref.name!r}"
    if crypto.blob_hash(blob) != ref.chunks[index]:
        raise FileIntegrityError(f"{where}: the relay served bytes that do not hash to the manifest's "
                                 f"{ref.chunks[index].hex()[:16]}… (swapped, truncated or altered)")
    nonce, ciphertext = blob[: crypto.NONCE_SIZE], blob[crypto.NONCE_SIZE:]
    plaintext = None
    if len(nonce) == crypto.NONCE_SIZE and len(ciphertext) >= TAG_SIZE:
        plaintext = crypto.aead_open(ref.key, nonce, ciphertext,
                                     chunk_associated_data(ref.file_id, index, len(ref.chunks)))
    if plaintext is None:
        raise FileIntegrityError(f"{where}: does not decrypt under the manifest's key at this position "
                                 "(the uploader's manifest and chunks disagree)")
    if len(plaintext) != ref.chunk_length(index):
        raise FileIntegrityError(f"{where}: {len(plaintext)} bytes, the manifest says {ref.chunk_length(index)}")
    return plaintext


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise ArgumentTypeError(f"a file name must be a str, not {type(name).__name__}")
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise FileArgumentError(f"a file name must be 1 to {MAX_NAME} characters without NUL: {name[:40]!r}")
    return name


# --- sources ---------------------------------------------------------------------------------


def _open_source(data: LocalSource) -> _Source:
    """``_Source(data)``, with a missing path as a FileError (that is also a FileNotFoundError)."""
    try:
        return _Source(data)
    except FileNotFoundError as exc:
        raise FileSourceNotFoundError(exc.errno, f"no file to upload at {exc.filename}", exc.filename) from None


class _Source:
    """What ``put`` reads: bytes in memory, or a file read a chunk at a time."""

    def __init__(self, data: LocalSource) -> None:
        self._data: memoryview | None = None
        self._file: IO[bytes] | None = None
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._data = memoryview(data).cast("B")
            self.size = len(self._data)
        else:
            self._file = open(data, "rb")  # noqa: SIM115 - closed by close()
            self.size = os.fstat(self._file.fileno()).st_size

    def read(self, offset: int, length: int) -> bytes:
        if self._data is not None:
            return bytes(self._data[offset:offset + length])
        assert self._file is not None
        self._file.seek(offset)
        return self._file.read(length)

    def content_hash(self) -> tuple[bytes, int]:
        """The content hash and the size, in one streaming pass."""
        h = crypto.stream_hasher(crypto.CTX_FILE_CONTENT)
        if self._data is not None:
            h.update(self._data)
            return h.digest(), self.size
        assert self._file is not None
        self._file.seek(0)
        size = 0
        while block := self._file.read(_READ_BLOCK):
            h.update(block)
            size += len(block)
        return h.digest(), size

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# --- the files of a space ---------------------------------------------------------------------


class _ConnectionLost(Exception):
    """The connection a request went out on dropped before its answer: send it again."""


@dataclass
class _Request:
    index: int
    length: int  # plaintext bytes of the chunk, for progress
    message: BlobPut | BlobGet
    future: asyncio.Future[BlobReply]


class SpaceFiles:
    """``space.files``: encrypted files of one space. See the module docstring."""

    def __init__(self, host: SpaceHost) -> None:
        self._host = host  # the space, as its parts see it (encspaces/host.py)
        self.timeout = DEFAULT_TIMEOUT
        self.chunk_size = CHUNK_SIZE
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[BlobReply]] = {}
        self._changed = asyncio.Event()  # the connection went live or was lost
        _remove_leftover_spools(host.spool_dir)

    # --- public API ------------------------------------------------------------------------

    def list(self) -> list[FileRef]:
        """Every file listed in the space, by name. Manifests that do not parse are skipped."""
        refs = []
        for name, value in self._manifests().items():
            ref = self._parse(name, value)
            if ref is not None:
                refs.append(ref)
        return sorted(refs, key=lambda r: r.name)

    def ref(self, name: str) -> FileRef:
        """The listed file ``name``; UnknownFileError when there is none (or it does not parse)."""
        value = self._manifests().get(check_name(name))
        if value is None:
            raise UnknownFileError(f"no file {name!r} in this space")
        ref = self._parse(name, value)
        if ref is None:
            raise FileIntegrityError(f"the manifest of {name!r} is malformed")
        return ref

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._manifests()

    async def put(self, name: str, data: Source, *, content_type: str | None = None,
                  progress: Progress | None = None) -> FileRef:
        """Upload ``data`` (bytes, a path to read, or an async byte stream) as ``name``; returns once it is listed.

        A path is read twice, a chunk at a time: once to derive the key from its content, once
        to encrypt; a file that changes in between raises FileChangedError and is not listed.
        A path where no file is raises FileSourceNotFoundError (a FileError and a FileNotFoundError).
        An existing file of that name is replaced.

        An ``AsyncIterable[bytes]`` (an upload being received, say) is first spooled to a
        temporary file, because the key and every chunk's nonce derive from the hash of the
        whole content, which is known only at the stream's end, and a stream cannot be read
        twice; hashing in a first pass would need the sender to send it twice. The spool is
        created 0600 (``tempfile.mkstemp``) in the space's own folder of the data dir (0700,
        beside the local store that holds the space's keys), written a piece at a time, so
        memory stays bounded, and removed on every way out: success, an error of the stream or
        of the upload, a stream longer than a file may be (FileTooLargeError, as soon as it
        is), and cancellation; a spool a crash left is removed when the space is opened again.
        Nothing is listed unless the whole upload succeeded. ``progress``
        reports the upload of the encrypted chunks, after the stream ended (when the total is
        known).
        """
        space = self._host
        space.check_writable()
        check_name(name)
        if content_type is None:
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if len(content_type) > MAX_CONTENT_TYPE:
            raise FileArgumentError(f"a content type is at most {MAX_CONTENT_TYPE} characters")
        if isinstance(data, AsyncIterable):
            spool = await self._spool(name, data)
            try:
                return await self.put(name, spool, content_type=content_type, progress=progress)
            finally:
                spool.unlink(missing_ok=True)
        chunk_size = self.chunk_size
        source = await asyncio.to_thread(_open_source, data)
        try:
            _check_size(name, source.size, chunk_size)
            content_hash, size = await asyncio.to_thread(source.content_hash)
            count = _check_size(name, size, chunk_size)
            key = file_key_of(self._secret(), content_hash, size, chunk_size)
            file_id = file_id_of(key)
            hashes: list[bytes] = []
            rehash = crypto.stream_hasher(crypto.CTX_FILE_CONTENT)

            def seal(index: int) -> bytes:
                plaintext = source.read(index * chunk_size, chunk_size)
                rehash.update(plaintext)
                return seal_chunk(key, file_id, index, count, plaintext)

            async def produce(index: int) -> tuple[BlobPut, int]:
                blob = await asyncio.to_thread(seal, index)
                digest = crypto.blob_hash(blob)
                hashes.append(digest)
                return BlobPut(0, digest, blob), min(chunk_size, size - index * chunk_size)

            async def consume(request: _Request, reply: BlobReply) -> None:
                if isinstance(reply, BlobRefused):
                    raise BlobRefusedError(reply.code, f"chunk {request.index} of {name!r}: {reply.message}")
                if not isinstance(reply, BlobAck):
                    raise FileError(f"the relay answered the upload of chunk {request.index} with a "
                                    f"{type(reply).__name__}")

            await self._transfer(count, produce, consume, size, progress)
            if rehash.digest() != content_hash or len(hashes) != count:
                raise FileChangedError(f"{name!r} changed while it was being uploaded; try again")
        finally:
            source.close()
        ref = FileRef(name=name, size=size, content_type=content_type, file_id=file_id, key=key,
                      chunk_size=chunk_size, chunks=tuple(hashes), time_ms=int(time.time() * 1000))
        space.check_writable()
        self._map()[name] = ref.encode()
        await space.sync()
        return ref

    @overload
    async def get(self, file: str | FileRef, dest: None = None, *, progress: Progress | None = None) -> bytes: ...

    @overload
    async def get(self, file: str | FileRef, dest: str | os.PathLike[str], *,
                  progress: Progress | None = None) -> Path: ...

    async def get(self, file: str | FileRef, dest: str | os.PathLike[str] | None = None, *,
                  progress: Progress | None = None) -> bytes | Path:
        """Download and check a file: its bytes, or the path it was written to.

        ``dest`` is a file path, or a folder to save it in under its name's last component;
        missing parent folders are created.
        The file is written beside ``dest`` under a temporary name (``.NAME.part``), fsynced and
        renamed only once every chunk checked out; on any error or cancellation the temporary
        file is removed and ``dest`` is untouched, and one that a crashed download left behind
        is taken over by the next download to ``dest`` (``_open_part``). Without ``dest`` the
        whole file is returned in memory.
        """
        self._host.raise_if_failed()
        ref = file if isinstance(file, FileRef) else self.ref(file)
        if dest is None:
            out = bytearray()

            async def keep(request: _Request, reply: BlobReply) -> None:
                out.extend(await asyncio.to_thread(self._check_reply, ref, request, reply))

            await self._transfer(len(ref.chunks), self._getter(ref), keep, ref.size, progress)
            return bytes(out)
        target = _destination(Path(dest), ref.name)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)  # "downloads/x.pdf" works
        handle, tmp = await asyncio.to_thread(_open_part, target)
        try:
            async def write(request: _Request, reply: BlobReply) -> None:
                def check_and_write() -> None:
                    handle.write(self._check_reply(ref, request, reply))

                await asyncio.to_thread(check_and_write)
                if faults.ARMED:
                    faults.reached("downloaded")

            await self._transfer(len(ref.chunks), self._getter(ref), write, ref.size, progress)
            await asyncio.to_thread(_finish, handle, tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # before its lock goes: no download can have taken it over yet
            handle.close()
            raise
        return target

    async def delete(self, name: str) -> None:
        """Unlist a file; returns once that is in the verified log.

        Its chunks stay at the relay (which cannot tell which chunks a manifest still names);
        anyone who kept the FileRef can still fetch them.
        """
        space = self._host
        space.check_writable()
        manifests = self._map()
        if check_name(name) not in manifests:
            raise UnknownFileError(f"no file {name!r} in this space")
        del manifests[name]
        await space.sync()

    async def _spool(self, name: str, stream: AsyncIterable[bytes]) -> Path:
        """Write a stream to a new 0600 file in the space's folder; the caller removes it (see ``put``)."""
        limit = MAX_CHUNKS * self.chunk_size
        fd, raw_path = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=".spool", dir=self._host.spool_dir)
        path = Path(raw_path)
        handle = os.fdopen(fd, "wb")
        try:
            size = 0
            async for piece in stream:
                if not isinstance(piece, (bytes, bytearray, memoryview)):
                    raise TypeError(f"an upload stream yields bytes, not {type(piece).__name__}")
                size += len(piece)
                if size > limit:
                    raise FileTooLargeError(f"{name!r} is over {limit} bytes; a file is at most {limit} bytes")
                write = asyncio.ensure_future(asyncio.to_thread(handle.write, piece))
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    await asyncio.wait([write])  # the thread still holds the file: let it finish first
                    raise
            await asyncio.to_thread(handle.flush)
        except BaseException:
            handle.close()
            path.unlink(missing_ok=True)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            raise
        handle.close()
        return path

    # --- hooks called by the space --------------------------------------------------------

    def received(self, reply: BlobReply) -> None:
        future = self._waiting.pop(reply.id, None)
        if future is None:
            log.debug("answer to blob request %d that nobody waits for (timed out?)", reply.id)
        elif not future.done():
            future.set_result(reply)

    def became_live(self) -> None:
        self._changed.set()

    def went_offline(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(_ConnectionLost())
                future.exception()  # retrieved: a transfer may have given up on it already
        self._changed.set()

    # --- internals -------------------------------------------------------------------------

    def _map(self) -> pycrdt.Map[Any]:
        root: pycrdt.Map[Any] = self._host.document.doc.get(MANIFEST_ROOT, type=pycrdt.Map)
        return root

    def _manifests(self) -> dict[str, Any]:
        return dict(self._map().items())

    @staticmethod
    def _parse(name: str, value: Any) -> FileRef | None:
        try:
            if not isinstance(value, (bytes, bytearray)):
                raise ProtocolError(f"expected bytes, found {type(value).__name__}")
            ref = FileRef.decode(bytes(value))
            if ref.name != name:
                raise ProtocolError(f"the manifest names {ref.name!r}")
        except (ProtocolError, FileError) as exc:
            log.warning("manifest of file %r skipped: %s", name, exc)
            return None
        return ref

    def _secret(self) -> bytes:
        verifier = self._host.verifier
        epoch = verifier.state.epoch
        key = verifier.epoch_keys.get(epoch)
        if key is None:
            raise FileError(f"this device holds no key for the space's current epoch {epoch} yet")
        return convergence_secret(self._host.space_bytes, epoch, key)

    @staticmethod
    def _getter(ref: FileRef) -> Callable[[int], Any]:
        async def produce(index: int) -> tuple[BlobGet, int]:
            return BlobGet(0, ref.chunks[index]), ref.chunk_length(index)

        return produce

    @staticmethod
    def _check_reply(ref: FileRef, request: _Request, reply: BlobReply) -> bytes:
        index = request.index
        if isinstance(reply, BlobMissing):
            raise BlobMissingError(f"the relay holds no chunk {index} of {ref.name!r} "
                                   f"(blob {ref.chunks[index].hex()[:16]}…)")
        if isinstance(reply, BlobRefused):
            raise BlobRefusedError(reply.code, f"chunk {index} of {ref.name!r}: {reply.message}")
        if not isinstance(reply, BlobData):
            raise FileError(f"the relay answered the request for chunk {index} with a {type(reply).__name__}")
        if reply.hash != ref.chunks[index]:
            raise FileIntegrityError(f"chunk {index} of {ref.name!r}: the relay answered with another blob")
        return open_chunk(ref, index, reply.data)

    async def _transfer(self, count: int, produce: Callable[[int], Any],
                        consume: Callable[[_Request, BlobReply], Any], total: int,
                        progress: Progress | None) -> None:
        """Send requests 0..count-1 with at most WINDOW in flight; consume answers in order.

        A lost connection sends the requests in flight again once it is back.
        """
        window: deque[_Request] = deque()
        done = reconnects = 0
        if progress is not None:
            progress(0, total)
        try:
            index = 0
            while index < count or window:
                while index < count and len(window) < WINDOW:
                    message, length = await produce(index)
                    window.append(await self._send(index, length, message))
                    index += 1
                request = window[0]
                try:
                    reply = await self._answer(request)
                except _ConnectionLost:
                    reconnects += 1
                    if reconnects > MAX_RECONNECTS:
                        raise ConnectionFailedError(f"the connection to the relay dropped {reconnects} times "
                                                    "during one transfer") from None
                    for i, pending in enumerate(window):
                        future = pending.future
                        if not future.done() or future.cancelled() or future.exception() is not None:
                            window[i] = await self._send(pending.index, pending.length, pending.message)
                    continue
                window.popleft()
                await consume(request, reply)
                done += request.length
                if progress is not None:
                    progress(min(done, total), total)
        finally:
            for request in window:
                self._waiting.pop(request.message.id, None)
                request.future.cancel()

    async def _send(self, index: int, length: int, message: BlobPut | BlobGet) -> _Request:
        """Send a request on the live connection (waiting for one); its answer comes in the future."""
        session = await self._live()
        request_id = (next(self._ids) - 1) % MAX_BLOB_REQUEST_ID + 1
        if isinstance(message, BlobPut):
            message = BlobPut(request_id, message.hash, message.data)
        else:
            message = BlobGet(request_id, message.hash)
        future: asyncio.Future[BlobReply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._host.send(session.blob_request(message))
        return _Request(index, length, message, future)

    async def _answer(self, request: _Request) -> BlobReply:
        try:
            async with asyncio.timeout(self.timeout):  # (not wait_for: see _live)
                return await asyncio.shield(request.future)
        except TimeoutError:
            self._host.raise_if_failed()
            raise ConnectionFailedError(f"the relay did not answer the request for chunk {request.index} "
                                        f"within {self.timeout:g} s") from None

    async def _live(self) -> ClientSession:
        """The live session, waiting up to ``timeout`` for one."""
        space = self._host
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            space.raise_if_failed()
            session = space.live_session()
            if session is not None:
                return session
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ConnectionFailedError(f"not connected to the relay at {space.url} within {self.timeout:g} s")
            self._changed.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
            # arrives as the event is set (the connection's state changes at every reconnect
            # attempt), and a cancelled upload then waited out its whole timeout (seen in CI).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()


def _check_size(name: str, size: int, chunk_size: int) -> int:
    """The number of chunks, or FileTooLargeError when a manifest cannot describe them."""
    count = chunk_count(size, chunk_size)
    if count > MAX_CHUNKS:
        raise FileTooLargeError(f"{name!r} is {size} bytes; a file is at most {MAX_CHUNKS * chunk_size} bytes")
    return count


def _remove_leftover_spools(folder: Path) -> None:
    """Delete the spool files a crash left in a space's folder (see ``put``).

    ``put`` removes its spool on every way out but a crash (a killed process, a power loss),
    and each holds the plaintext of an upload, up to the largest file: without this, every
    crash during an upload from a stream left one more for ever. The space is open (its
    store's lock is held), so no other process is spooling into this folder.
    """
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(SPOOL_PREFIX) and entry.name.endswith(".spool"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                log.info("removed %s, left by an upload that did not finish", entry.name)


def _destination(dest: Path, name: str) -> Path:
    if dest.is_dir():
        base = Path(name.replace("\\", "/")).name
        if base in ("", ".", ".."):
            raise FileError(f"cannot save {name!r} in a folder under its own name: give a file path")
        return dest / base
    return dest


def _open_part(target: Path) -> tuple[IO[bytes], Path]:
    """The temporary file a download to ``target`` is written to, and its path.

    It is ``.NAME.part`` beside ``target``, under an exclusive ``flock`` for as long as the
    download runs: renamed to ``target`` or removed before the lock goes. A download that
    crashed (SIGKILL, power cut) left its file with no lock on it, as the kernel releases the
    lock when a process ends, however it ends: the next download to ``target`` takes that file
    over and empties it, so a crash leaves at most one ``.part`` per destination, and only until
    the next download of it (before, each download had a random name, and a crashed one's file
    stayed for good). While another download to ``target`` runs (its lock is held), when the
    file is not ours to open, or on a file system that takes no locks, this download writes to
    a name of its own, as every download did before.
    """
    part = target.parent / f".{target.name}.part"
    while True:
        try:
            fd, created = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            try:
                fd, created = os.open(part, os.O_RDWR), False
            except FileNotFoundError:
                continue  # gone meanwhile (its download finished or failed): create it
            except PermissionError:
                break
        except PermissionError:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another download to ``target`` is running: its file stays its own
            os.close(fd)
            break
        except OSError:  # a file system without locks: nothing can tell a crashed download's file
            if created:
                part.unlink(missing_ok=True)
            os.close(fd)
            break
        except BaseException:
            os.close(fd)
            raise
        try:
            named = os.path.samestat(os.fstat(fd), os.stat(part))
        except FileNotFoundError:
            named = False
        if named:
            os.ftruncate(fd, 0)
            return os.fdopen(fd, "wb"), part
        os.close(fd)  # the download that held it finished (renamed it) or failed (removed it) meanwhile
    own = target.parent / f".{target.name}.{os.urandom(4).hex()}.part"
    return open(own, "xb"), own


def _finish(handle: IO[bytes], tmp: Path, target: Path) -> None:
    """Make the complete file durable, then give it its name (atomically), while its lock is
    held: a download starting now cannot take it over (``_open_part``) once it is complete."""
    handle.flush()
    os.fsync(handle.fileno())
    os.replace(tmp, target)
    handle.close()
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


__all__ = ["CHUNK_SIZE", "FileRef", "SpaceFiles"]
