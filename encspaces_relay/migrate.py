"""``encspaces-relay migrate --data-dir DIR --to postgresql://...``: a SQLite relay into PostgreSQL.

Copies every space (its row and signed head, every entry with its chain head, its Merkle tree's
stored nodes and its cosigned checkpoints) and every blob
(its bytes from ``DIR/blobs``, and the usage counters the quotas read) into the database, in
one transaction per space, then checks the copy: every entry is read back, the chain is
recomputed from the copied bytes (digest, then h(seq) from h(seq-1)) and compared with the
head stored beside it and with the head in the SQLite file; the latest signed head must be
the relay's signature over the last of them. Any difference is reported and the command
exits non-zero. A database that already holds one of the spaces is refused before anything is
copied. Stop the relay first: the SQLite file is read as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import encspaces
from encspaces.core import crypto
from encspaces.core.entry import Entry
from encspaces.core.head import next_head
from encspaces.core.identity import member_id
from encspaces.errors import EncspacesError

from .blobs import BLOBS_DIR, charge
from .keys import load_or_create_signing_key
from .store import DB_FILE, decode_stored_head

if TYPE_CHECKING:
    from .pg_store import PgStore

_CHUNK = 1000


@dataclass
class Report:
    spaces: int = 0
    entries: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    problems: list[str] = field(default_factory=list)


def _sqlite_spaces(db: sqlite3.Connection) -> list[tuple[bytes, int, bytes]]:
    return [(bytes(s), int(c), bytes(h)) for s, c, h in
            db.execute("SELECT space_id, created_ms, signed_head FROM spaces ORDER BY created_ms")]


def _sqlite_rows(db: sqlite3.Connection, space: bytes) -> Iterator[list[tuple[object, ...]]]:
    cursor = db.execute("SELECT space_id, seq, author, author_seq, digest, head, raw FROM entries "
                        "WHERE space_id = ? ORDER BY seq", (space,))
    while rows := cursor.fetchmany(_CHUNK):
        yield [(bytes(r[0]), int(r[1]), bytes(r[2]), int(r[3]), bytes(r[4]), bytes(r[5]), bytes(r[6])) for r in rows]


def _blob_files(data_dir: Path, space: bytes) -> list[Path]:
    folder = data_dir / BLOBS_DIR / space.hex()
    if not folder.is_dir():
        return []
    return sorted(Path(e.path) for e in os.scandir(folder) if not e.name.startswith(".") and e.is_file())


async def migrate(data_dir: Path, dsn: str) -> Report:
    """Copy the SQLite relay in ``data_dir`` into the database at ``dsn`` and check every head."""
    from .pg_store import PgStore

    path = data_dir / DB_FILE
    if not path.exists():
        raise FileNotFoundError(f"no relay database {path}")
    relay_key = bytes(load_or_create_signing_key(data_dir).verify_key)
    report = Report()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    store = await PgStore.open(dsn)
    try:
        spaces = _sqlite_spaces(db)
        tables = [t for t in ("tree_nodes", "checkpoints")
                  if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)).fetchone()]
        async with store.connection() as conn:
            taken = await conn.fetch("SELECT space_id FROM spaces WHERE space_id = ANY($1::bytea[])",
                                     [s for s, _, _ in spaces])
        if taken:
            report.problems.extend(f"space {member_id(bytes(r[0]))}: already in {store.where}, not copied"
                                   for r in taken)
            return report
        for space, created_ms, signed_head in spaces:
            async with store.connection() as conn, conn.transaction():
                head_seq = db.execute("SELECT max(seq) FROM entries WHERE space_id = ?", (space,)).fetchone()[0]
                await conn.execute("INSERT INTO spaces VALUES ($1, $2, $3, $4)", space, created_ms,
                                   int(head_seq or 0), signed_head)
                for rows in _sqlite_rows(db, space):
                    await conn.copy_records_to_table("entries", records=rows)
                    report.entries += len(rows)
                # The Merkle tree's stored nodes and the cosigned checkpoints (absent from a data
                # dir older than the witnessed log: the relay computes the nodes at the first load).
                for table in tables:
                    copied = [(bytes(a), int(b), bytes(c)) for a, b, c in
                              db.execute(f"SELECT * FROM {table} WHERE space_id = ?", (space,))]
                    if copied:
                        await conn.copy_records_to_table(table, records=copied)
                used = 0
                for blob in _blob_files(data_dir, space):
                    data = await asyncio.to_thread(blob.read_bytes)
                    digest = bytes.fromhex(blob.name)
                    if crypto.blob_hash(data) != digest:
                        report.problems.append(f"space {member_id(space)}: blob {blob.name[:16]}… does not hash "
                                               "to its name: not copied")
                        continue
                    await conn.execute("INSERT INTO blobs VALUES ($1, $2, $3, $4)", space, digest, len(data), data)
                    used += charge(len(data))  # what it counts against the quotas
                    report.blobs += 1
                    report.blob_bytes += len(data)
                if used:
                    await conn.execute("INSERT INTO blob_usage VALUES ($1, $2)", space, used)
                    await conn.execute("UPDATE blob_total SET bytes = bytes + $1 WHERE id = 1", used)
            report.spaces += 1
        for space, _, _ in spaces:
            await _check_space(store, db, space, relay_key, report)
    finally:
        await store.close()
        db.close()
    return report


async def _check_space(store: PgStore, db: sqlite3.Connection, space: bytes, relay_key: bytes,
                       report: Report) -> None:
    """Recompute the chain from the copied entries; compare with the copied and the original heads."""
    name = f"space {member_id(space)}"
    original = {int(seq): bytes(head) for seq, head in
                db.execute("SELECT seq, head FROM entries WHERE space_id = ?", (space,))}
    head = crypto.ZERO_HASH
    seq = 0
    async with store.connection() as conn:
        stored = await conn.fetchval("SELECT signed_head FROM spaces WHERE space_id = $1", space)
        while True:
            rows = await conn.fetch("SELECT seq, digest, head, raw FROM entries WHERE space_id = $1 AND seq > $2 "
                                    "ORDER BY seq LIMIT $3", space, seq, _CHUNK)
            for found_seq, digest, stored_head, raw in rows:
                if found_seq != seq + 1:
                    report.problems.append(f"{name}: seq {found_seq} follows seq {seq} in the copy")
                    return
                seq = int(found_seq)
                try:
                    computed_digest = Entry.decode(bytes(raw)).digest()
                except EncspacesError as exc:
                    report.problems.append(f"{name}: the copied entry at seq {seq} does not decode: {exc}")
                    return
                head = next_head(head, seq, computed_digest)
                if computed_digest != bytes(digest) or head != bytes(stored_head) or head != original.get(seq):
                    report.problems.append(
                        f"{name}: head at seq {seq}: computed {head.hex()[:16]}…, "
                        f"copied {bytes(stored_head).hex()[:16]}…, original {(original.get(seq) or b'').hex()[:16]}…")
                    return
            if len(rows) < _CHUNK:
                break
    if seq != len(original):
        report.problems.append(f"{name}: {seq} entries in the copy, {len(original)} in the original")
        return
    try:
        signed = decode_stored_head(bytes(stored), name)
        signed.check(relay_key, space)
    except EncspacesError as exc:
        report.problems.append(f"{name}: the copied signed head: {exc}")
        return
    if signed.seq > seq or (signed.seq == seq and signed.head != head):
        report.problems.append(f"{name}: the signed head (seq {signed.seq}) does not match the chain at seq {seq}")


def migrate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="encspaces-relay migrate",
                                     description="Copy a SQLite relay into PostgreSQL and check every head.")
    parser.add_argument("--version", action="version", version=f"encspaces-relay {encspaces.__version__}")
    parser.add_argument("--data-dir", type=Path, required=True, help="the SQLite relay's data dir (relay stopped)")
    parser.add_argument("--to", required=True, metavar="postgresql://...", help="the database to copy into")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(migrate(args.data_dir, args.to))
    except (OSError, EncspacesError) as exc:
        print(f"encspaces-relay migrate: {exc}", file=sys.stderr)
        return 1
    for problem in report.problems:
        print(f"encspaces-relay migrate: {problem}", file=sys.stderr)
    print(f"copied {report.spaces} spaces, {report.entries} entries, {report.blobs} blobs ({report.blob_bytes} bytes); "
          f"{'every head checked' if not report.problems else f'{len(report.problems)} problems'}")
    return 1 if report.problems else 0
