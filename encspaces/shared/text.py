"""A collaborative rich text: characters with optional formatting attributes.

Formatting follows Yjs (and Quill): attributes are key/value marks on ranges of characters,
a None value removes a mark, and concurrent formatting of overlapping ranges merges per
attribute. Edits apply locally at once and reach others once verified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pycrdt

from .changes import Change, TextChange
from .feed import ChangeFeed, ChangeStream
from .values import check_plain, to_plain


def _attributes(attrs: Any) -> dict[str, Any]:
    if not isinstance(attrs, dict):
        raise TypeError(f"formatting attributes must be a dict, not {type(attrs).__name__}")
    checked: dict[str, Any] = check_plain(attrs, "attributes")
    return checked


class SharedText:
    """A collaborative text; positions are indices into ``str(text)``."""

    kind = "text"

    def __init__(self, name: str, ytext: pycrdt.Text, guard: Callable[[], None], feed: ChangeFeed) -> None:
        self.name = name
        self._ytext = ytext
        self._guard = guard
        self._feed = feed

    def insert(self, index: int, s: str, attrs: dict[str, Any] | None = None) -> None:
        """Insert ``s`` at ``index``.

        With ``attrs`` None the new characters take the formatting of the text they are typed
        into (as in an editor); pass a dict to set marks explicitly (``{}`` for none).
        """
        self._guard()
        self._check_index(index)
        if not isinstance(s, str):
            raise TypeError(f"can only insert str into a text, not {type(s).__name__}")
        checked = None if attrs is None else _attributes(attrs)
        if s:
            self._ytext.insert(index, s, checked)

    def delete(self, index: int, length: int) -> None:
        """Remove ``length`` characters starting at ``index``."""
        self._guard()
        self._check_range(index, length)
        if length:
            del self._ytext[index : index + length]

    def format(self, index: int, length: int, attrs: dict[str, Any]) -> None:
        """Set formatting marks on ``length`` characters at ``index``; a None value removes a mark."""
        self._guard()
        self._check_range(index, length)
        checked = _attributes(attrs)
        if length and checked:
            self._ytext.format(index, index + length, checked)

    def to_delta(self) -> list[dict[str, Any]]:
        """The text as formatted runs: ``[{"insert": "Hi", "attributes": {"bold": True}}, ...]``."""
        return [
            {"insert": to_plain(content), **({"attributes": to_plain(attrs)} if attrs else {})}
            for content, attrs in self._ytext.diff()
        ]

    def to_py(self) -> str:
        return str(self._ytext)

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"a text index must be an int, not {type(index).__name__}")
        if not 0 <= index <= len(self._ytext):
            raise IndexError(f"index {index} is outside the text (length {len(self._ytext)})")

    def _check_range(self, index: int, length: int) -> None:
        self._check_index(index)
        if isinstance(length, bool) or not isinstance(length, int):
            raise TypeError(f"a length must be an int, not {type(length).__name__}")
        if length < 0 or index + length > len(self._ytext):
            raise IndexError(f"cannot use {length} characters at {index} of a text of length {len(self._ytext)}")

    def __str__(self) -> str:
        return str(self._ytext)

    def __len__(self) -> int:
        return len(self._ytext)

    def __repr__(self) -> str:
        return f"SharedText({self.name!r}, {len(self)} characters)"

    def changes(self) -> ChangeStream[TextChange]:
        """Every change to this text from now on, local and remote, in the order they were applied."""
        name = self.name

        def select(change: Change) -> TextChange | None:
            return change if isinstance(change, TextChange) and change.text == name else None

        return self._feed.stream(select)


__all__ = ["SharedText"]
