"""A collaborative rich text: characters with optional formatting attributes.

Formatting follows Yjs (and Quill): attributes are key/value marks on ranges of characters,
a None value removes a mark, and concurrent formatting of overlapping ranges merges per
attribute. Edits apply locally at once and reach others once verified.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pycrdt

from .changes import Change, TextChange
from .feed import ChangeFeed, ChangeStream
from .gate import DELETE_BYTES, ITEM_BYTES, Gate, value_size
from .values import check_plain, check_str, to_plain, utf8_len


def _attributes(attrs: Any) -> dict[str, Any]:
    if not isinstance(attrs, dict):
        raise TypeError(f"formatting attributes must be a dict, not {type(attrs).__name__}")
    checked: dict[str, Any] = check_plain(attrs, "attributes", depth=-1)  # depth counts from each value
    return checked


class SharedText:
    """A collaborative text; positions and lengths count Python characters of ``str(text)``."""

    kind: ClassVar[Literal["text"]] = "text"

    def __init__(self, name: str, ytext: pycrdt.Text, guard: Gate, feed: ChangeFeed) -> None:
        self.name = name
        self._ytext = ytext
        self._guard = guard
        self._feed = feed
        # Yrs counts UTF-8 bytes; converting a character index means reading the whole text,
        # which made typing quadratic. While the text is known to be ASCII the two agree, so
        # edits skip the conversion. None: unknown (after a remote update), checked once.
        self._ascii: bool | None = None

    def forget_ascii(self) -> None:
        """Called by the document after a remote update: the text may now hold anything."""
        self._ascii = None

    def _is_ascii(self) -> bool:
        if self._ascii is None:
            self._ascii = str(self._ytext).isascii()
        return self._ascii

    def insert(self, index: int, s: str, attrs: dict[str, Any] | None = None) -> None:
        """Insert ``s`` at ``index``.

        With ``attrs`` None the new characters take the formatting of the text they are typed
        into (as in an editor); pass a dict to set marks explicitly (``{}`` for none).
        """
        self._guard()
        if not isinstance(s, str):
            raise TypeError(f"can only insert str into a text, not {type(s).__name__}")
        check_str(s, "inserted text")
        checked = None if attrs is None else _attributes(attrs)
        # The characters, and a mark opening and closing around them for each attribute.
        marks = 0 if checked is None else 2 * sum(value_size(v, k) for k, v in checked.items())
        self._guard.charge(ITEM_BYTES + 5 + utf8_len(s) + marks, items=1 + 2 * len(checked or ()))
        if self._is_ascii():
            self._check_index(index, len(self._ytext))
            offset = index
        else:
            current = str(self._ytext)
            self._check_index(index, len(current))
            offset = utf8_len(current[:index])
        if s:
            self._ytext.insert(offset, s, checked)
            if not s.isascii():
                self._ascii = False

    def delete(self, index: int, length: int) -> None:
        """Remove ``length`` characters starting at ``index``."""
        self._guard()
        start, size = self._byte_range(index, length)
        self._guard.charge(DELETE_BYTES, items=0)
        if size:
            del self._ytext[start : start + size]

    def format(self, index: int, length: int, attrs: dict[str, Any]) -> None:
        """Set formatting marks on ``length`` characters at ``index``; a None value removes a mark."""
        self._guard()
        start, size = self._byte_range(index, length)
        checked = _attributes(attrs)
        if size and checked:
            # A mark opens and closes at every boundary between differently formatted runs.
            runs = 2 + len(self._ytext.diff())
            self._guard.charge(2 * runs * sum(value_size(v, k) for k, v in checked.items()),
                               items=2 * runs * len(checked))
            self._ytext.format(start, start + size, checked)

    def to_delta(self) -> list[dict[str, Any]]:
        """The text as formatted runs: ``[{"insert": "Hi", "attributes": {"bold": True}}, ...]``."""
        return [
            {"insert": to_plain(content), **({"attributes": to_plain(attrs)} if attrs else {})}
            for content, attrs in self._ytext.diff()
        ]

    def to_py(self) -> str:
        return str(self._ytext)

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"a text index must be an int, not {type(index).__name__}")
        if not 0 <= index <= size:
            raise IndexError(f"index {index} is outside the text (length {size})")

    def _byte_range(self, index: int, length: int) -> tuple[int, int]:
        """Yrs addresses text in UTF-8 bytes; the API in Python characters (code points)."""
        ascii_only = self._is_ascii()
        current = "" if ascii_only else str(self._ytext)
        size = len(self._ytext) if ascii_only else len(current)
        self._check_index(index, size)
        if isinstance(length, bool) or not isinstance(length, int):
            raise TypeError(f"a length must be an int, not {type(length).__name__}")
        if length < 0 or index + length > size:
            raise IndexError(f"cannot use {length} characters at {index} of a text of length {size}")
        if ascii_only:
            return index, length
        return utf8_len(current[:index]), utf8_len(current[index : index + length])

    def __str__(self) -> str:
        return str(self._ytext)

    def __len__(self) -> int:
        """Length in Python characters (pycrdt's own ``len`` counts UTF-8 bytes)."""
        return len(self._ytext) if self._is_ascii() else len(str(self._ytext))

    def __repr__(self) -> str:
        return f"SharedText({self.name!r}, {len(self)} characters)"

    def changes(self) -> ChangeStream[TextChange]:
        """Every change to this text from now on, local and remote, in the order they were applied."""
        name = self.name

        def select(change: Change) -> TextChange | None:
            return change if isinstance(change, TextChange) and change.text == name else None

        return self._feed.stream(select)


__all__ = ["SharedText"]
