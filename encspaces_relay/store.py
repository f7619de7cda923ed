"""The relay's durable log: SQLite in WAL mode, fsynced at every commit (synchronous=FULL).

An acknowledged entry must survive a crash, so acks wait for the commit; a commit costs an
fsync, so a room hands over all the entries it accepted meanwhile and they are written in
one transaction (shared/COSTS.md: 2k rows/s one by one, 77k rows/s in batches of 100).
Each row keeps the chain head h(seq) so a head for any seq can be signed again without
replaying the log, and loading a space checks that chain with hashing only: signatures were
verified before the entries were stored.

Two connections: a writer (one transaction at a time, across all spaces) and a reader for
catch-ups and loads, which in WAL mode never waits for the writer. The writer is a plain
sqlite3 connection on a thread of its own, and a whole transaction (begin, inserts, head,
commit) runs there in one call: one thread hop per group commit instead of one per statement
(each hop costs the event loop a wake-up, and the commit path waits for every one). Appends are group-committed
across spaces too: every room's batch that arrives while a transaction runs goes into the
next one, so a thousand quiet spaces share fsyncs the way one busy space's writers do, and one
signature: the group commit signs all its heads together just before the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import aiosqlite

from encspaces.core.encoding import pack, unpack
from encspaces.core.entry import Entry
from encspaces.core.head import SignedHead, next_head
from encspaces.core.log_state import LogState
from encspaces.core.private_file import ensure_private_file
from encspaces.errors import EncspacesError, SpaceExistsError, StoreError

from .blobs import BlobStore
from .head_signer import HeadRequest, HeadSigner
from .tree import RelayTree, StoredNode, TreeBuilder, expected_nodes

DB_FILE = "relay.sqlite3"
SCHEMA_VERSION = 1
_LOAD_CHUNK = 2048

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spaces (
    space_id    BLOB PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    signed_head BLOB NOT NULL          -- the latest signed head, msgpack [signed_bytes, signature]
);
CREATE TABLE IF NOT EXISTS entries (
    space_id    BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    author      BLOB NOT NULL,
    author_seq  INTEGER NOT NULL,
    digest      BLOB NOT NULL,
    head        BLOB NOT NULL,         -- h(seq), the chain hash after this entry
    raw         BLOB NOT NULL,         -- the entry's exact bytes
    PRIMARY KEY (space_id, seq),
    UNIQUE (space_id, author, author_seq)
);
-- The Merkle tree's stored levels (encspaces_relay/tree.py): node = level << 48 | index.
CREATE TABLE IF NOT EXISTS tree_nodes (
    space_id    BLOB NOT NULL,
    node        INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    PRIMARY KEY (space_id, node)
) WITHOUT ROWID;
-- Checkpoints with witness cosignatures (encspaces_relay/checkpoints.py), the newest few per space.
CREATE TABLE IF NOT EXISTS checkpoints (
    space_id    BLOB NOT NULL,
    size        INTEGER NOT NULL,
    note        BLOB NOT NULL,         -- the C2SP note: relay signature and cosignatures
    PRIMARY KEY (space_id, size)
) WITHOUT ROWID;
"""
# Cosigned checkpoints kept per space (older ones are deleted as new ones are stored).
KEEP_CHECKPOINTS = 64
_INSERT_NODES = "INSERT OR IGNORE INTO tree_nodes (space_id, node, hash) VALUES (?, ?, ?)"


@dataclass(frozen=True)
class EntryRow:
    """One sequenced entry as stored."""

    seq: int
    author: bytes
    author_seq: int
    digest: bytes
    head: bytes
    raw: bytes

    def values(self, space: bytes) -> tuple[bytes, int, bytes, int, bytes, bytes, bytes]:
        return (space, self.seq, self.author, self.author_seq, self.digest, self.head, self.raw)


@dataclass(frozen=True)
class LoadedSpace:
    """A space rebuilt from the store: its rules state, genesis bytes and latest signed head,
    the frontier of its Merkle tree, and its newest stored (cosigned) checkpoint."""

    state: LogState
    genesis: bytes
    signed_head: SignedHead
    tree: RelayTree | None = None
    checkpoint: bytes | None = None


@dataclass(frozen=True)
class _Append:
    """One room's rows waiting for the next group commit."""

    space: bytes
    rows: Sequence[EntryRow]
    ends: Sequence[int]  # a head is signed after each of these many rows
    signer: HeadSigner
    nodes: Sequence[StoredNode]
    done: asyncio.Future[list[SignedHead]]


def check_ends(rows: Sequence[EntryRow], ends: Sequence[int]) -> None:
    """``ends`` must cut ``rows`` into frames: ascending row counts, the last ``len(rows)``."""
    if not rows or not ends or ends[0] < 1 or ends[-1] != len(rows) or any(a >= b for a, b in pairwise(ends)):
        raise ValueError(f"ends {list(ends)} do not cut {len(rows)} rows into frames")


def _sign_heads(batch: Sequence[_Append]) -> list[list[SignedHead]]:
    """Each append's heads, signed together: one signature for the whole group commit (per
    signer: a relay has one)."""
    requests: dict[HeadSigner, list[HeadRequest]] = {}
    for a in batch:
        requests.setdefault(a.signer, []).extend((a.space, a.rows[end - 1].seq, a.rows[end - 1].head)
                                                 for end in a.ends)
    signed = {signer: iter(signer.sign_now(asked)) for signer, asked in requests.items()}
    return [[next(signed[a.signer]) for _ in a.ends] for a in batch]


class Store:
    """All of the relay's spaces in one SQLite file."""

    def __init__(
        self, path: Path, writer: sqlite3.Connection, write_thread: ThreadPoolExecutor, reader: aiosqlite.Connection
    ) -> None:
        self.path = path
        self._writer = writer  # used on write_thread only
        self._write_thread = write_thread
        self._reader = reader
        self._write_lock = asyncio.Lock()  # one transaction at a time on the writer connection
        # Appends waiting for the next group commit, and the task that writes them (owned here,
        # awaited by close).
        self._appends: list[_Append] = []
        # Cosigned checkpoints waiting to be stored: they ride in the next group commit's
        # transaction (no fsync of their own for a commit to wait behind).
        self._saves: list[tuple[bytes, int, bytes, asyncio.Future[None]]] = []
        self._appender: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, data_dir: Path) -> Store:
        path = data_dir / DB_FILE
        ensure_private_file(path)  # 0600, and so its WAL and SHM files
        thread = ThreadPoolExecutor(1, thread_name_prefix="relay store writer")
        loop = asyncio.get_running_loop()
        try:
            writer = await loop.run_in_executor(thread, _open_writer, path)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        try:
            reader = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            await loop.run_in_executor(thread, writer.close)
            thread.shutdown(wait=False)
            raise
        await reader.execute("PRAGMA query_only=1")
        await reader.execute("PRAGMA busy_timeout=5000")
        return cls(path, writer, thread, reader)

    async def close(self) -> None:
        if self._appender is not None:
            await asyncio.gather(self._appender, return_exceptions=True)
        async with self._write_lock:
            await self._reader.close()
            await asyncio.get_running_loop().run_in_executor(self._write_thread, self._writer.close)
            self._write_thread.shutdown(wait=False)

    @property
    def shared(self) -> bool:
        return False  # one relay process per file: nobody else commits

    @property
    def where(self) -> str:
        return str(self.path)

    def blob_store(self, root: Path, *, max_blob_size: int, quota: int, total_quota: int | None) -> BlobStore:
        return BlobStore(root, max_blob_size=max_blob_size, quota=quota, total_quota=total_quota)

    # --- writing ------------------------------------------------------------------------------

    async def create_space(self, space: bytes, genesis: EntryRow, signed_head: SignedHead) -> None:
        """Store a new space and its genesis entry atomically."""
        async with self._write_lock:
            async with self._reader.execute("SELECT 1 FROM spaces WHERE space_id = ?", (space,)) as cursor:
                if await cursor.fetchone() is not None:
                    raise SpaceExistsError(f"{self.path} already holds space {space.hex()[:16]}…")
            await self._transaction(
                ("INSERT INTO spaces (space_id, created_ms, signed_head) VALUES (?, ?, ?)",
                 [(space, int(time.time() * 1000), encode_head(signed_head))]),
                ("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", [genesis.values(space)]),
            )

    async def append(
        self, space: bytes, rows: Sequence[EntryRow], ends: Sequence[int], signer: HeadSigner,
        nodes: Sequence[StoredNode] = (),
    ) -> list[SignedHead]:
        """Group commit: the batch's entries, the tree nodes they complete and the head covering
        them, durable when this returns; the heads signed after each of ``ends`` (row counts).

        Written in one transaction with whatever other spaces appended meanwhile (one fsync for
        all), whose heads are signed with these under one signature just before it; if that
        transaction fails, every append in it raises.
        """
        check_ends(rows, ends)
        done: asyncio.Future[list[SignedHead]] = asyncio.get_running_loop().create_future()
        self._appends.append(_Append(space, rows, ends, signer, nodes, done))
        self._wake_appender()
        # Not shielded: a shield's callback costs the commit one more pass of a busy event loop
        # (bench/README.md, "Admission control"). A caller cancelled meanwhile cancels ``done``,
        # which the group commit then skips; its rows are written all the same.
        return await done

    @property
    def waiting(self) -> int:
        """Appends queued for the next group commit."""
        return len(self._appends)

    def _wake_appender(self) -> None:
        if self._appender is None or self._appender.done():
            self._appender = asyncio.create_task(self._append_queued(), name="relay store group commit")

    async def _append_queued(self) -> None:
        while self._appends or self._saves:
            # The batch is taken once the writer is free: whatever arrived meanwhile goes in it.
            async with self._write_lock:
                batch, self._appends = self._appends, []
                saves, self._saves = self._saves, []
                waiting: list[asyncio.Future[None]] = [done for *_, done in saves]
                try:
                    signed = _sign_heads(batch)
                    await self._transaction(
                        ("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [row.values(a.space) for a in batch for row in a.rows]),
                        (_INSERT_NODES, [(a.space, key, h) for a in batch for key, h in a.nodes]),
                        ("UPDATE spaces SET signed_head = ? WHERE space_id = ?",
                         [(encode_head(heads[-1]), a.space) for a, heads in zip(batch, signed, strict=True)]),
                        ("INSERT OR REPLACE INTO checkpoints (space_id, size, note) VALUES (?, ?, ?)",
                         [(space, size, note) for space, size, note, _ in saves]),
                        ("DELETE FROM checkpoints WHERE space_id = ? AND size < (SELECT MIN(size) FROM (SELECT size "
                         "FROM checkpoints WHERE space_id = ? ORDER BY size DESC LIMIT ?))",
                         [(space, space, KEEP_CHECKPOINTS) for space, _, _, _ in saves]),
                    )
                except BaseException as exc:
                    failure = exc if isinstance(exc, Exception) else StoreError("the store was closed")
                    for future in [a.done for a in batch] + waiting:
                        if not future.done():
                            future.set_exception(failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
            for a, heads in zip(batch, signed, strict=True):
                if not a.done.done():
                    a.done.set_result(heads)
            for future in waiting:
                if not future.done():
                    future.set_result(None)

    async def save_checkpoint(self, space: bytes, size: int, note: bytes) -> None:
        """Keep a cosigned checkpoint (replacing one of the same size); the oldest beyond
        ``KEEP_CHECKPOINTS`` go. Written in the next group commit's transaction, so it never
        adds a transaction (and an fsync) for a commit to wait behind."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._saves.append((space, size, note, done))
        self._wake_appender()
        await asyncio.shield(done)

    async def checkpoints(self, space: bytes) -> list[tuple[int, bytes]]:
        """The stored checkpoints of a space, (size, note), oldest first."""
        rows = await self._reader.execute_fetchall(
            "SELECT size, note FROM checkpoints WHERE space_id = ? ORDER BY size", (space,))
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def tree_rows(
        self, space: bytes, seqs: Sequence[int], keys: Sequence[int]
    ) -> tuple[dict[int, bytes], dict[int, bytes]]:
        """Leaf digests by seq and stored tree nodes by packed key (those that exist)."""
        digests: dict[int, bytes] = {}
        nodes: dict[int, bytes] = {}
        if seqs:
            marks = ",".join("?" * len(seqs))
            for seq, digest in await self._reader.execute_fetchall(
                f"SELECT seq, digest FROM entries WHERE space_id = ? AND seq IN ({marks})", (space, *seqs)
            ):
                digests[int(seq)] = bytes(digest)
        if keys:
            marks = ",".join("?" * len(keys))
            for key, h in await self._reader.execute_fetchall(
                f"SELECT node, hash FROM tree_nodes WHERE space_id = ? AND node IN ({marks})", (space, *keys)
            ):
                nodes[int(key)] = bytes(h)
        return digests, nodes

    async def _migrate_tree(self, space: bytes, builder: TreeBuilder) -> None:
        """A space stored before the tree (or by a relay that did not keep it): its nodes, once."""
        found = await self._reader.execute_fetchall("SELECT count(*) FROM tree_nodes WHERE space_id = ?", (space,))
        if int(next(iter(found))[0]) >= expected_nodes(builder.tree.size):
            return
        async with self._write_lock:
            await self._transaction((_INSERT_NODES, [(space, key, h) for key, h in builder.nodes]))

    async def _transaction(self, *statements: tuple[str, Sequence[tuple[object, ...]]]) -> None:
        """One transaction, run whole on the writer's thread (callers hold ``_write_lock``)."""
        await asyncio.get_running_loop().run_in_executor(self._write_thread, _transaction, self._writer, statements)

    # --- reading ------------------------------------------------------------------------------

    async def read_prefixes(self, space: bytes, first: int, last: int, length: int) -> list[tuple[bytes, int]]:
        rows = await self._reader.execute_fetchall(
            "SELECT substr(raw, 1, ?), length(raw) FROM entries WHERE space_id = ? AND seq BETWEEN ? AND ? "
            "ORDER BY seq",
            (length, space, first, last),
        )
        return [(bytes(row[0]), int(row[1])) for row in rows]

    async def read_entries(self, space: bytes, first: int, last: int, max_bytes: int) -> list[bytes]:
        """The raw entries ``first..`` in log order: up to ``last``, stopping before ``max_bytes``.

        At least one entry when ``first <= last`` exists. The byte bound keeps a catch-up's
        memory at about one frame however large the entries are: sizes are read first
        (SQLite answers ``length`` of a blob from the record header), then only the bytes
        that fit.
        """
        # Every read is one statement run to its end in one call (execute_fetchall): see load_space.
        sizes = [int(row[0]) for row in await self._reader.execute_fetchall(
            "SELECT length(raw) FROM entries WHERE space_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (space, first, last),
        )]
        count = total = 0
        for size in sizes:
            if count and total + size > max_bytes:
                break
            count += 1
            total += size
        if count == 0:
            return []
        rows = await self._reader.execute_fetchall(
            "SELECT raw FROM entries WHERE space_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (space, first, first + count - 1),
        )
        return [bytes(row[0]) for row in rows]

    async def find_entry(self, space: bytes, author: bytes, author_seq: int) -> tuple[int, bytes] | None:
        """The seq and raw bytes of an author's entry, to answer a resubmission."""
        rows = list(await self._reader.execute_fetchall(
            "SELECT seq, raw FROM entries WHERE space_id = ? AND author = ? AND author_seq = ?",
            (space, author, author_seq),
        ))
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    async def count_spaces(self) -> int:
        """How many spaces are stored: the health check's proof that the store answers."""
        async with self._reader.execute("SELECT count(*) FROM spaces") as cursor:
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def load_space(self, space: bytes) -> LoadedSpace | None:
        """Rebuild a space's LogState from its stored entries, or None if the relay has no such space.

        Checks that the entries form the chain their stored heads claim (contiguous seqs,
        digests, heads), so a corrupt or tampered file is an error, not a silently wrong log.
        """
        found = list(await self._reader.execute_fetchall("SELECT signed_head FROM spaces WHERE space_id = ?", (space,)))
        if not found:
            return None
        row = found[0]
        where = f"relay store {self.path}, space {space.hex()[:16]}…"
        try:
            signed_head = SignedHead.decode(unpack(bytes(row[0]), what="stored signed head"))
        except EncspacesError as exc:
            raise StoreError(f"{where}: the stored signed head is corrupt: {exc}") from exc
        state = LogState(space)
        builder = TreeBuilder()
        genesis = b""
        # Page by seq, each page one statement run to its end: a cursor left open across
        # awaits would hold the reader connection's snapshot, and every other room's catch-up
        # on this connection meanwhile would miss what was committed since (its new entries).
        while rows := await self._reader.execute_fetchall(
            "SELECT seq, digest, head, raw FROM entries WHERE space_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (space, state.seq, _LOAD_CHUNK),
        ):
            for seq, digest, head, raw in rows:
                raw = bytes(raw)
                replay(state, seq, bytes(digest), bytes(head), raw, where)
                builder.add(bytes(digest))
                if seq == 1:
                    genesis = raw
        if state.seq == 0:
            raise StoreError(f"{where}: the space has no entries, not even its genesis")
        await self._migrate_tree(space, builder)
        stored = await self.checkpoints(space)
        return LoadedSpace(state, genesis, signed_head, builder.done(), stored[-1][1] if stored else None)

    async def tail(self, space: bytes, after_seq: int) -> tuple[list[EntryRow], SignedHead] | None:
        """The rows after ``after_seq`` and the latest signed head (None: no such space)."""
        async with self._reader.execute("SELECT signed_head FROM spaces WHERE space_id = ?", (space,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        signed_head = decode_stored_head(bytes(row[0]), f"relay store {self.path}, space {space.hex()[:16]}…")
        async with self._reader.execute(
            "SELECT seq, author, author_seq, digest, head, raw FROM entries WHERE space_id = ? AND seq > ? "
            "ORDER BY seq", (space, after_seq),
        ) as cursor:
            rows = await cursor.fetchall()
        return [EntryRow(int(r[0]), bytes(r[1]), int(r[2]), bytes(r[3]), bytes(r[4]), bytes(r[5])) for r in rows], \
            signed_head

    async def heads(self, spaces: Sequence[bytes]) -> dict[bytes, int]:
        """The newest seq of each of ``spaces`` that is stored."""
        found: dict[bytes, int] = {}
        for space in spaces:
            async with self._reader.execute("SELECT MAX(seq) FROM entries WHERE space_id = ?", (space,)) as cursor:
                row = await cursor.fetchone()
            if row is not None and row[0] is not None:
                found[space] = int(row[0])
        return found


def decode_stored_head(data: bytes, where: str) -> SignedHead:
    try:
        return SignedHead.decode(unpack(data, what="stored signed head"))
    except EncspacesError as exc:
        raise StoreError(f"{where}: the stored signed head is corrupt: {exc}") from exc


def replay(state: LogState, seq: int, digest: bytes, head: bytes, raw: bytes, where: str) -> None:
    if seq != state.seq + 1:
        raise StoreError(f"{where}: seq {seq} follows seq {state.seq}: entries are missing")
    try:
        entry = Entry.decode(raw)
    except EncspacesError as exc:
        raise StoreError(f"{where}: entry at seq {seq} is corrupt: {exc}") from exc
    found = entry.digest()
    if found != digest:
        raise StoreError(f"{where}: entry at seq {seq} has digest {found.hex()[:16]}…, stored {digest.hex()[:16]}…")
    expected = next_head(state.head, seq, found)
    if expected != head:
        raise StoreError(
            f"{where}: chain broken at seq {seq}: computed head {expected.hex()[:16]}…, stored {head.hex()[:16]}…"
        )
    state.apply(entry, seq, head)


def _open_writer(path: Path) -> sqlite3.Connection:
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA synchronous=FULL")
        writer.execute("PRAGMA busy_timeout=5000")
        version = int(writer.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, SCHEMA_VERSION):
            raise StoreError(f"relay store {path} has schema version {version}, expected {SCHEMA_VERSION}")
        writer.executescript(_SCHEMA)
        writer.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        writer.close()
        raise
    return writer


def _transaction(writer: sqlite3.Connection, statements: Sequence[tuple[str, Sequence[tuple[object, ...]]]]) -> None:
    writer.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            if rows:  # most group commits carry no checkpoint and complete no tree node
                writer.executemany(sql, rows)
        writer.execute("COMMIT")
    except BaseException:
        # the transaction may already be gone (the commit itself failed)
        with contextlib.suppress(sqlite3.Error):
            writer.execute("ROLLBACK")
        raise


def encode_head(signed_head: SignedHead) -> bytes:
    return pack(signed_head.encode())
