"""Typed change events: what changed, in which shared object, and who changed it.

One event is produced per shared object per transaction, so a grouped edit
(``with space.transaction(): ...``) or a remote entry arrives as one event per object it
touched rather than a burst of fragments. ``local`` tells an application's own edits from
those of others, and ``author`` names the member whose verified entry carried a remote
change, so a UI can attribute it without trusting anything the relay says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


@dataclass(frozen=True)
class TextRange:
    """One changed range of a text, in the coordinates of the text after the change.

    ``insert`` and ``format`` cover ``[index, index + length)`` of the new text; ``delete``
    says ``length`` characters were removed at ``index``. Positions are ``SharedText``'s: an
    embed counts as one character.
    """

    index: int
    length: int
    action: Literal["insert", "delete", "format"]
    attributes: dict[str, Any] | None = None


@dataclass(frozen=True)
class TextChange:
    """A change to a shared text, as a Yjs delta of retain / insert / delete items, counted in
    ``SharedText`` positions (characters, an embed as one; an inserted embed is its value)."""

    text: str  # the text's name
    delta: list[dict[str, Any]]
    local: bool
    author: str | None  # member id of the remote author; None for local changes
    kind: ClassVar[Literal["text"]] = "text"

    @property
    def name(self) -> str:
        return self.text

    @property
    def ranges(self) -> list[TextRange]:
        """The delta as explicit ranges, so callers need not replay retains themselves."""
        ranges: list[TextRange] = []
        index = 0
        for op in self.delta:
            attributes = op.get("attributes")
            if "insert" in op:
                inserted = op["insert"]
                length = len(inserted) if isinstance(inserted, str) else 1
                ranges.append(TextRange(index, length, "insert", attributes))
                index += length
            elif "delete" in op:
                ranges.append(TextRange(index, int(op["delete"]), "delete"))
            elif "retain" in op:
                length = int(op["retain"])
                if attributes:
                    ranges.append(TextRange(index, length, "format", attributes))
                index += length
        return ranges


@dataclass(frozen=True)
class KeyChange:
    """One key of a map set or removed.

    Values are plain Python. Yjs frees a removed nested map or list, so ``old`` is None when
    the previous value was one.
    """

    action: Literal["add", "update", "delete"]
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class NestedChange:
    """A change inside a nested map or list, ``path`` leading to it from the shared object.

    Exactly one of ``delta`` (the nested object is a list) and ``keys`` (it is a map) is set.
    """

    path: tuple[str | int, ...]
    delta: list[dict[str, Any]] | None = None
    keys: dict[str, KeyChange] | None = None


@dataclass(frozen=True)
class ListChange:
    """A change to a shared list: its own items (``delta``) and inside nested items (``nested``)."""

    name: str
    delta: list[dict[str, Any]]  # retain / insert (plain values) / delete; empty if only nested items changed
    local: bool
    author: str | None
    nested: list[NestedChange] = field(default_factory=list)
    kind: ClassVar[Literal["list"]] = "list"


@dataclass(frozen=True)
class MapChange:
    """A change to a shared map: its own keys (``keys``) and inside nested values (``nested``)."""

    name: str
    keys: dict[str, KeyChange]
    local: bool
    author: str | None
    nested: list[NestedChange] = field(default_factory=list)
    kind: ClassVar[Literal["map"]] = "map"

    @property
    def changed_keys(self) -> set[str]:
        """Top-level keys whose value was set, removed, or changed inside."""
        keys = set(self.keys)
        keys.update(str(change.path[0]) for change in self.nested if change.path)
        return keys


@dataclass(frozen=True)
class TableChange:
    """A change to a shared table, by row id; ``updated`` maps a row id to its changed columns."""

    name: str
    inserted: list[str]
    updated: dict[str, list[str]]
    deleted: list[str]
    local: bool
    author: str | None
    kind: ClassVar[Literal["table"]] = "table"


Change = TextChange | ListChange | MapChange | TableChange

__all__ = [
    "Change",
    "KeyChange",
    "ListChange",
    "MapChange",
    "NestedChange",
    "TableChange",
    "TextChange",
    "TextRange",
]
