"""A collaborative list: a Python list whose items may be plain values or nested maps and lists.

Dicts and lists put into it become nested collaborative maps and lists, so two members can
edit different parts of one item concurrently and keep both edits; reading always gives
plain Python copies. Indices follow Python (negative counts from the end), but an
out-of-range index raises instead of being clamped: in a shared list an index computed
before a concurrent change is a bug worth hearing about.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import pycrdt

from ..errors import ArgumentTypeError, IndexOutOfRangeError, InvalidArgumentError, ObjectKindError
from .changes import Change, ListChange
from .feed import ChangeFeed, ChangeStream
from .gate import DELETE_BYTES, Gate, value_size
from .values import check_plain, to_plain, to_shared

if TYPE_CHECKING:
    from .mapping import SharedMap


class SharedList(MutableSequence[Any]):
    """A list shared by the members of a space (also the handle on a nested list)."""

    kind: ClassVar[Literal["list"]] = "list"

    def __init__(self, name: str, yarray: pycrdt.Array[Any], guard: Gate, feed: ChangeFeed) -> None:
        self.name = name  # the name of the shared object this list is (or is nested in)
        self._yarray = yarray
        self._guard = guard
        self._feed = feed

    # --- reading ----------------------------------------------------------------------------

    def _index(self, index: int, *, inserting: bool = False) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ArgumentTypeError(f"list indices must be int, not {type(index).__name__}")
        length = len(self._yarray)
        position = index + length if index < 0 else index
        if not 0 <= position <= (length if inserting else length - 1):
            raise IndexOutOfRangeError(f"index {index} is out of range for a list of length {length}")
        return position

    def __len__(self) -> int:
        return len(self._yarray)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return self.to_py()[index]
        return to_plain(self._yarray[self._index(index)])

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_py())

    def __eq__(self, other: object) -> bool:
        """Equal to a list (or shared list) with the same plain content, as SharedMap is to a dict."""
        if isinstance(other, SharedList):
            return self.to_py() == other.to_py()
        if isinstance(other, list):
            return self.to_py() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def to_py(self) -> list[Any]:
        """The whole list as plain Python."""
        return [to_plain(item) for item in self._yarray]

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The first position of ``value``; ``InvalidArgumentError`` (a ValueError) when absent, as ``list.index``."""
        items = self.to_py()
        for position in range(*slice(start, stop).indices(len(items))):
            if items[position] is value or items[position] == value:
                return position
        raise InvalidArgumentError(f"{value!r} is not in {self.name!r}")

    def get_map(self, index: int) -> SharedMap:
        """A handle on the nested map at ``index``, to edit it in place."""
        from .mapping import SharedMap

        item = self._yarray[self._index(index)]
        if not isinstance(item, pycrdt.Map):
            raise ObjectKindError(f"item {index} of {self.name!r} is not a map")
        return SharedMap(self.name, item, self._guard, self._feed)

    def get_list(self, index: int) -> SharedList:
        """A handle on the nested list at ``index``, to edit it in place."""
        item = self._yarray[self._index(index)]
        if not isinstance(item, pycrdt.Array):
            raise ObjectKindError(f"item {index} of {self.name!r} is not a list")
        return SharedList(self.name, item, self._guard, self._feed)

    # --- writing ----------------------------------------------------------------------------

    def insert(self, index: int, value: Any) -> None:
        """Insert ``value`` before ``index`` (``len(lst)`` appends)."""
        self._guard()
        position = self._index(index, inserting=True)
        checked = check_plain(value)
        self._guard.charge(value_size(checked))
        self._yarray.insert(position, to_shared(checked))

    def append(self, value: Any) -> None:
        self._guard()
        checked = check_plain(value)
        self._guard.charge(value_size(checked))
        self._yarray.append(to_shared(checked))

    def extend(self, values: Iterable[Any]) -> None:
        """Append several values as one edit."""
        self._guard()
        plain = [check_plain(value, f"values[{i}]") for i, value in enumerate(values)]
        self._guard.charge(sum(value_size(value) for value in plain), items=len(plain))
        if plain:
            self._yarray.extend([to_shared(value) for value in plain])

    @overload
    def __setitem__(self, index: int, value: Any) -> None: ...

    @overload
    def __setitem__(self, index: slice, value: Iterable[Any]) -> None: ...

    def __setitem__(self, index: int | slice, value: Any) -> None:
        """Replace an item (or a contiguous slice) as one edit."""
        self._guard()
        doc = self._yarray.doc
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self._yarray))
            if step != 1:
                raise InvalidArgumentError("assignment to an extended slice is not supported by a shared list")
            plain = [check_plain(v, f"value[{i}]") for i, v in enumerate(value)]
            self._guard.charge(DELETE_BYTES + sum(value_size(v) for v in plain), items=len(plain))
            checked = [to_shared(v) for v in plain]
            with doc.transaction():
                if stop > start:
                    del self._yarray[start:stop]
                for offset, item in enumerate(checked):
                    self._yarray.insert(start + offset, item)
            return
        position = self._index(index)
        plain = check_plain(value)
        self._guard.charge(DELETE_BYTES + value_size(plain))
        new = to_shared(plain)
        with doc.transaction():
            del self._yarray[position]
            self._yarray.insert(position, new)

    def __delitem__(self, index: int | slice) -> None:
        self._guard()
        if not isinstance(index, slice):
            position = self._index(index)
            self._guard.charge(DELETE_BYTES, items=0)
            del self._yarray[position]
            return
        start, stop, step = index.indices(len(self._yarray))
        self._guard.charge(DELETE_BYTES * max(1, len(range(start, stop, step))), items=0)
        if step == 1:
            if stop > start:
                del self._yarray[start:stop]
            return
        with self._yarray.doc.transaction():
            for position in sorted(range(start, stop, step), reverse=True):
                del self._yarray[position]

    def pop(self, index: int = -1) -> Any:
        self._guard()
        position = self._index(index)
        self._guard.charge(DELETE_BYTES, items=0)
        value = to_plain(self._yarray[position])
        del self._yarray[position]
        return value

    def clear(self) -> None:
        self._guard()
        self._guard.charge(DELETE_BYTES, items=0)
        if len(self._yarray):
            del self._yarray[:]

    def reverse(self) -> None:
        self._guard()
        items = self.to_py()  # every item is deleted and inserted again: one update holds them all
        self._guard.charge(sum(DELETE_BYTES + value_size(item) for item in items), items=len(items))
        with self._yarray.doc.transaction():
            super().reverse()

    def __repr__(self) -> str:
        return f"SharedList({self.name!r}, {self.to_py()!r})"

    def changes(self) -> ChangeStream[ListChange]:
        """Changes from now on to the shared list this is (or is nested in)."""
        name = self.name

        def select(change: Change) -> ListChange | None:
            return change if isinstance(change, ListChange) and change.name == name else None

        return self._feed.stream(select)


__all__ = ["SharedList"]
