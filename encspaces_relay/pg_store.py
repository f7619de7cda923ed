"""The relay's log in PostgreSQL (asyncpg), shared by every relay process of a cluster.

Same rows as the SQLite store (encspaces_relay/store.py), plus the seq of each space's head in its
``spaces`` row. A commit locks that row (``SELECT head_seq ... FOR UPDATE``), checks that
it is the seq the batch extends, inserts the entries and moves the head, in one transaction:
two relays committing to one space at once are serialised by the row lock, and the second
finds the head moved and gets ``HeadMovedError`` with nothing stored. The primary key
(space, seq) would refuse a second entry at one seq even without the lock. Commits are
durable when acknowledged: every connection sets ``synchronous_commit=on``.

Any failure to reach the database (refused, reset, timed out, server shutting down) is a
``StoreUnavailableError``; the pool opens new connections on the next call, so the relay
recovers by itself once the database is back. See docs/cluster.md.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from encspaces.core.head import SignedHead
from encspaces.core.log_state import LogState
from encspaces.errors import HeadMovedError, SpaceExistsError, StoreError, StoreUnavailableError

from .head_signer import HeadSigner
from .store import KEEP_CHECKPOINTS, EntryRow, LoadedSpace, check_ends, decode_stored_head, encode_head, replay
from .tree import StoredNode, TreeBuilder, expected_nodes

if TYPE_CHECKING:
    from .pg_blobs import PgBlobStore

SCHEMA_VERSION = 1
_LOAD_CHUNK = 2048
_SCHEMA_LOCK = 0x656E63737061  # advisory lock id: relays starting together create the schema once
_INSERT_NODES = "INSERT INTO tree_nodes (space_id, node, hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"

SCHEMA = """
CREATE TABLE IF NOT EXISTS encspaces_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS spaces (
    space_id    bytea PRIMARY KEY,
    created_ms  bigint NOT NULL,
    head_seq    bigint NOT NULL,       -- the seq of the newest entry: what the next commit must extend
    signed_head bytea NOT NULL         -- the latest signed head, msgpack [signed_bytes, signature]
);
CREATE TABLE IF NOT EXISTS entries (
    space_id    bytea NOT NULL REFERENCES spaces (space_id),
    seq         bigint NOT NULL CHECK (seq >= 1),
    author      bytea NOT NULL,
    author_seq  bigint NOT NULL,
    digest      bytea NOT NULL,
    head        bytea NOT NULL,        -- h(seq), the chain hash after this entry
    raw         bytea NOT NULL,        -- the entry's exact bytes
    PRIMARY KEY (space_id, seq),
    UNIQUE (space_id, author, author_seq)
);
CREATE TABLE IF NOT EXISTS tree_nodes (  -- the Merkle tree's stored levels: node = level << 48 | index
    space_id    bytea NOT NULL,
    node        bigint NOT NULL,
    hash        bytea NOT NULL,
    PRIMARY KEY (space_id, node)
);
CREATE TABLE IF NOT EXISTS checkpoints (  -- checkpoints with witness cosignatures, the newest few per space
    space_id    bytea NOT NULL,
    size        bigint NOT NULL,
    note        bytea NOT NULL,
    PRIMARY KEY (space_id, size)
);
CREATE TABLE IF NOT EXISTS blobs (
    space_id    bytea NOT NULL,
    hash        bytea NOT NULL,
    size        integer NOT NULL,
    data        bytea NOT NULL,
    PRIMARY KEY (space_id, hash)
);
CREATE TABLE IF NOT EXISTS blob_usage (  -- bytes of blobs per space: the row a quota check locks
    space_id    bytea PRIMARY KEY,
    bytes       bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_total (  -- bytes of blobs of all spaces: one row
    id          integer PRIMARY KEY CHECK (id = 1),
    bytes       bigint NOT NULL
);
INSERT INTO blob_total VALUES (1, 0) ON CONFLICT DO NOTHING;
"""

# What "the database is unreachable" looks like through asyncpg: refused or reset sockets,
# a connection the pool had that the server closed, the server starting or shutting down.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


def redact(dsn: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class PgStore:
    """Every space of a cluster of relays in one PostgreSQL database."""

    def __init__(self, dsn: str, pool: asyncpg.Pool) -> None:
        self.dsn = dsn
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, max_connections: int = 8, connect_timeout: float = 10.0,
                   command_timeout: float = 30.0) -> PgStore:
        """Connect (creating the tables if the database has none yet)."""
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=max_connections, timeout=connect_timeout, command_timeout=command_timeout,
                server_settings={"synchronous_commit": "on", "application_name": "encspaces-relay"},
            )
        except UNAVAILABLE as exc:
            raise StoreUnavailableError(f"cannot reach PostgreSQL at {redact(dsn)}: {_describe(exc)}") from exc
        store = cls(dsn, pool)
        try:
            await store._create_schema()
        except BaseException:
            await pool.close()
            raise
        return store

    async def _create_schema(self) -> None:
        async with self.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(SCHEMA)
            version = await conn.fetchval("SELECT value FROM encspaces_meta WHERE key = 'schema_version'")
            if version is None:
                await conn.execute("INSERT INTO encspaces_meta VALUES ('schema_version', $1)", str(SCHEMA_VERSION))
            elif version != str(SCHEMA_VERSION):
                raise StoreError(f"relay database {self.where} has schema version {version}, "
                                 f"expected {SCHEMA_VERSION}")

    async def close(self) -> None:
        await self._pool.close()

    @property
    def shared(self) -> bool:
        return True

    @property
    def where(self) -> str:
        return redact(self.dsn)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; a lost database becomes StoreUnavailableError."""
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise StoreUnavailableError(f"PostgreSQL at {self.where} is unavailable: {_describe(exc)}") from exc

    def blob_store(self, root: Path, *, max_blob_size: int, quota: int, total_quota: int | None) -> PgBlobStore:
        from .pg_blobs import PgBlobStore

        return PgBlobStore(self, max_blob_size=max_blob_size, quota=quota, total_quota=total_quota)

    # --- writing ------------------------------------------------------------------------------

    async def create_space(self, space: bytes, genesis: EntryRow, signed_head: SignedHead) -> None:
        async with self.connection() as conn, conn.transaction():
            status = await conn.execute(
                "INSERT INTO spaces VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                space, int(time.time() * 1000), genesis.seq, encode_head(signed_head))
            if status != "INSERT 0 1":
                raise SpaceExistsError(f"{self.where} already holds space {space.hex()[:16]}…")
            await conn.execute("INSERT INTO entries VALUES ($1, $2, $3, $4, $5, $6, $7)", *genesis.values(space))

    async def append(
        self, space: bytes, rows: Sequence[EntryRow], ends: Sequence[int], signer: HeadSigner,
        nodes: Sequence[StoredNode] = (),
    ) -> list[SignedHead]:
        """The rows, the tree nodes they complete and their head in one transaction, if the
        stored head is still the one they extend; the heads signed after each of ``ends``.

        One transaction per space: the heads are signed with those other rooms ask for in the
        same pass of the loop (``HeadSigner.sign_soon``), before the transaction."""
        check_ends(rows, ends)
        signed = await signer.sign_soon([(space, rows[end - 1].seq, rows[end - 1].head) for end in ends])
        signed_head = signed[-1]
        extends = rows[0].seq - 1
        async with self.connection() as conn, conn.transaction():
            found = await conn.fetchval("SELECT head_seq FROM spaces WHERE space_id = $1 FOR UPDATE", space)
            if found is None:
                raise StoreError(f"{self.where} holds no space {space.hex()[:16]}…")
            if found != extends:
                raise HeadMovedError(space, extends, int(found))
            await conn.executemany("INSERT INTO entries VALUES ($1, $2, $3, $4, $5, $6, $7)",
                                   [row.values(space) for row in rows])
            if nodes:
                await conn.executemany(_INSERT_NODES, [(space, key, h) for key, h in nodes])
            await conn.execute("UPDATE spaces SET head_seq = $2, signed_head = $3 WHERE space_id = $1",
                               space, rows[-1].seq, encode_head(signed_head))
        return signed

    async def save_checkpoint(self, space: bytes, size: int, note: bytes) -> None:
        """Keep a cosigned checkpoint (replacing one of the same size); the oldest beyond
        ``KEEP_CHECKPOINTS`` go."""
        async with self.connection() as conn, conn.transaction():
            await conn.execute("INSERT INTO checkpoints VALUES ($1, $2, $3) ON CONFLICT (space_id, size) "
                               "DO UPDATE SET note = EXCLUDED.note", space, size, note)
            await conn.execute("DELETE FROM checkpoints WHERE space_id = $1 AND size < (SELECT MIN(size) FROM "
                               "(SELECT size FROM checkpoints WHERE space_id = $1 ORDER BY size DESC LIMIT $2) "
                               "AS kept)", space, KEEP_CHECKPOINTS)

    async def checkpoints(self, space: bytes) -> list[tuple[int, bytes]]:
        async with self.connection() as conn:
            rows = await conn.fetch("SELECT size, note FROM checkpoints WHERE space_id = $1 ORDER BY size", space)
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def tree_rows(
        self, space: bytes, seqs: Sequence[int], keys: Sequence[int]
    ) -> tuple[dict[int, bytes], dict[int, bytes]]:
        async with self.connection() as conn:
            leaves = await conn.fetch("SELECT seq, digest FROM entries WHERE space_id = $1 AND seq = ANY($2::bigint[])",
                                      space, list(seqs)) if seqs else []
            nodes = await conn.fetch("SELECT node, hash FROM tree_nodes WHERE space_id = $1 "
                                     "AND node = ANY($2::bigint[])", space, list(keys)) if keys else []
        return {int(r[0]): bytes(r[1]) for r in leaves}, {int(r[0]): bytes(r[1]) for r in nodes}

    async def _migrate_tree(self, space: bytes, builder: TreeBuilder) -> None:
        async with self.connection() as conn:
            found = int(await conn.fetchval("SELECT count(*) FROM tree_nodes WHERE space_id = $1", space))
            if found >= expected_nodes(builder.tree.size):
                return
            async with conn.transaction():
                await conn.executemany(_INSERT_NODES, [(space, key, h) for key, h in builder.nodes])

    # --- reading ------------------------------------------------------------------------------

    async def read_entries(self, space: bytes, first: int, last: int, max_bytes: int) -> list[bytes]:
        async with self.connection() as conn:
            sizes = await conn.fetch(
                "SELECT octet_length(raw) FROM entries WHERE space_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
                space, first, last)
            count = total = 0
            for (size,) in sizes:
                if count and total + size > max_bytes:
                    break
                count += 1
                total += size
            if count == 0:
                return []
            rows = await conn.fetch("SELECT raw FROM entries WHERE space_id = $1 AND seq BETWEEN $2 AND $3 "
                                    "ORDER BY seq", space, first, first + count - 1)
        return [bytes(row[0]) for row in rows]

    async def read_prefixes(self, space: bytes, first: int, last: int, length: int) -> list[tuple[bytes, int]]:
        async with self.connection() as conn:
            rows = await conn.fetch(
                "SELECT substring(raw from 1 for $4), octet_length(raw) FROM entries WHERE space_id = $1 "
                "AND seq BETWEEN $2 AND $3 ORDER BY seq", space, first, last, length)
        return [(bytes(row[0]), int(row[1])) for row in rows]

    async def find_entry(self, space: bytes, author: bytes, author_seq: int) -> tuple[int, bytes] | None:
        async with self.connection() as conn:
            row = await conn.fetchrow("SELECT seq, raw FROM entries WHERE space_id = $1 AND author = $2 "
                                      "AND author_seq = $3", space, author, author_seq)
        return None if row is None else (int(row[0]), bytes(row[1]))

    async def count_spaces(self) -> int:
        async with self.connection() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM spaces"))

    async def load_space(self, space: bytes) -> LoadedSpace | None:
        """The space rebuilt from its entries, checking the chain they claim (as the SQLite store does)."""
        where = f"relay database {self.where}, space {space.hex()[:16]}…"
        # One snapshot (repeatable read): the head row and the entries agree even while others commit.
        async with self.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            stored = await conn.fetchval("SELECT signed_head FROM spaces WHERE space_id = $1", space)
            if stored is None:
                return None
            signed_head = decode_stored_head(bytes(stored), where)
            state = LogState(space)
            builder = TreeBuilder()
            genesis = b""
            while True:  # in chunks by seq, so memory holds one chunk of raw rows at a time
                rows = await conn.fetch("SELECT seq, digest, head, raw FROM entries WHERE space_id = $1 AND seq > $2 "
                                        "ORDER BY seq LIMIT $3", space, state.seq, _LOAD_CHUNK)
                for seq, digest, head, raw in rows:
                    replay(state, int(seq), bytes(digest), bytes(head), bytes(raw), where)
                    builder.add(bytes(digest))
                    if seq == 1:
                        genesis = bytes(raw)
                if len(rows) < _LOAD_CHUNK:
                    break
        if state.seq == 0:
            raise StoreError(f"{where}: the space has no entries, not even its genesis")
        await self._migrate_tree(space, builder)
        stored = await self.checkpoints(space)
        return LoadedSpace(state, genesis, signed_head, builder.done(), stored[-1][1] if stored else None)

    async def tail(self, space: bytes, after_seq: int) -> tuple[list[EntryRow], SignedHead] | None:
        async with self.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            stored = await conn.fetchval("SELECT signed_head FROM spaces WHERE space_id = $1", space)
            if stored is None:
                return None
            rows = await conn.fetch("SELECT seq, author, author_seq, digest, head, raw FROM entries "
                                    "WHERE space_id = $1 AND seq > $2 ORDER BY seq", space, after_seq)
        signed_head = decode_stored_head(bytes(stored), f"relay database {self.where}, space {space.hex()[:16]}…")
        return [EntryRow(int(r[0]), bytes(r[1]), int(r[2]), bytes(r[3]), bytes(r[4]), bytes(r[5])) for r in rows], \
            signed_head

    async def heads(self, spaces: Sequence[bytes]) -> dict[bytes, int]:
        async with self.connection() as conn:
            rows = await conn.fetch("SELECT space_id, head_seq FROM spaces WHERE space_id = ANY($1::bytea[])",
                                    list(spaces))
        return {bytes(r[0]): int(r[1]) for r in rows}

    async def head_seq(self, space: bytes) -> int | None:
        async with self.connection() as conn:
            found = await conn.fetchval("SELECT head_seq FROM spaces WHERE space_id = $1", space)
        return None if found is None else int(found)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
