"""Looking back: the verified log as a list, and any earlier version as a read-only document.

Everything here is rebuilt from this device's own store of entries it verified, never asked
of the relay, so history is exactly as trustworthy as the present. Old versions need the
old epoch keys: once retention has deleted a key, the versions it protected are gone from
this device too, and saying so is the right answer.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from .core.client_ids import ClientOwners
from .core.entry import Entry, Kind, is_pruned, open_body
from .core.identity import member_id
from .data_payload import Unusable, read_data
from .document import Document, SharedList, SharedMap, SharedTable, SharedText
from .errors import HistoryError, ProtocolError, ReadOnlyError
from .shared.kinds import ObjectKind
from .snapshot import SnapshotPayload, state_content_hash

# The kind ``history()`` lists for an entry this device holds as its digest alone: it started at a
# later anchor (docs/PROTOCOL.md section 14, "Anchors"), so its author, time and kind are unknown.
PRUNED = "pruned"


@dataclass(frozen=True)
class HistoryEntry:
    """One verified entry of the log, as ``space.history()`` lists it; ``kind`` is e.g. ``"data"``, ``"add_member"``."""

    seq: int
    author: str
    time_ms: int  # the author's clock when writing
    kind: str  # or PRUNED (author "", time and size 0)
    size: int  # bytes of the entry as stored


def history_entry(seq: int, raw: bytes) -> HistoryEntry:
    if is_pruned(raw):  # this device started at a later anchor: it holds the entry's digest alone
        return HistoryEntry(seq, "", 0, PRUNED, 0)
    h = Entry.decode(raw, local=True).header
    return HistoryEntry(seq, member_id(h.author), h.time_ms, h.kind.value, len(raw))


def _read_only() -> None:
    raise ReadOnlyError("this is a view of an earlier version: it cannot be edited")


class SpaceView:
    """Every shared object as it was at ``seq``; reading works as on a space, writing raises."""

    def __init__(self, seq: int, document: Document) -> None:
        self.seq = seq
        self._document = document

    def text(self, name: str) -> SharedText:
        return self._document.text(name, _read_only)

    def list(self, name: str) -> SharedList:
        return self._document.list(name, _read_only)

    def map(self, name: str) -> SharedMap:
        return self._document.map(name, _read_only)

    def table(self, name: str) -> SharedTable:
        return self._document.table(name, _read_only)

    def objects(self) -> builtins.list[tuple[str, ObjectKind]]:
        return self._document.objects()

    def to_py(self) -> dict[str, Any]:
        """Every object's content as plain values, keyed by name."""
        content: dict[str, Any] = {}
        for name, kind in self.objects():
            obj = self._document.open_object(name, kind, _read_only)
            content[name] = obj.to_py()
        return content


def rebuild(
    rows: list[tuple[int, bytes, bytes]], seq: int, keys: dict[int, bytes], forgotten: set[int],
    bad_snapshots: tuple[int, ...] = (), client_ids_bound: bool = False,
) -> SpaceView:
    """The document at ``seq``: the nearest good snapshot at or before it, then the data entries after.

    ``rows`` are this device's verified entries in log order (a snapshot entry may stand after
    ``seq``: what counts is the seq whose state it holds, its parent).
    """
    document = Document(lambda update: None)
    owners = ClientOwners()
    start = _start_from_snapshot(rows, seq, keys, bad_snapshots, document, owners)
    for entry_seq, raw, _ in rows:
        if entry_seq > seq:
            break
        if entry_seq <= start:
            continue
        if is_pruned(raw):
            raise HistoryError(f"seq {seq} needs the entry at seq {entry_seq}, which is not on this device "
                               "(it started at a later anchor: docs/PROTOCOL.md section 14)")
        entry = Entry.decode(raw, local=True)
        h = entry.header
        if h.kind is not Kind.DATA:
            continue
        if entry.stripped:
            raise HistoryError(f"seq {seq} needs the entry at seq {entry_seq}, whose body is not on this device "
                               "(it started from a later snapshot, or the relay had compacted it)")
        key = keys.get(h.epoch)
        if key is None:
            why = "was deleted by the space's retention policy" if h.epoch in forgotten else \
                "was never given to this device"
            raise HistoryError(f"seq {seq} needs the key of epoch {h.epoch} (entry at seq {entry_seq}), which {why}")
        plaintext = open_body(entry, key)
        if plaintext is None:
            continue  # skipped the same way when it was verified: the author's fault
        update = read_data(plaintext, client_ids_bound, owners, h.author)
        if isinstance(update, Unusable):
            continue  # rejected the same way when it was verified
        try:
            document.apply_remote(update, member_id(h.author))
        except ValueError:
            continue
    document.close()  # a fixed point in history: nothing to follow, and it could never be freed otherwise
    return SpaceView(seq, document)


def _start_from_snapshot(
    rows: list[tuple[int, bytes, bytes]], seq: int, keys: dict[int, bytes], bad: tuple[int, ...],
    document: Document, owners: ClientOwners,
) -> int:
    """Load the best snapshot for ``seq`` into ``document`` (its first writers of client ids into
    ``owners``); the seq whose state it holds (0: none)."""
    candidates = []
    for entry_seq, raw, _ in rows:
        if is_pruned(raw):
            continue
        entry = Entry.decode(raw, local=True)
        h = entry.header
        if h.kind is Kind.SNAPSHOT and not entry.stripped and h.parent_seq <= seq and entry_seq not in bad:
            candidates.append((h.parent_seq, entry))
    for base, entry in sorted(candidates, key=lambda c: c[0], reverse=True):
        key = keys.get(entry.header.epoch)
        plaintext = None if key is None else open_body(entry, key)
        if plaintext is None:
            continue
        try:
            payload = SnapshotPayload.decode(plaintext)
            if state_content_hash(payload.state) != payload.content:
                continue
            document.apply_remote(payload.state, member_id(entry.header.author))
        except (ProtocolError, ValueError):
            continue
        owners.first.update(payload.owners or {})
        return base
    return 0
