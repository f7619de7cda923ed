"""Blobs (encrypted file chunks) in PostgreSQL, beside the log of a relay cluster.

The bytes are in a ``bytea`` column, not in a blob directory: every relay of a cluster must
serve every space's blobs, and a directory would need a shared file system as well as the
database; in the database, a blob is one row written in one transaction with its quota
accounting, and it is backed up and replicated with the log. Chunks are at most
``max_blob_size`` (512 KiB by default), well within what ``bytea`` handles (docs/cluster.md).

The rules are those of ``encspaces_relay.blobs.BlobStore`` (whose ``answer`` is reused): the hash
names the content, a space only reads its own blobs, and quotas per space and for all spaces
hold across the cluster, because the usage counters are rows locked by the write that adds
to them (the total's one row serialises blob writes of the whole cluster: they are rare).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from encspaces.core.codes import BlobCode
from encspaces.core.identity import member_id
from encspaces.core.messages import BlobAck, BlobData, BlobGet, BlobMissing, BlobPut, BlobRefused
from encspaces.errors import StoreUnavailableError

from .blobs import BlobStore, _refused, charge

if TYPE_CHECKING:
    from .pg_store import PgStore

log = logging.getLogger(__name__)


class PgBlobStore(BlobStore):
    """Every space's blobs in the cluster's database, with the limits of the relay's config."""

    def __init__(self, store: PgStore, *, max_blob_size: int, quota: int, total_quota: int | None = None) -> None:
        super().__init__(Path("/nonexistent"), max_blob_size=max_blob_size, quota=quota, total_quota=total_quota)
        self._store = store

    async def get(self, space: bytes, request: BlobGet) -> BlobData | BlobMissing:
        try:
            async with self._store.connection() as conn:
                data = await conn.fetchval("SELECT data FROM blobs WHERE space_id = $1 AND hash = $2",
                                           space, request.hash)
        except StoreUnavailableError as exc:
            log.error("cannot read blob %s of space %s: %s", request.hash.hex()[:16], member_id(space)[:12], exc)
            return BlobMissing(request.id, request.hash)
        if data is None:
            return BlobMissing(request.id, request.hash)
        return BlobData(request.id, request.hash, bytes(data))

    async def put(self, space: bytes, request: BlobPut) -> BlobAck | BlobRefused:
        refused = self.refuse_malformed(request)
        if refused is not None:
            return refused
        size = charge(len(request.data))  # what it counts against the quotas (blobs.py)
        try:
            async with self._store.connection() as conn, conn.transaction():
                await conn.execute("INSERT INTO blob_usage VALUES ($1, 0) ON CONFLICT DO NOTHING", space)
                used = int(await conn.fetchval("SELECT bytes FROM blob_usage WHERE space_id = $1 FOR UPDATE", space))
                if await conn.fetchval("SELECT 1 FROM blobs WHERE space_id = $1 AND hash = $2", space, request.hash):
                    return BlobAck(request.id, request.hash)  # same content, stored once
                if used + size > self.quota:
                    return _refused(request, BlobCode.QUOTA,
                                    f"storing {size} more bytes would pass this space's quota of "
                                    f"{self.quota} bytes ({used} used)")
                total = await conn.fetchval(
                    "UPDATE blob_total SET bytes = bytes + $1 WHERE id = 1 AND ($2::bigint IS NULL OR "
                    "bytes + $1 <= $2) RETURNING bytes", size, self.total_quota)
                if total is None:
                    log.warning("blob quota of the cluster reached (%s bytes)", self.total_quota)
                    return _refused(request, BlobCode.QUOTA,
                                    f"storing {size} more bytes would pass the relay's quota of "
                                    f"{self.total_quota} bytes for all spaces: ask its operator")
                self._total = int(total)  # for metrics: the cluster's count as this commit left it
                await conn.execute("INSERT INTO blobs VALUES ($1, $2, $3, $4)", space, request.hash,
                                   len(request.data), request.data)
                await conn.execute("UPDATE blob_usage SET bytes = bytes + $2 WHERE space_id = $1", space, size)
        except StoreUnavailableError as exc:
            log.error("cannot write blob %s of space %s: %s", request.hash.hex()[:16], member_id(space)[:12], exc)
            return _refused(request, BlobCode.INTERNAL, "the relay could not store this blob")
        return BlobAck(request.id, request.hash)

    async def total_usage(self) -> int:
        async with self._store.connection() as conn:
            self._total = int(await conn.fetchval("SELECT bytes FROM blob_total WHERE id = 1"))
        return self._total

    async def usage(self, space: bytes) -> int:
        async with self._store.connection() as conn:
            used = await conn.fetchval("SELECT bytes FROM blob_usage WHERE space_id = $1", space)
        return 0 if used is None else int(used)
