"""The device's local copy of a space: verified log, head, and entries not yet acknowledged.

The verified head must outlive the process: a relay restored from an old backup is only
caught by a device that remembers what it already verified. Entries are stored as the
ciphertext received, and the outbox holds signed entries until the verified log holds them,
so nothing typed is lost to a dropped connection or a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from queue import SimpleQueue
from types import TracebackType
from typing import Any, TypeVar

from .core.file_lock import FileLock
from .core.private_file import ensure_private_file
from .errors import StoreError, StoreInUseError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, raw BLOB NOT NULL, head BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (author_seq INTEGER PRIMARY KEY, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    verifier BLOB NOT NULL,   -- LogVerifier.export_checkpoint(): membership, counters, epoch keys
    document BLOB NOT NULL    -- the document's full state (Yjs update) at that point
);
-- The relay's signed heads this device verified (exact wire bytes): evidence, re-checked by
-- ``encspaces verify``. Bounded: every frame's head in the newest HEAD_WINDOW seqs, and
-- further back the first head of each HEAD_BUCKET seqs (see ``prune_heads_below``).
CREATE TABLE IF NOT EXISTS relay_heads (seq INTEGER PRIMARY KEY, signed BLOB NOT NULL, signature BLOB NOT NULL);
-- Heads the relay signed past the log this device verified (in an ack or a welcome), with where
-- they came from (``core.evidence.Role``): the log must reach each with the same hash, or the
-- relay signed two histories (ForkError). Kept across restarts so the proof survives one;
-- dropped once the verified log passed them (the newest HEADS_AHEAD_KEPT by seq are kept).
CREATE TABLE IF NOT EXISTS heads_ahead (seq INTEGER PRIMARY KEY, signed BLOB NOT NULL, signature BLOB NOT NULL,
                                        role TEXT NOT NULL);
"""

HEAD_WINDOW = 4096  # seqs behind the verified head in which every frame's signed head is kept
HEAD_BUCKET = 1024  # further back, one signed head (the first) per this many seqs
HEADS_AHEAD_KEPT = 64  # heads past the verified log kept (as many as the verifier holds)
EVIDENCE_META = "evidence"  # meta key: the evidence file of the space's failure (encspaces.core.evidence)
# meta key: pack([seq, log state]) of the anchor this device started at (its log rows before it are
# digests alone); re-verifying the store starts from it (encspaces.core.reverify)
ANCHOR_META = "anchor"
# meta key: pack([nonce, ...]) of this device's newest sessions (core/client_ids.py), the current one
# last, written before any of its edits is sent: a data entry of ours that reached the relay but not
# this store (a crash beside its write) is known by its nonce as ours, not another machine's
SESSIONS_META = "sessions"
SESSIONS_KEPT = 256
# secure_delete: deleted keys are overwritten, not just unlinked.
_PREPARE = f"""
PRAGMA journal_mode=WAL;
PRAGMA secure_delete=ON;
PRAGMA synchronous=NORMAL;
BEGIN;
{_SCHEMA}
COMMIT;
PRAGMA synchronous=FULL;
"""

STORE_FILE = "space.sqlite3"
LOCK_FILE = "store.lock"  # held while the store is open: one opener at a time (encspaces.core.file_lock)
_T = TypeVar("_T")


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit: ``write`` opens and commits its transaction itself, all in one call.
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None,
            then: Callable[[], None] | None) -> None:
    if future.done():
        return  # the caller was cancelled: the call ran anyway, nobody waits for it
    if exc is None and then is not None:
        try:
            then()
        except Exception as error:  # raised to the caller, as if it had run after the await
            exc = error
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class _Worker:
    """One thread running the store's calls in order, each answered on the event loop.

    The lightest hop there is (a queue put, a wake-up, ``call_soon_threadsafe``): about
    30 µs of CPU, against 40-50 through ``run_in_executor``'s chained futures
    (bench/README.md, "Receiving at 10×10"). A daemon thread: a process that returns without
    closing its spaces must not wait for it at interpreter exit. WAL with synchronous=FULL is
    crash-safe, so ending it with the process loses nothing committed (what was not flushed is
    lost exactly as with kill -9).
    """

    def __init__(self) -> None:
        self._calls: SimpleQueue[
            tuple[asyncio.Future[Any], Callable[[], Any], Callable[[], None] | None] | None] = SimpleQueue()
        self.stopped = False
        self._thread = threading.Thread(target=self._work, name="encspaces store", daemon=True)
        self._thread.start()

    def run(self, function: Callable[[], _T], then: Callable[[], None] | None = None) -> asyncio.Future[_T]:
        """Run ``function()`` on the thread, after every call queued before it.

        ``then``: run on the event loop once ``function`` returned, in the callback that answers
        the future, so before the caller resumes (see ``LocalStore.write``).
        """
        if self.stopped:  # nothing would ever answer it
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._calls.put((future, function, then))
        return future

    def stop(self) -> None:
        """End the thread once the calls queued before this one ran."""
        if not self.stopped:
            self.stopped = True
            self._calls.put(None)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            future, function, then = call
            result: Any = None
            try:
                result = function()
            except BaseException as exc:
                error: BaseException | None = exc
            else:
                error = None
            with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits any more
                future.get_loop().call_soon_threadsafe(_settle, future, result, error, then)


def _in_use(data_dir: str | Path, space_hex: str, who: str) -> StoreInUseError:
    return StoreInUseError(
        f"the copy of space {space_hex[:16]}… in {data_dir} is open already, in this process or another{who}: "
        "one device's copy takes one opener at a time (two would sign entries with the same author_seq "
        "and overwrite each other's outbox); close the other one first, or use another data dir")


class LocalStore:
    """One SQLite file per space under the device's data dir.

    A plain sqlite3 connection on a thread of its own, and every call (a read, or a whole
    write transaction with its ``PRAGMA synchronous`` switch) runs there in one piece: one
    thread hop per call. Through aiosqlite each statement, fetch and commit was a hop of its
    own (three to five per received frame): the write after a received frame cost about
    110 µs of CPU, now about 55 (bench/README.md, "Receiving at 10×10").
    """

    def __init__(
        self, db: sqlite3.Connection, worker: _Worker, path: Path, lock: FileLock,
        preparing: asyncio.Future[None] | None = None,
    ) -> None:
        self._db = db  # used on the worker's thread only
        self._worker = worker
        self.path = path
        self._lock = lock
        self._synchronous = "FULL"  # what the connection is set to now (see ``write``; on the thread)
        # A new file's setup, still running (see ``open``); every statement waits for it.
        self._preparing = preparing
        self._empty = preparing is not None  # a new file holds nothing until our first write

    @classmethod
    async def open(cls, data_dir: str | Path, space_hex: str) -> LocalStore:
        folder = Path(data_dir) / space_hex
        path = folder / STORE_FILE
        new = not path.exists()
        ensure_private_file(path)  # in a 0700 folder; 0600, and so its WAL and SHM files
        lock = FileLock.acquire(folder / LOCK_FILE, partial(_in_use, data_dir, space_hex))
        worker = _Worker()
        try:
            db = await worker.run(partial(_connect, path))
        except BaseException as exc:
            worker.stop()
            lock.release()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open the local store {path}: {exc}") from exc
            raise
        if new:
            # Nothing to read in a new file, so its setup (the switch to WAL is fsynced: 10-60 ms
            # on a VM's disk, most of a new device's first open) runs while the device connects;
            # reads answer "empty" and the first write waits for it.
            store = cls(db, worker, path, lock)
            store._preparing = asyncio.ensure_future(store._prepare())
            store._empty = True
            return store
        store = cls(db, worker, path, lock)
        try:
            await store._prepare()
        except StoreError:
            await store._close()
            raise
        return store

    async def _prepare(self) -> None:
        try:
            # One call. The tables are created without an fsync: lost to a power loss, they are
            # created again at the next open, and the first write (meta) fsyncs them.
            await self._run(self._db.executescript, _PREPARE)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the local store {self.path}: {exc}") from exc

    def _run(self, function: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        """Run ``function(*args)`` on the store's thread, after every call queued before it."""
        return self._worker.run(partial(function, *args))

    async def _rows(self, sql: str, params: Sequence[object]) -> list[Any]:
        """Every row of one query, read in one call on the store's thread."""
        await self._ready()
        try:
            return await self._run(_fetch_all, self._db, sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the local store {self.path}: {exc}") from exc

    async def _ready(self) -> None:
        if self._preparing is not None:
            await self._preparing  # its StoreError, if it failed, again on every call

    async def _close(self) -> None:
        if self._worker.stopped:
            return  # closed already
        try:
            await self._run(self._db.close)
        finally:
            self._worker.stop()
            self._lock.release()

    async def close(self) -> None:
        if self._preparing is not None:
            await asyncio.gather(self._preparing, return_exceptions=True)
        await self._close()

    async def __aenter__(self) -> LocalStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def get_meta(self, key: str) -> bytes | None:
        if self._empty:
            return None
        rows = await self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    async def load_log(self, after: int = 0, through: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """Verified entries (seq, raw, head) after seq ``after`` (up to ``through``), in log order."""
        if self._empty:
            return []
        last = (1 << 62) if through is None else through
        rows = await self._rows("SELECT seq, raw, head FROM log WHERE seq > ? AND seq <= ? ORDER BY seq", (after, last))
        return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]

    async def load_log_page(self, before: int | None, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` verified entries (seq, raw) below seq ``before``, newest first."""
        if self._empty:
            return []
        below = (1 << 62) if before is None else before
        rows = await self._rows("SELECT seq, raw FROM log WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                                (below, max(0, limit)))
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def load_entries(self, seqs: Iterable[int]) -> list[tuple[int, bytes, bytes]]:
        if self._empty:
            return []
        wanted = sorted(set(seqs))
        rows: list[tuple[int, bytes, bytes]] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found = await self._rows(f"SELECT seq, raw, head FROM log WHERE seq IN ({marks}) ORDER BY seq", chunk)
            rows.extend((int(r[0]), bytes(r[1]), bytes(r[2])) for r in found)
        return rows

    async def load_heads(self, through: int) -> list[bytes]:
        """h(1)..h(through), which must all be stored."""
        heads = [bytes(r[0]) for r in await self._rows("SELECT head FROM log WHERE seq <= ? ORDER BY seq", (through,))]
        if len(heads) != through:
            raise StoreError(f"the local store holds {len(heads)} heads below its checkpoint at seq {through}")
        return heads

    async def load_checkpoint(self) -> tuple[int, bytes, bytes] | None:
        """(seq, verifier state, document state) of the newest checkpoint, if any."""
        if self._empty:
            return None
        rows = await self._rows("SELECT seq, verifier, document FROM checkpoint WHERE id = 1", ())
        return (int(rows[0][0]), bytes(rows[0][1]), bytes(rows[0][2])) if rows else None

    async def load_relay_heads(self, first: int = 0) -> list[tuple[int, bytes, bytes]]:
        """The stored relay-signed heads (seq, signed_bytes, signature) at seq >= ``first``, in seq order."""
        if self._empty:
            return []
        rows = await self._rows("SELECT seq, signed, signature FROM relay_heads WHERE seq >= ? ORDER BY seq", (first,))
        return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]

    async def load_heads_ahead(self) -> list[tuple[int, bytes, bytes, str]]:
        """The stored heads past the verified log (seq, signed_bytes, signature, role), in seq order."""
        if self._empty:
            return []
        rows = await self._rows("SELECT seq, signed, signature, role FROM heads_ahead ORDER BY seq", ())
        return [(int(r[0]), bytes(r[1]), bytes(r[2]), str(r[3])) for r in rows]

    async def load_outbox(self) -> list[tuple[int, bytes]]:
        if self._empty:
            return []
        rows = await self._rows("SELECT author_seq, raw FROM outbox ORDER BY author_seq", ())
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def write(
        self,
        *,
        meta: dict[str, bytes] | None = None,
        log: Iterable[tuple[int, bytes, bytes]] = (),
        outbox_add: Iterable[tuple[int, bytes]] = (),
        outbox_done_through: int | None = None,
        checkpoint: tuple[int, bytes, bytes] | None = None,
        outbox_reset: bool = False,
        purge: bool = False,
        redactions: Iterable[tuple[int, bytes]] = (),
        heads: Iterable[tuple[int, bytes, bytes]] = (),
        prune_heads_below: int | None = None,
        heads_ahead: Iterable[tuple[int, bytes, bytes, str]] = (),
        heads_ahead_through: int | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """One transaction for everything that accumulated since the last write, run whole on
        the store's thread (one hop).

        Fsynced (``synchronous=FULL``) when it holds anything a power loss must not take back:
        outbox entries (``flush`` promises them), an outbox reset, the invite secret or other meta,
        and redactions or a purge (forgotten keys stay forgotten). A transaction of received
        entries, outbox clean-up and checkpoints only is committed with ``synchronous=NORMAL``:
        durable against a crash or kill of the process like any commit in WAL mode (the OS holds the
        written WAL), while a power loss may take back the newest of them (a suffix: WAL never keeps
        a later commit without the earlier ones), until the next fsynced transaction or WAL
        checkpoint. docs/PROTOCOL.md section 15 says what that costs. Received entries reach this
        call grouped, several frames to a transaction (``persistence.RECEIVED_WRITE_DELAY``): the
        fixed part of a write (the thread hop, the commit, the WAL pages of the tables' last leaves)
        was most of its cost at one frame each.

        ``heads_ahead``: relay-signed heads past the verified log to keep (the first one per seq
        stays); ``heads_ahead_through``: the verified log reached this seq, drop those at or below.

        ``then`` runs on the event loop as soon as the transaction committed, in the callback
        that answers this call, one pass of the loop before the caller resumes (a task resumes
        in the pass after its future is answered): a writer sends its entry from there
        (persistence.py). On a busy loop a pass is milliseconds. What ``then`` raises, this
        call raises.
        """
        self._empty = False
        await self._ready()
        log, heads, redactions, outbox_add = list(log), list(heads), list(redactions), list(outbox_add)
        heads_ahead = list(heads_ahead)
        fsync = bool(meta or redactions or outbox_reset or outbox_add or purge)
        statements: list[tuple[str, Sequence[Sequence[object]]]] = []
        if meta:
            statements.append(("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items())))
        if log:
            statements.append(("INSERT OR IGNORE INTO log (seq, raw, head) VALUES (?, ?, ?)", log))
        if redactions:
            statements.append(("UPDATE log SET raw = ? WHERE seq = ?", [(raw, seq) for seq, raw in redactions]))
        if heads:
            statements.append(("INSERT OR IGNORE INTO relay_heads (seq, signed, signature) VALUES (?, ?, ?)", heads))
        if prune_heads_below is not None:
            # Thin out old heads to the first of each bucket: a fork at any seq still has a
            # signed head at most a few thousand seqs above it to chain to (evidence links).
            statements.append((
                "DELETE FROM relay_heads WHERE seq < ? AND seq NOT IN "
                "(SELECT MIN(seq) FROM relay_heads WHERE seq < ? GROUP BY (seq - 1) / ?)",
                [(prune_heads_below, prune_heads_below, HEAD_BUCKET)]))
        if heads_ahead:
            statements.append(("INSERT OR IGNORE INTO heads_ahead (seq, signed, signature, role) VALUES (?, ?, ?, ?)",
                               heads_ahead))
            statements.append(("DELETE FROM heads_ahead WHERE seq NOT IN "
                               "(SELECT seq FROM heads_ahead ORDER BY seq DESC LIMIT ?)", [(HEADS_AHEAD_KEPT,)]))
        if heads_ahead_through is not None:
            statements.append(("DELETE FROM heads_ahead WHERE seq <= ?", [(heads_ahead_through,)]))
        if outbox_reset:
            statements.append(("DELETE FROM outbox", [()]))
        if outbox_add:
            statements.append(("INSERT OR REPLACE INTO outbox (author_seq, raw) VALUES (?, ?)", outbox_add))
        if outbox_done_through is not None:
            statements.append(("DELETE FROM outbox WHERE author_seq <= ?", [(outbox_done_through,)]))
        if checkpoint is not None:
            statements.append(
                ("INSERT OR REPLACE INTO checkpoint (id, seq, verifier, document) VALUES (1, ?, ?, ?)", [checkpoint]))
        try:
            await self._worker.run(partial(self._transaction, "FULL" if fsync else "NORMAL", statements, purge), then)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the local store {self.path}: {exc}") from exc

    def _transaction(self, synchronous: str, statements: list[tuple[str, Sequence[Sequence[object]]]],
                     purge: bool) -> None:
        """On the store's thread: set the durability, then the statements in one transaction."""
        db = self._db
        if synchronous != self._synchronous:
            db.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            # the transaction may already be gone (the commit itself failed)
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        if purge:
            # Forgotten keys: the old checkpoint's pages were zeroed (secure_delete); move the
            # write-ahead log into the database and truncate it, so no old copy survives there.
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _fetch_all(db: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[Any]:
    return db.execute(sql, params).fetchall()
