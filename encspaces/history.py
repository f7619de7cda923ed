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

from .document import Document, SharedList, SharedMap, SharedTable, SharedText
from .entry import Entry, Kind, open_body
from .errors import EncspacesError
from .identity import member_id
from .shared.kinds import ObjectKind


class HistoryError(EncspacesError):
    """A version that cannot be shown: beyond the verified head, or its keys are gone."""


class ReadOnlyError(EncspacesError):
    """An edit on a view of the past."""


@dataclass(frozen=True)
class HistoryEntry:
    seq: int
    author: str
    time_ms: int  # the author's clock when writing
    kind: str
    size: int  # bytes of the entry as stored


def history_entry(seq: int, raw: bytes) -> HistoryEntry:
    h = Entry.decode(raw).header
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
    rows: list[tuple[int, bytes, bytes]], seq: int, keys: dict[int, bytes], forgotten: set[int]
) -> SpaceView:
    """Replay the verified data entries 1..seq (``rows`` in log order) into a fresh document."""
    document = Document(lambda update: None)
    for entry_seq, raw, _ in rows:
        if entry_seq > seq:
            break
        entry = Entry.decode(raw)
        h = entry.header
        if h.kind is not Kind.DATA:
            continue
        key = keys.get(h.epoch)
        if key is None:
            why = "was deleted by the space's retention policy" if h.epoch in forgotten else \
                "was never given to this device"
            raise HistoryError(f"seq {seq} needs the key of epoch {h.epoch} (entry at seq {entry_seq}), which {why}")
        plaintext = open_body(entry, key)
        if plaintext is None:
            continue  # skipped the same way when it was verified: the author's fault
        try:
            document.apply_remote(plaintext, member_id(h.author))
        except ValueError:
            continue
    return SpaceView(seq, document)
