"""Turning pycrdt's per-type events into one typed change per shared object and transaction.

pycrdt reports a deep change as a list of events, one per touched (possibly nested) type,
holding live pycrdt objects that are only valid during the callback. Everything here is
copied out as plain Python while the transaction is still readable.

Two things in those events cannot be taken at face value, so the document passes in what
the object looked like before the change: yrs counts text positions in UTF-8 bytes (the API
counts characters), and under concurrency it can omit removed keys from a map event or call
a replacement an "add" (both found by the random convergence tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pycrdt

from .changes import Change, KeyChange, ListChange, MapChange, NestedChange, TableChange, TextChange
from .kinds import ObjectKind
from .values import to_plain


def _path(event: object) -> tuple[str | int, ...]:
    return tuple(getattr(event, "path", ()) or ())


def _plain_delta(delta: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for op in delta:
        item: dict[str, Any] = {}
        for key, value in op.items():
            item[key] = to_plain(value) if key in ("insert", "attributes") else value
        out.append(item)
    return out


def _removed(value: Any) -> Any:
    """A value taken out of the document; nested types are freed by Yjs and cannot be read back."""
    if isinstance(value, pycrdt.Map | pycrdt.Array | pycrdt.Text):
        return None
    return to_plain(value)


def _plain_keys(keys: dict[str, dict[str, Any]]) -> dict[str, KeyChange]:
    out: dict[str, KeyChange] = {}
    for key, change in keys.items():
        action = change.get("action")
        if action == "add":
            out[key] = KeyChange("add", None, to_plain(change.get("newValue")))
        elif action == "update":
            out[key] = KeyChange("update", _removed(change.get("oldValue")), to_plain(change.get("newValue")))
        elif action == "delete":
            out[key] = KeyChange("delete", _removed(change.get("oldValue")), None)
    return out


def _nested(event: object, path: tuple[str | int, ...]) -> NestedChange | None:
    if isinstance(event, pycrdt.MapEvent):
        return NestedChange(path, keys=_plain_keys(getattr(event, "keys", {})))
    if isinstance(event, pycrdt.ArrayEvent | pycrdt.TextEvent):
        return NestedChange(path, delta=_plain_delta(getattr(event, "delta", [])))
    return None


def _char_counts(delta: list[dict[str, Any]], before: str | bytes) -> list[dict[str, Any]]:
    """Yrs counts retains and deletes in UTF-8 bytes; recount them in characters of the old text.

    Retained and deleted spans are both spans of the text as it was before the change, so
    walking its encoding converts every count exactly. ``before``: that text, or its encoding.
    """
    if isinstance(before, str):
        if before.isascii():
            return delta
        encoded = before.encode("utf-8")
    else:
        encoded = before
    cursor = 0
    out: list[dict[str, Any]] = []
    for op in delta:
        for key in ("retain", "delete"):
            if key in op:
                size = int(op[key])
                span = encoded[cursor : cursor + size].decode("utf-8", errors="replace")
                cursor += size
                op = {**op, key: len(span)}
        out.append(op)
    return out


def text_change(
    name: str, events: Sequence[object], local: bool, author: str | None, before: str | bytes = ""
) -> TextChange | None:
    """``before`` is the text as it was before the change, as positions count it (each embed
    as one character of one UTF-8 byte, ``text.change_shape``; ``str()`` leaves embeds out,
    which shifted every count past one), or its UTF-8 encoding, needed to count in characters."""
    delta: list[dict[str, Any]] = []
    for event in events:
        if not _path(event):
            delta.extend(_plain_delta(getattr(event, "delta", [])))
    return TextChange(name, _char_counts(delta, before), local, author) if delta else None


def list_change(name: str, events: Sequence[object], local: bool, author: str | None) -> ListChange | None:
    delta: list[dict[str, Any]] = []
    nested: list[NestedChange] = []
    for event in events:
        path = _path(event)
        if not path:
            delta.extend(_plain_delta(getattr(event, "delta", [])))
        elif (change := _nested(event, path)) is not None:
            nested.append(change)
    return ListChange(name, delta, local, author, nested) if delta or nested else None


def map_change(
    name: str,
    events: Sequence[object],
    local: bool,
    author: str | None,
    keys_before: frozenset[str] = frozenset(),
    keys_now: frozenset[str] = frozenset(),
    root: Any = None,
) -> MapChange | None:
    """``keys_before``/``keys_now`` are the map's keys around the change.

    Yrs sometimes reports a remote deletion as a map event with no keys at all (seen when a
    member deletes an entry another member edited inside concurrently), so keys that came or
    went are taken from the key sets and the event only adds what it knows about values.
    """
    keys: dict[str, KeyChange] = {}
    nested: list[NestedChange] = []
    for event in events:
        path = _path(event)
        if not path:
            keys.update(_plain_keys(getattr(event, "keys", {})))
        elif (change := _nested(event, path)) is not None:
            nested.append(change)
    keys = _reconcile(keys, keys_before, keys_now, root)
    return MapChange(name, keys, local, author, nested) if keys or nested else None


def _reconcile(
    reported: dict[str, KeyChange], before: frozenset[str], now: frozenset[str], root: Any
) -> dict[str, KeyChange]:
    """Make each key's action agree with whether it was there before and is there now.

    Under concurrency yrs can leave a removed key out of the event, or call "add" what
    replaced an existing value; values the event gives are kept, actions come from the sets.
    """
    out: dict[str, KeyChange] = {}
    for key in sorted(set(reported) | (before ^ now)):
        change = reported.get(key, KeyChange("update"))
        if key in before and key not in now:
            out[key] = KeyChange("delete", change.old, None)
        elif key in now and key not in before:
            out[key] = KeyChange("add", None, to_plain(root[key]) if root is not None else change.new)
        elif key in now:
            known = change.action != "delete" or root is None
            out[key] = KeyChange("update", change.old, change.new if known else to_plain(root[key]))
    return out


def table_change(
    name: str,
    events: Sequence[object],
    local: bool,
    author: str | None,
    rows_before: frozenset[str] = frozenset(),
    rows_now: frozenset[str] = frozenset(),
) -> TableChange | None:
    """Rows are a root map of row id -> row map; a change one level down is a column update.

    Which rows came and went is read from the row ids around the change, not from the
    event's keys, for the reason given in ``map_change``.
    """
    inserted = set(rows_now - rows_before)
    deleted = set(rows_before - rows_now)
    updated: dict[str, set[str]] = {}
    for event in events:
        path = _path(event)
        if not path:
            for row_id, change in getattr(event, "keys", {}).items():
                if change.get("action") == "update":  # a row replaced whole: every column it has now changed
                    new = change.get("newValue")
                    columns = set(new.keys()) if isinstance(new, pycrdt.Map) else set()
                    updated.setdefault(row_id, set()).update(columns)
        else:
            row_id = str(path[0])
            columns = {str(path[1])} if len(path) > 1 else set(getattr(event, "keys", {}))
            updated.setdefault(row_id, set()).update(columns)
    for row_id in inserted | deleted:
        updated.pop(row_id, None)
    for row_id in [row_id for row_id in updated if row_id not in rows_now]:
        del updated[row_id]  # an edit inside a row that is not (or no longer) there
    if not (inserted or deleted or updated):
        return None
    return TableChange(
        name,
        sorted(inserted),
        {row_id: sorted(columns) for row_id, columns in sorted(updated.items())},
        sorted(deleted),
        local,
        author,
    )


def change_from_events(
    kind: ObjectKind,
    name: str,
    events: Sequence[object],
    local: bool,
    author: str | None,
    before: Any = None,
    now: Any = None,
    root: Any = None,
) -> Change | None:
    """``before``/``now``: for a text its content before the change; for a map or table its key sets."""
    if kind == "text":
        return text_change(name, events, local, author, before or "")
    if kind == "list":
        return list_change(name, events, local, author)
    if kind == "map":
        return map_change(name, events, local, author, before or frozenset(), now or frozenset(), root)
    return table_change(name, events, local, author, before or frozenset(), now or frozenset())


def appeared(kind: ObjectKind, name: str, root: Any, local: bool, author: str | None) -> Change | None:
    """The change that brought an object we were not yet watching into existence: all of it, inserted."""
    if kind == "text":
        delta = [
            {"insert": to_plain(content), **({"attributes": to_plain(attrs)} if attrs else {})}
            for content, attrs in root.diff()
        ]
        return TextChange(name, delta, local, author) if delta else None
    if kind == "list":
        items = to_plain(root)
        return ListChange(name, [{"insert": items}], local, author) if items else None
    if kind == "map":
        keys = {key: KeyChange("add", None, value) for key, value in to_plain(root).items()}
        return MapChange(name, keys, local, author) if keys else None
    rows = sorted(key for key, value in root.items() if isinstance(value, pycrdt.Map))
    return TableChange(name, rows, {}, [], local, author) if rows else None


__all__ = ["appeared", "change_from_events"]
