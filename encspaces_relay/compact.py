"""``encspaces-relay compact``: drop the bodies an agreed snapshot has made unnecessary.

Only a snapshot that the space's threshold of members other than its author attested, with
no conflicting attestation (``LogState.agreed_snapshot``), covers anything: a joiner must be
able to fall back to the full log from any other. A body at or before such a snapshot's base
(and older than the retention setting) is replaced by
nothing; the entry's header, body hash and signature stay, so its digest, and with it the
hash chain every client verifies, are unchanged. A device that was behind receives those
entries stripped and rebuilds from the snapshot instead. Control entries (membership, keys)
are never stripped: every client needs them to check the log.

Both stores: the SQLite file in a data dir (``compact``) and the PostgreSQL database a cluster
shares (``compact_postgres``, ``encspaces-relay compact --store postgresql://...``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from encspaces.core.entry import Entry
from encspaces.core.identity import member_id
from encspaces.core.log_state import LogState

from .store import DB_FILE

_CHUNK = 2048  # rows read from PostgreSQL at a time: memory holds one chunk of raw entries


@dataclass(frozen=True)
class Compacted:
    space: str
    snapshot_seq: int | None
    stripped: int
    bytes_freed: int


def _cutoff(keep_seconds: float, now_ms: int | None) -> int:
    return (int(time.time() * 1000) if now_ms is None else now_ms) - int(keep_seconds * 1000)


def _replay(state: LogState, rows: Iterable[tuple[int, bytes, bytes]]) -> None:
    """Replayed, not checked: the relay checked each entry as it came."""
    for seq, raw, head in rows:
        state.apply(Entry.decode(bytes(raw)), int(seq), bytes(head))


def _strippable(rows: Iterable[tuple[int, bytes]], cutoff: int) -> tuple[list[tuple[int, bytes]], int]:
    """The (seq, stripped bytes) of the encrypted bodies among ``rows`` older than ``cutoff``, and the bytes saved.

    The one rule both stores apply; which rows are offered (at or before the agreed snapshot's
    base) is the caller's part.
    """
    updates = []
    freed = 0
    for seq, raw in rows:
        entry = Entry.decode(bytes(raw))
        if entry.header.kind.is_encrypted and not entry.stripped and entry.header.time_ms < cutoff:
            smaller = entry.strip()
            updates.append((int(seq), smaller))
            freed += len(raw) - len(smaller)
    return updates, freed


def compact(data_dir: Path, keep_seconds: float = 0.0, now_ms: int | None = None) -> list[Compacted]:
    """Strip every encrypted body at or before the newest agreed snapshot's base, older than ``keep_seconds``."""
    cutoff = _cutoff(keep_seconds, now_ms)
    report = []
    with sqlite3.connect(data_dir / DB_FILE, timeout=30) as db:
        db.execute("PRAGMA journal_mode=WAL")
        spaces = [bytes(row[0]) for row in db.execute("SELECT space_id FROM spaces ORDER BY created_ms")]
        for space in spaces:
            state = LogState(space)
            _replay(state, db.execute("SELECT seq, raw, head FROM entries WHERE space_id = ? ORDER BY seq", (space,)))
            newest = state.agreed_snapshot()
            stripped = freed = 0
            if newest is not None:
                rows = db.execute("SELECT seq, raw FROM entries WHERE space_id = ? AND seq <= ? ORDER BY seq",
                                  (space, newest[1]))
                updates, freed = _strippable(rows, cutoff)
                db.executemany("UPDATE entries SET raw = ? WHERE space_id = ? AND seq = ?",
                               [(raw, space, seq) for seq, raw in updates])
                stripped = len(updates)
            report.append(Compacted(member_id(space), newest[0] if newest else None, stripped, freed))
        db.commit()
    return report


async def compact_postgres(dsn: str, keep_seconds: float = 0.0, now_ms: int | None = None) -> list[Compacted]:
    """``compact`` on the PostgreSQL store of a cluster (docs/cluster.md), safe while its relays run.

    Each space is read in chunks, and its bodies are stripped in one transaction of its own.
    Relays never rewrite a stored entry and stripping keeps its digest, so a relay serving the
    space meanwhile sends either form, both of which verify. A lost database is a
    ``StoreUnavailableError``; the spaces already compacted stay so.
    """
    from .pg_store import PgStore  # the driver is an optional extra

    cutoff = _cutoff(keep_seconds, now_ms)
    store = await PgStore.open(dsn, max_connections=1)
    report = []
    try:
        async with store.connection() as conn:
            spaces = [bytes(r[0]) for r in await conn.fetch("SELECT space_id FROM spaces ORDER BY created_ms")]
            for space in spaces:
                state = LogState(space)
                while True:
                    rows = await conn.fetch("SELECT seq, raw, head FROM entries WHERE space_id = $1 AND seq > $2 "
                                            "ORDER BY seq LIMIT $3", space, state.seq, _CHUNK)
                    _replay(state, ((r[0], r[1], r[2]) for r in rows))
                    if len(rows) < _CHUNK:
                        break
                newest = state.agreed_snapshot()
                stripped = freed = 0
                if newest is not None:
                    async with conn.transaction():
                        after = 0
                        while after < newest[1]:
                            rows = await conn.fetch(
                                "SELECT seq, raw FROM entries WHERE space_id = $1 AND seq > $2 AND seq <= $3 "
                                "ORDER BY seq LIMIT $4", space, after, newest[1], _CHUNK)
                            if not rows:
                                break
                            after = int(rows[-1][0])
                            updates, saved = _strippable(((r[0], r[1]) for r in rows), cutoff)
                            await conn.executemany("UPDATE entries SET raw = $1 WHERE space_id = $2 AND seq = $3",
                                                   [(raw, space, seq) for seq, raw in updates])
                            stripped += len(updates)
                            freed += saved
                report.append(Compacted(member_id(space), newest[0] if newest else None, stripped, freed))
    finally:
        await store.close()
    return report
