"""SQLite state of a witness: its key (a 0600 file created once) and, per origin, the latest
cosigned checkpoint and the evidence of conflicts. Synchronous sqlite3 with synchronous=FULL: a
cosignature is returned only after its checkpoint is durable."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import nacl.signing

from encspaces.core.key_file import load_or_create_signing_key
from encspaces.core.private_file import ensure_private_file
from encspaces.errors import StoreError

from .core import Cosigned, origin_hash

KEY_FILE = "witness.key"
DB_FILE = "witness.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    origin_hash BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    request BLOB NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_origin ON evidence(origin);
"""


def load_or_create_key(data_dir: Path) -> nacl.signing.SigningKey:
    """``data_dir/witness.key``: a 32-byte seed, created 0600 on first start, never overwritten."""
    return load_or_create_signing_key(data_dir / KEY_FILE, "witness key")


class SqliteWitnessStore:
    """A :class:`encspaces_witness.core.WitnessStore` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        ensure_private_file(path)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the witness database {path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _row(self, where: str, value: object) -> Cosigned | None:
        with self._lock:
            query = f"SELECT origin, size, root, note FROM latest WHERE {where} = ?"
            row = self._db.execute(query, (value,)).fetchone()
        return Cosigned(row[0], row[1], bytes(row[2]), bytes(row[3])) if row else None

    def latest(self, origin: str) -> Cosigned | None:
        return self._row("origin", origin)

    def latest_by_hash(self, origin_hash_value: bytes) -> Cosigned | None:
        return self._row("origin_hash", origin_hash_value)

    def replace(self, expected_size: int | None, new: Cosigned) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if expected_size is None:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO latest (origin, origin_hash, size, root, note) VALUES (?, ?, ?, ?, ?)",
                        (new.origin, origin_hash(new.origin), new.size, new.root, new.note),
                    )
                else:
                    cur = self._db.execute(
                        "UPDATE latest SET size = ?, root = ?, note = ? WHERE origin = ? AND size = ?",
                        (new.size, new.root, new.note, new.origin, expected_size),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cur.rowcount == 1

    def add_evidence(self, origin: str, status: int, reason: str, request: bytes, at: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO evidence (origin, status, reason, request, received_at) VALUES (?, ?, ?, ?, ?)",
                (origin, status, reason, request, at),
            )

    def evidence(self, origin: str) -> list[tuple[int, str, bytes]]:
        """(status, reason, the request exactly as received) of every conflict kept for ``origin``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, reason, request FROM evidence WHERE origin = ? ORDER BY id", (origin,)
            ).fetchall()
        return [(r[0], r[1], bytes(r[2])) for r in rows]
