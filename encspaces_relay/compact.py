"""``encspaces-relay compact``: drop the bodies an agreed snapshot has made unnecessary.

Only a snapshot that the space's threshold of members other than its author attested, with
no conflicting attestation (``LogState.agreed_snapshot``), covers anything: a joiner must be
able to fall back to the full log from any other. A body at or before such a snapshot's base
(and older than the retention setting) is replaced by
nothing; the entry's header, body hash and signature stay, so its digest, and with it the
hash chain every client verifies, are unchanged. A device that was behind receives those
entries stripped and rebuilds from the snapshot instead. Control entries (membership, keys)
are never stripped: every client needs them to check the log.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from encspaces.core.entry import Entry
from encspaces.core.identity import member_id
from encspaces.core.log_state import LogState

from .store import DB_FILE


@dataclass(frozen=True)
class Compacted:
    space: str
    snapshot_seq: int | None
    stripped: int
    bytes_freed: int


def compact(data_dir: Path, keep_seconds: float = 0.0, now_ms: int | None = None) -> list[Compacted]:
    """Strip every encrypted body at or before the newest agreed snapshot's base, older than ``keep_seconds``."""
    cutoff = (int(time.time() * 1000) if now_ms is None else now_ms) - int(keep_seconds * 1000)
    report = []
    with sqlite3.connect(data_dir / DB_FILE, timeout=30) as db:
        db.execute("PRAGMA journal_mode=WAL")
        spaces = [bytes(row[0]) for row in db.execute("SELECT space_id FROM spaces ORDER BY created_ms")]
        for space in spaces:
            state = LogState(space)  # replayed, not checked: the relay checked each entry as it came
            for seq, raw, head in db.execute(
                    "SELECT seq, raw, head FROM entries WHERE space_id = ? ORDER BY seq", (space,)):
                state.apply(Entry.decode(bytes(raw)), int(seq), bytes(head))
            newest = state.agreed_snapshot()
            stripped = freed = 0
            if newest is not None:
                updates = []
                rows = db.execute("SELECT seq, raw FROM entries WHERE space_id = ? AND seq <= ? ORDER BY seq",
                                  (space, newest[1]))
                for seq, raw in rows:
                    entry = Entry.decode(bytes(raw))
                    if entry.header.kind.is_encrypted and not entry.stripped and entry.header.time_ms < cutoff:
                        smaller = entry.strip()
                        updates.append((smaller, space, int(seq)))
                        freed += len(raw) - len(smaller)
                db.executemany("UPDATE entries SET raw = ? WHERE space_id = ? AND seq = ?", updates)
                stripped = len(updates)
            report.append(Compacted(member_id(space), newest[0] if newest else None, stripped, freed))
        db.commit()
    return report
