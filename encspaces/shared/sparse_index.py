"""Character positions and UTF-8 offsets in a text with few non-ASCII characters.

Most texts that are not ASCII hold only a few characters that are not: code or English prose
with some smart quotes, accents, arrows or an emoji. For them ``TextIndex``'s chunked copy of
the whole text is more than needed: an offset is the character index plus the extra UTF-8
bytes (1 to 3 each) of the non-ASCII characters before it. ``SparseIndex`` keeps those
characters alone, no text, split at a gap (as a gap buffer is) around the last edit point:

- ``_head``: the ones before the gap, by position from the start, ascending;
- ``_tail``: the ones after it, by position from the end (``chars - position``), the one
  nearest the gap last;
- ``_head_extra``: the extra bytes of the head's characters, so an offset at the gap is one
  addition.

Typing at the gap shifts nothing: the head is before the edit and the tail counts from the end,
which moves with the text. An edit elsewhere first moves the gap there, moving the characters
in between from one side to the other (bisect and a slice). While this index holds at most
``SPARSE_MAX`` characters, that bounds what an edit costs whatever the document's size; past
it the index says so (``crowded``) and ``SharedText`` builds a ``TextIndex`` instead.

Each character is one int, its extra bytes ``e`` (1–3) in the two low bits: ``4 * position + e``
in the head, ``4 * distance - e`` in the tail (``distance = chars - position >= 1``). Both keep
each list sorted by position, a head key below ``4 * p`` is a character before ``p``, a tail key
below ``4 * (chars - p)`` one at or after ``p``, and the same character's head key is
``4 * chars`` minus its tail key, so moving the gap is arithmetic on a slice.

An embed is one position and one Yrs unit: as ASCII here, nothing to keep. Pure: strings in,
offsets out (``Positions`` has the part that follows a Yrs delta).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from itertools import islice

from .text_index import Positions

# Non-ASCII characters; past this a TextIndex converts (SharedText._positions). Typing in one
# place costs this index ~0.35 µs an edit whatever the count, a TextIndex 1.7–3.6; edits at
# random places move the gap, and at 64 characters cost about what a TextIndex's do (2.0 and 2.1
# µs in 10 KB, 2.8 and 3.1 in 1 MB; bench/README.md, "Replay of every josephg/editing-traces trace").
SPARSE_MAX = 64

_NON_ASCII = re.compile("[^\x00-\x7f]")


def _extras(s: str, start: int) -> list[int]:
    """Head keys of the non-ASCII characters of ``s`` placed at position ``start``."""
    keys = []
    for found in _NON_ASCII.finditer(s):
        code = ord(found.group())
        keys.append(4 * (start + found.start()) + (1 if code < 0x800 else 2 if code < 0x10000 else 3))
    return keys


def sparse(text: str) -> SparseIndex | None:
    """A ``SparseIndex`` of ``text``, or None when it holds more than ``SPARSE_MAX`` non-ASCII
    characters (counted no further)."""
    if next(islice(_NON_ASCII.finditer(text), SPARSE_MAX, None), None) is not None:
        return None
    return SparseIndex(text)


class SparseIndex(Positions):
    """The non-ASCII characters of a text, which convert character positions to UTF-8 offsets."""

    __slots__ = ("_head", "_head_extra", "_tail")

    def __init__(self, text: str = "") -> None:
        keys = [] if text.isascii() else _extras(text, 0)
        self.chars = len(text)
        self.utf8 = self.chars + sum(key & 3 for key in keys)
        self._head: list[int] = []
        self._head_extra = 0
        whole = 4 * self.chars  # the gap at position 0: every character in the tail, the first last
        self._tail = [whole - key for key in reversed(keys)]
        self.crowded = len(keys) > SPARSE_MAX

    def __len__(self) -> int:
        """How many non-ASCII characters the text holds."""
        return len(self._head) + len(self._tail)

    def _gap_at(self, index: int) -> None:
        """Move the gap to character ``index``: the head before it, the tail at or after it."""
        head, tail = self._head, self._tail
        whole = 4 * self.chars
        if head and head[-1] > 4 * index:  # characters at or after index: to the tail
            j = bisect_left(head, 4 * index)
            moved = head[j:]
            del head[j:]
            self._head_extra -= sum(key & 3 for key in moved)
            tail.extend([whole - key for key in reversed(moved)])
        elif tail and tail[-1] >= 4 * (self.chars - index):  # characters before index: to the head
            j = bisect_left(tail, 4 * (self.chars - index))
            moved = tail[j:]
            del tail[j:]
            self._head_extra += sum(-key & 3 for key in moved)
            head.extend([whole - key for key in reversed(moved)])

    # --- conversions --------------------------------------------------------------------------

    def offset(self, index: int) -> int:
        """The UTF-8 offset of character ``index`` (0 <= index <= chars)."""
        self._gap_at(index)
        return index + self._head_extra

    def index(self, offset: int) -> int:
        """The character index at UTF-8 ``offset`` (0 <= offset <= utf8, on a character boundary).

        Moves the gap one character at a time (the characters' byte positions depend on the
        extras before them): only remote deltas convert this way."""
        if not 0 <= offset <= self.utf8:
            raise ValueError(f"UTF-8 offset {offset} is outside the text ({self.utf8} bytes)")
        head, tail = self._head, self._tail
        whole = 4 * self.chars
        # Head: characters whose first byte is before offset; tail: the others.
        while head and (head[-1] >> 2) + self._head_extra - (head[-1] & 3) >= offset:
            key = head.pop()
            self._head_extra -= key & 3
            tail.append(whole - key)
        while tail and self.chars - ((tail[-1] + 3) >> 2) + self._head_extra < offset:
            key = tail.pop()
            self._head_extra += -key & 3
            head.append(whole - key)
        if head and (head[-1] >> 2) + self._head_extra >= offset:
            raise ValueError(f"UTF-8 offset {offset} is inside a character")
        return offset - self._head_extra

    # --- edits --------------------------------------------------------------------------------

    def insert(self, index: int, s: str) -> int:
        """Insert ``s`` at character ``index``; returns the UTF-8 offset it went to."""
        self._gap_at(index)
        offset = index + self._head_extra
        if s.isascii():  # (the usual case: nothing moves, the tail counts from the end)
            self.chars += len(s)
            self.utf8 += len(s)
            return offset
        keys = _extras(s, index)
        extra = sum(key & 3 for key in keys)
        self._head.extend(keys)  # at the end of the head: the tail is after s
        self._head_extra += extra
        self.chars += len(s)
        self.utf8 += len(s) + extra
        if len(self) > SPARSE_MAX:
            self.crowded = True
        return offset

    def delete(self, index: int, length: int) -> tuple[int, int]:
        """Remove ``length`` characters at ``index``; returns their UTF-8 (offset, size)."""
        if index + length > self.chars:
            raise IndexError("delete past the end of the text")
        self._gap_at(index)
        offset = index + self._head_extra
        tail = self._tail
        removed = length
        bound = 4 * (self.chars - index - length)  # tail keys from here on are at or after the end
        while tail and tail[-1] >= bound:
            removed += -tail.pop() & 3
        self.chars -= length
        self.utf8 -= removed
        return offset, removed


__all__ = ["SPARSE_MAX", "SparseIndex", "sparse"]
