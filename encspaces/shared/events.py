"""Turning pycrdt's per-type events into one typed change per shared object and transaction.

pycrdt reports a deep change as a list of events, one per touched (possibly nested) type,
holding live pycrdt objects that are only valid during the callback. Everything here is
copied out as plain Python while the transaction is still readable.
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
            if key == "insert" and isinstance(value, list):
                item[key] = [to_plain(v) for v in value]
            elif key == "insert" and not isinstance(value, str):
                item[key] = to_plain(value)
            elif key == "attributes":
                item[key] = to_plain(value)
            else:
                item[key] = value
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


def text_change(name: str, events: Sequence[object], local: bool, author: str | None) -> TextChange | None:
    delta: list[dict[str, Any]] = []
    for event in events:
        if not _path(event):
            delta.extend(_plain_delta(getattr(event, "delta", [])))
    return TextChange(name, delta, local, author) if delta else None


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


def map_change(name: str, events: Sequence[object], local: bool, author: str | None) -> MapChange | None:
    keys: dict[str, KeyChange] = {}
    nested: list[NestedChange] = []
    for event in events:
        path = _path(event)
        if not path:
            keys.update(_plain_keys(getattr(event, "keys", {})))
        elif (change := _nested(event, path)) is not None:
            nested.append(change)
    return MapChange(name, keys, local, author, nested) if keys or nested else None


def table_change(name: str, events: Sequence[object], local: bool, author: str | None) -> TableChange | None:
    """Rows are a root map of row id -> row map; a change one level down is a column update."""
    inserted: set[str] = set()
    deleted: set[str] = set()
    updated: dict[str, set[str]] = {}
    for event in events:
        path = _path(event)
        if not path:
            for row_id, change in getattr(event, "keys", {}).items():
                action = change.get("action")
                if action == "add":
                    inserted.add(row_id)
                elif action == "delete":
                    deleted.add(row_id)
                elif action == "update":  # a row replaced whole: every column it has now changed
                    new = change.get("newValue")
                    columns = set(new.keys()) if isinstance(new, pycrdt.Map) else set()
                    updated.setdefault(row_id, set()).update(columns)
        else:
            row_id = str(path[0])
            columns = {str(path[1])} if len(path) > 1 else set(getattr(event, "keys", {}))
            updated.setdefault(row_id, set()).update(columns)
    for row_id in inserted | deleted:
        updated.pop(row_id, None)
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
    kind: ObjectKind, name: str, events: Sequence[object], local: bool, author: str | None
) -> Change | None:
    if kind == "text":
        return text_change(name, events, local, author)
    if kind == "list":
        return list_change(name, events, local, author)
    if kind == "map":
        return map_change(name, events, local, author)
    return table_change(name, events, local, author)


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
    rows = sorted(root.keys())
    return TableChange(name, rows, {}, [], local, author) if rows else None


__all__ = ["appeared", "change_from_events"]
