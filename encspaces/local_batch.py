"""The local edits not yet in an entry, and the update (or updates) they leave in.

Yrs hands over one update per local transaction; an entry carries one update for the whole
batch. Merging the batch's updates (``pycrdt.merge_updates``, 16 at a time) cost ~0.8 µs an
update alone and ~1.5 with what it does to the caches of the typing around it: in a short
replay more than the SDK's whole keystroke path (bench/README.md, "Replay of every
josephg/editing-traces trace").

The same update can be read from the document instead, in one call per batch: the structs this
document's own client wrote since the batch began are ``doc.get_update(state)`` against a state
vector that holds every other client's current clock and this client's clock where the batch
began (so no remote struct that arrived meanwhile is in it). That diff also carries the
document's whole delete set, which would make every entry grow with the document's history and
repeat deletions others made; so it is cut off (the diff ends with exactly the delete set that
``doc.get_update(doc.get_state())`` holds alone) and the batch's own deletions put in its
place: the delete sets of the batch's updates that delete anything, merged (a tenth of a
typing trace's transactions) and read back alone through ``pycrdt.get_update``.

The result holds the same structs and deletions as the merge. It can differ in bytes: Yrs
writes a struct as its document now holds it, so characters typed and deleted within the batch
travel as deleted content, and typing squashed into one item travels as one struct.

Reading costs a fixed ~40 µs (a 30 KB text) to ~120 µs (B4's final document: its whole delete
set is encoded twice), so a batch of fewer than ``READ_FROM`` updates (every batch of a person
typing) is merged. It is read from the document only when nothing else can be in the way: no
transaction open (the updates of one still open are not in the batch), the document's client
the one the batch began on, the start known (it is read after each batch leaves), no other
client's clock moved meanwhile (a remote update applied, or a local transaction that imported
someone else's structs, which the merge carries and the diff would not), and the result within
the size limit. Otherwise the updates are merged as before (split into several entries when
over the limit).
"""

from __future__ import annotations

from typing import Any

import pycrdt

from .state_vector import read_state, write_state

_FAN_IN = 16  # updates merged per call: the fastest of 4, 8, 16 and 32 (bench/README.md, s1)
# Updates in a batch from which reading it from the document is cheaper than merging them: about
# even at 256 in B4's final document (342 against 289 µs), read 2.8× faster at 256 in a 30 KB
# text and 3.6–6.5× at 2,048 (bench/README.md, "Replay of every josephg/editing-traces trace").
READ_FROM = 256


def merged(updates: list[bytes], fan_in: int = _FAN_IN) -> bytes:
    """One update for ``updates``. pycrdt's merge is superlinear in the number of updates:
    merging groups of 16 first, then those, gives the same bytes at about 0.7 µs an update
    instead of 1.25 (256 updates of the B4 trace)."""
    while len(updates) > 1:
        updates = [part[0] if len(part) == 1 else pycrdt.merge_updates(*part)
                   for part in (updates[i : i + fan_in] for i in range(0, len(updates), fan_in))]
    return updates[0]


class LocalBatch:
    """The updates of local transactions since the last entry left, in order."""

    def __init__(self) -> None:
        self.updates: list[bytes] = []
        # The updates that delete something (their delete set is not empty: an update ends with
        # a zero byte exactly when it is, lib0 writing no leading zero in a varuint).
        self._deleting: list[bytes] = []
        # This document's client and every client's clock where the batch began; None: not known.
        # (The state vector is kept encoded and read only for a batch read from the document:
        # noted after every verified frame, it is parsed for a burst's batch alone.)
        self._start: tuple[int, bytes] | None = None

    def __len__(self) -> int:
        return len(self.updates)

    def add(self, update: bytes) -> int:
        """Take one local transaction's update; returns how many the batch holds now."""
        updates = self.updates
        updates.append(update)
        if update[-1]:
            self._deleting.append(update)
        return len(updates)

    def begin_at(self, doc: pycrdt.Doc[Any]) -> None:
        """Note where the next batch begins: the document's own clock now. Only with no
        transaction open and the batch empty (else the start stays unknown)."""
        if doc._txn is not None or self.updates:
            self._start = None
            return
        self._start = (doc.client_id, doc.get_state())

    def take(self, doc: pycrdt.Doc[Any], limit: int) -> list[bytes]:
        """The batch as updates of at most ``limit`` bytes each where it can be (one, usually);
        the batch is empty afterwards and the next one begins where this one ends."""
        updates, deleting, start = self.updates, self._deleting, self._start
        self.updates, self._deleting = [], []
        if not updates:
            return []
        out = self._read(doc, deleting, start, limit) if len(updates) >= READ_FROM else None
        if out is None:
            out = _merged_within(updates, limit)
        self.begin_at(doc)
        return out

    @staticmethod
    def _read(doc: pycrdt.Doc[Any], deleting: list[bytes], start: tuple[int, bytes] | None,
              limit: int) -> list[bytes] | None:
        """The batch read from the document (see the module's docstring), or None where a
        check does not hold."""
        if start is None or doc._txn is not None or doc.client_id != start[0]:
            return None
        client, before = start[0], read_state(start[1])
        now = doc.get_state()
        clocks = read_state(now)
        clock = before.get(client, 0)
        if clocks.keys() != before.keys() | {client} or clocks[client] < clock \
                or any(clocks[other] != before[other] for other in before if other != client):
            return None  # (another client's clock moved: a remote update, or an import)
        if clock:
            clocks[client] = clock
        else:
            clocks.pop(client, None)
        diff = doc.get_update(write_state(clocks))
        whole = doc.get_update(now)  # no struct (a zero count), then the whole delete set
        own = pycrdt.get_update(merged(deleting), now) if deleting else b"\x00\x00"  # the same, the batch's
        if whole[0] or own[0] or not diff.endswith(whole[1:]):
            return None
        update = diff[: len(diff) - len(whole) + 1] + own[1:]
        if len(update) > limit:
            return None
        return [update]


def _merged_within(updates: list[bytes], limit: int) -> list[bytes]:
    """The updates merged into as few as fit ``limit`` bytes each (one alone may be over)."""
    if sum(len(update) for update in updates) <= limit:
        return [merged(updates)]  # the usual case: one entry
    out: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for update in updates:
        if group and size + len(update) > limit:
            out.append(merged(group))
            group, size = [], 0
        group.append(update)
        size += len(update)
    out.append(merged(group))
    return out


__all__ = ["READ_FROM", "LocalBatch", "merged"]
