"""Pure helpers of the editor: moving positions through text deltas, and peers' presence.

A position is a character offset into the text. When a change lands before or inside the
text a cursor is on, the cursor must move with that text, never jump to another place: each
Yjs delta (retain / insert / delete, applied left to right) is replayed on the position.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..terminal import JOINERS

Delta = Sequence[dict[str, Any]]

PALETTE = ("#e06c75", "#61afef", "#98c379", "#e5c07b", "#c678dd", "#56b6c2", "#d19a66", "#ff79c6")
MAX_NAME = 32
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def _inserted_length(value: Any) -> int:
    return len(value) if isinstance(value, str) else 1  # an embed counts as one position


def transform(offset: int, delta: Delta, *, stick_right: bool) -> int:
    """Where ``offset`` is after ``delta``.

    Text inserted exactly at ``offset`` goes before the position when ``stick_right`` (the
    position stays with the character after it, as a caret does) and after it otherwise (as the
    end of a selection does, so that text typed just after a selection is not pulled into it).
    """
    index = 0
    for op in delta:
        if index > offset:
            break
        if "retain" in op:
            index += int(op["retain"])
        elif "insert" in op:
            n = _inserted_length(op["insert"])
            if index < offset or stick_right:
                offset += n
            index += n
        elif "delete" in op:
            offset = max(index, offset - int(op["delete"])) if offset > index else offset
    return offset


def transform_range(anchor: int, cursor: int, deltas: Iterable[Delta]) -> tuple[int, int]:
    """A selection (anchor, cursor) moved through ``deltas``, still covering the same text.

    The lower end sticks right and the upper end left, so text inserted at either edge stays
    outside the selection; a collapsed caret sticks right.
    """
    for delta in deltas:
        low = min(anchor, cursor)
        collapsed = anchor == cursor
        anchor = transform(anchor, delta, stick_right=collapsed or anchor == low)
        cursor = transform(cursor, delta, stick_right=collapsed or cursor == low)
    return anchor, cursor


def replace_delta(index: int, deleted: int, inserted: str) -> list[dict[str, Any]]:
    """The delta of replacing ``deleted`` characters at ``index`` by ``inserted``."""
    delta: list[dict[str, Any]] = []
    if index:
        delta.append({"retain": index})
    if deleted:
        delta.append({"delete": deleted})
    if inserted:
        delta.append({"insert": inserted})
    return delta


def diff(old: str, new: str) -> tuple[int, int, str]:
    """One replacement (index, deleted length, inserted text) turning ``old`` into ``new``."""
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[len(old) - 1 - end] == new[len(new) - 1 - end]:
        end += 1
    return start, len(old) - start - end, new[start : len(new) - end]


def plain_text_delta(delta: Delta) -> bool:
    """True when every insert of ``delta`` is text (the editor shows no embeds)."""
    return all(isinstance(op["insert"], str) for op in delta if "insert" in op)


# --- peers -----------------------------------------------------------------------------------------


def colour_for(member: str) -> str:
    """A stable colour for a member, when they do not choose one."""
    return PALETTE[hashlib.blake2b(member.encode(), digest_size=2).digest()[0] % len(PALETTE)]


# Dropped from names: controls, format characters (bidi overrides and isolates reorder what is
# shown after them, others take no cell), surrogates, private-use and unassigned code points,
# and the line and paragraph separators; but the joiners (``terminal.JOINERS``) that emoji
# sequences and Persian or Indic names need.
_DROPPED = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def clean_name(value: Any, fallback: str) -> str:
    """A display name from another member's presence: one line, short, and nothing in it that
    drives the terminal or hides or reorders what is shown (a name is a label: such characters
    are left out, where a text shows stand-ins for them)."""
    if not isinstance(value, str):
        return fallback
    text = "".join(ch for ch in value if ch in JOINERS or unicodedata.category(ch) not in _DROPPED).strip()
    return text[:MAX_NAME] or fallback


def _offset(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass
class Peer:
    """Another member's view of this text: name, colour, caret and selection anchor."""

    member: str
    name: str
    colour: str
    cursor: int
    anchor: int

    @classmethod
    def from_presence(cls, member: str, state: dict[str, Any], doc: str) -> Peer | None:
        """The peer's cursor in ``doc``, or None when their presence is elsewhere or malformed."""
        if state.get("doc", doc) != doc:
            return None
        cursor = _offset(state.get("cursor"))
        if cursor is None:
            return None
        anchor = cursor
        selection = state.get("selection")
        if isinstance(selection, list | tuple) and len(selection) == 2:
            start, end = _offset(selection[0]), _offset(selection[1])
            if start is not None and end is not None:
                anchor = start if end == cursor else end
        colour = state.get("colour")
        return cls(
            member=member,
            name=clean_name(state.get("name"), member[:8]),
            colour=colour if isinstance(colour, str) and _HEX.fullmatch(colour) else colour_for(member),
            cursor=cursor,
            anchor=anchor,
        )


__all__ = [
    "PALETTE",
    "Peer",
    "clean_name",
    "colour_for",
    "diff",
    "plain_text_delta",
    "replace_delta",
    "transform",
    "transform_range",
]
