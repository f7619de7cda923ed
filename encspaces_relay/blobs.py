"""Encrypted file chunks ("blobs"): stored per space on disk, named by the hash of their bytes.

The relay cannot read a blob (it is a chunk encrypted by a member, see encspaces/files.py)
and does not know which file it belongs to; it only checks that the bytes hash to the name
the member claims, so one name always means one content, and stores each distinct blob once
per space: ``DATA/blobs/<space hex>/<hash hex>``, written to a temp file in the same folder,
fsynced, then renamed, so a blob on disk is always complete.

Only connections admitted to a space reach this code (the session routes blob requests only
after the handshake), and it looks up blobs in that space's folder alone: a member of one
space cannot read another space's blobs even when it knows their hashes. Uploading needs a
role that may write. Three limits keep members from filling the disk: a largest blob, a
quota of stored bytes per space, and one for all spaces together (anyone may create a space).
Nothing is ever deleted here: the relay cannot tell which blobs a manifest (encrypted) still
names, see docs/PROTOCOL.md, "Encrypted files".
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from encspaces.core import crypto
from encspaces.core.codes import BlobCode
from encspaces.core.identity import member_id
from encspaces.core.log_state import LogState
from encspaces.core.messages import BlobAck, BlobData, BlobGet, BlobMissing, BlobPut, BlobRefused, BlobReply
from encspaces.core.private_file import make_private_dir

log = logging.getLogger(__name__)

BLOBS_DIR = "blobs"
_TMP_PREFIX = ".tmp-"
# What the smallest blob costs the relay: a file of one byte still takes a block (and an inode).
# Counting blobs by their bytes alone let a member store quota / 41 blobs of 41 bytes (the
# smallest a client makes: nonce, tag and one byte), some 26 million files and 100 GiB of
# blocks under the default 1 GiB quota.
BLOB_MIN_CHARGE = 4096


def charge(size: int) -> int:
    """The bytes a blob of ``size`` counts against the quotas: at least ``BLOB_MIN_CHARGE``."""
    return max(size, BLOB_MIN_CHARGE)


class BlobStore:
    """Every space's blobs under ``root``, with the limits of the relay's config."""

    def __init__(self, root: Path, *, max_blob_size: int, quota: int, total_quota: int | None = None) -> None:
        self.root = root
        self.max_blob_size = max_blob_size
        self.quota = quota
        self.total_quota = total_quota  # None: no limit across spaces
        self._usage: dict[bytes, int] = {}  # bytes stored per space, once scanned
        self._locks: dict[bytes, asyncio.Lock] = {}
        # Bytes stored by all spaces, scanned before the first write; a write reserves its size
        # here before it starts, so concurrent writes to different spaces cannot pass the quota.
        self._total: int | None = None
        self._total_lock = asyncio.Lock()

    def folder(self, space: bytes) -> Path:
        return self.root / space.hex()

    def path(self, space: bytes, digest: bytes) -> Path:
        return self.folder(space) / digest.hex()

    async def answer(self, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply:
        """The reply to one request of ``member``, a connection admitted to ``state``'s space."""
        role = state.role_of(member)
        if role is None:
            return _refused(request, BlobCode.NOT_A_MEMBER, f"{member_id(member)[:12]} is not a member of this space")
        if isinstance(request, BlobGet):
            return await self.get(state.space, request)
        if not role.can_write:
            return _refused(request, BlobCode.READ_ONLY, f"a {role.value} may not upload files")
        return await self.put(state.space, request)

    async def get(self, space: bytes, request: BlobGet) -> BlobData | BlobMissing:
        try:
            data = await asyncio.to_thread(self.path(space, request.hash).read_bytes)
        except FileNotFoundError:
            return BlobMissing(request.id, request.hash)
        except OSError as exc:
            log.error("cannot read blob %s of space %s: %s", request.hash.hex()[:16], member_id(space)[:12], exc)
            return BlobMissing(request.id, request.hash)
        return BlobData(request.id, request.hash, data)

    def refuse_malformed(self, request: BlobPut) -> BlobRefused | None:
        """The refusal of a blob too large, or not named by the hash of its bytes (any backend)."""
        size = len(request.data)
        if size > self.max_blob_size:
            return _refused(request, BlobCode.TOO_LARGE,
                            f"a blob of {size} bytes is over the limit of {self.max_blob_size}")
        if crypto.blob_hash(request.data) != request.hash:
            return _refused(request, BlobCode.BAD_HASH, "the blob's bytes do not hash to the name it was sent under")
        return None

    async def put(self, space: bytes, request: BlobPut) -> BlobAck | BlobRefused:
        refused = self.refuse_malformed(request)
        if refused is not None:
            return refused
        size = charge(len(request.data))
        await self.total_usage()  # scanned before any write: see _total
        lock = self._locks.setdefault(space, asyncio.Lock())
        async with lock:  # one writer per space: the quota is exact and one hash is written once
            path = self.path(space, request.hash)
            used = await self._used(space)
            if await asyncio.to_thread(path.exists):
                return BlobAck(request.id, request.hash)  # same content, stored once
            if used + size > self.quota:
                return _refused(request, BlobCode.QUOTA, f"storing {size} more bytes would pass this space's quota of "
                                                         f"{self.quota} bytes ({used} used)")
            total = self._total
            assert total is not None  # total_usage() set it
            if self.total_quota is not None and total + size > self.total_quota:
                log.warning("blob quota of the relay reached: %d of %d bytes used", total, self.total_quota)
                return _refused(request, BlobCode.QUOTA, f"storing {size} more bytes would pass the relay's quota of "
                                                         f"{self.total_quota} bytes for all spaces: ask its operator")
            self._total = total + size  # reserved, no await since the check
            try:
                await asyncio.to_thread(_write_atomically, path, request.data)
            except OSError as exc:
                self._total -= size
                log.error("cannot write blob %s of space %s: %s", request.hash.hex()[:16], member_id(space)[:12], exc)
                return _refused(request, BlobCode.INTERNAL, "the relay could not store this blob")
            self._usage[space] = used + size
        return BlobAck(request.id, request.hash)

    async def total_usage(self) -> int:
        """Bytes of blobs stored for all spaces (scanned once, then kept up to date)."""
        if self._total is None:
            async with self._total_lock:
                if self._total is None:
                    self._total = await asyncio.to_thread(_scan_all, self.root)
        return self._total

    def known_total(self) -> int:
        """Bytes stored by all spaces if counted yet (``total_usage`` counts them), else 0."""
        return self._total or 0

    async def usage(self, space: bytes) -> int:
        """Bytes of blobs stored for ``space``."""
        lock = self._locks.setdefault(space, asyncio.Lock())
        async with lock:
            return await self._used(space)

    async def _used(self, space: bytes) -> int:
        used = self._usage.get(space)
        if used is None:
            used = self._usage[space] = await asyncio.to_thread(_scan, self.folder(space))
        return used


def _refused(request: BlobPut | BlobGet, code: BlobCode, message: str) -> BlobRefused:
    return BlobRefused(request.id, request.hash, code, message)


def _scan(folder: Path) -> int:
    """Bytes stored in a space's folder; temp files a crash left behind are removed."""
    total = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(_TMP_PREFIX):
            Path(entry.path).unlink(missing_ok=True)
        elif entry.is_file(follow_symlinks=False):
            total += charge(entry.stat(follow_symlinks=False).st_size)
    return total


def _scan_all(root: Path) -> int:
    """Bytes stored in every space's folder (temp files are not counted)."""
    try:
        folders = [entry.path for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return 0
    total = 0
    for folder in folders:
        for entry in os.scandir(folder):
            if not entry.name.startswith(_TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                total += charge(entry.stat(follow_symlinks=False).st_size)
    return total


def _write_atomically(path: Path, data: bytes) -> None:
    folder = path.parent
    make_private_dir(folder)
    tmp = folder / f"{_TMP_PREFIX}{path.name}-{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
