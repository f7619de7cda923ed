"""A collaborative map: a dict of str keys to plain values or nested maps and lists.

Concurrent writes to the same key resolve last-writer-wins (by Yjs's deterministic rule, so
every member agrees); writes to different keys, or inside a nested map, all survive.
Writing a value equal to the current one is skipped, so re-saving a form does not override
a concurrent change someone else made to that field.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, ClassVar, Literal

import pycrdt

from ..errors import ArgumentTypeError, MissingKeyError, ObjectKindError
from .array import SharedList
from .changes import Change, MapChange
from .feed import ChangeFeed, ChangeStream
from .gate import DELETE_BYTES, Gate, value_size
from .values import check_plain, same, to_plain, to_shared


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise ArgumentTypeError(f"map keys must be str, not {type(key).__name__}")
    return key


class SharedMap(MutableMapping[str, Any]):
    """A dict shared by the members of a space (also the handle on a nested map)."""

    kind: ClassVar[Literal["map"]] = "map"

    def __init__(self, name: str, ymap: pycrdt.Map[Any], guard: Gate, feed: ChangeFeed) -> None:
        self.name = name  # the name of the shared object this map is (or is nested in)
        self._ymap = ymap
        self._guard = guard
        self._feed = feed

    # --- reading ----------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if _key(key) not in self._ymap:
            raise MissingKeyError(key)
        return to_plain(self._ymap[key])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._ymap

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._ymap.keys()))  # Yjs map order differs between members

    def __len__(self) -> int:
        return len(self._ymap)

    def to_py(self) -> dict[str, Any]:
        """The whole map as plain Python."""
        plain: dict[str, Any] = to_plain(self._ymap)
        return plain

    def _nested(self, key: str, shared_type: type[Any], what: str) -> Any:
        if _key(key) not in self._ymap:
            raise MissingKeyError(key)
        value = self._ymap[key]
        if not isinstance(value, shared_type):
            held = type(to_plain(value)).__name__
            raise ObjectKindError(f"{key!r} of {self.name!r} holds {held}, not a nested {what}")
        return value

    def get_map(self, key: str) -> SharedMap:
        """A handle on the nested map at ``key``, to edit it in place."""
        return SharedMap(self.name, self._nested(key, pycrdt.Map, "map"), self._guard, self._feed)

    def get_list(self, key: str) -> SharedList:
        """A handle on the nested list at ``key``, to edit it in place."""
        return SharedList(self.name, self._nested(key, pycrdt.Array, "list"), self._guard, self._feed)

    # --- writing ----------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self._guard()
        checked = check_plain(value, repr(_key(key)))
        self._guard.charge(value_size(checked, key))
        self._write(key, checked)

    def _write(self, key: str, checked: Any) -> None:
        if key in self._ymap and same(to_plain(self._ymap[key]), checked):
            return
        self._ymap[key] = to_shared(checked)

    def set(self, key: str, value: Any) -> None:
        self[key] = value

    def __delitem__(self, key: str) -> None:
        self._guard()
        if _key(key) not in self._ymap:
            raise MissingKeyError(key)
        self._guard.charge(DELETE_BYTES, items=0)
        del self._ymap[key]

    def delete(self, key: str) -> None:
        """Remove ``key``; ``MissingKeyError`` (a KeyError) if it is not there."""
        del self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several keys as one edit (arguments as for ``dict.update``); all are checked first."""
        self._guard()
        try:
            items = dict(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ArgumentTypeError(f"update() takes what dict() takes: {exc}") from None
        checked = {_key(key): check_plain(value, repr(key)) for key, value in items.items()}
        self._guard.charge(sum(value_size(value, key) for key, value in checked.items()), items=len(checked))
        with self._ymap.doc.transaction():
            for key, value in checked.items():
                self._write(key, value)

    def clear(self) -> None:
        """Remove every key as one edit."""
        self._guard()
        self._guard.charge(DELETE_BYTES * len(self._ymap), items=0)
        with self._ymap.doc.transaction():
            for key in list(self._ymap.keys()):
                del self._ymap[key]

    def popitem(self) -> tuple[str, Any]:
        """Remove and return the first (key, value) in key order; ``MissingKeyError`` when empty."""
        for key in self:
            value = self[key]
            del self[key]
            return key, value
        raise MissingKeyError(f"{self.name!r} is empty")

    def __repr__(self) -> str:
        return f"SharedMap({self.name!r}, {self.to_py()!r})"

    def changes(self) -> ChangeStream[MapChange]:
        """Changes from now on to the shared map this is (or is nested in)."""
        name = self.name

        def select(change: Change) -> MapChange | None:
            return change if isinstance(change, MapChange) and change.name == name else None

        return self._feed.stream(select)


__all__ = ["SharedMap"]
