"""A collaborative table: rows of columns, addressed by generated row ids.

Each row is a nested Yjs map of its columns, never one replaced value, so two members who
update different columns of the same row concurrently both keep their change; only writes to
the same cell are resolved last-writer-wins. Cell values are stored whole (a dict or list in
a cell is replaced as a unit). A row deleted concurrently with an update stays deleted.

Row ids are generated locally with no coordination: 12 hex digits of millisecond time then
16 hex digits that start random in each millisecond and count up (by a random step) within
it. Ids never collide in practice, a member's own rows sort in the order it inserted them,
and sorting by id roughly follows creation time across members; that is the default order
of ``rows()`` and ``query()``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

import pycrdt

from ..errors import ArgumentTypeError, RowNotFoundError
from .changes import Change, TableChange
from .feed import ChangeFeed, ChangeStream
from .gate import DELETE_BYTES, Gate, value_size
from .query import OrderBy, Row, Where, run_query
from .table_index import TableIndex
from .values import check_plain, same, to_plain


class _RowIds:
    """Ids that also increase strictly within this process, even within one millisecond."""

    def __init__(self) -> None:
        self._millis = 0
        self._random = 0

    def new(self) -> str:
        millis = time.time_ns() // 1_000_000
        if millis > self._millis or self._random >= 2**64 - 1:
            self._millis = max(millis, self._millis + (millis <= self._millis))
            self._random = secrets.randbits(63)  # headroom to count up within the millisecond
        else:
            self._random += 1 + secrets.randbelow(2**16)
        return f"{self._millis:012x}{self._random:016x}"


new_row_id = _RowIds().new


def _columns(values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise ArgumentTypeError(f"a row is a dict of columns, not {type(values).__name__}")
    checked: dict[str, Any] = check_plain(values, "row", depth=-1)  # depth counts from each cell
    return checked


class SharedTable:
    """A table shared by the members of a space."""

    kind: ClassVar[Literal["table"]] = "table"

    def __init__(self, name: str, ymap: pycrdt.Map[Any], guard: Gate, feed: ChangeFeed) -> None:
        self.name = name
        self._ymap = ymap
        self._guard = guard
        self._feed = feed
        self._index = TableIndex(ymap)  # plain-Python rows and indexes, built on the first read

    def _row(self, row_id: str) -> pycrdt.Map[Any] | None:
        """The row's map; anything else a misbehaving member stored under the table is not a row."""
        if not isinstance(row_id, str) or row_id not in self._ymap:
            return None
        row = self._ymap[row_id]
        return row if isinstance(row, pycrdt.Map) else None

    def _existing(self, row_id: str) -> pycrdt.Map[Any]:
        row = self._row(row_id)
        if row is None:
            raise RowNotFoundError(f"no row {row_id!r} in table {self.name!r}")
        return row

    # --- writing ----------------------------------------------------------------------------

    def insert(self, values: Mapping[str, Any]) -> str:
        """Add a row; returns its new id."""
        self._guard()
        checked = _columns(values)
        row_id = new_row_id()
        self._guard.charge(value_size(checked, row_id), items=1 + len(checked))
        while row_id in self._ymap:  # pragma: no cover - 64 random bits in the same millisecond
            row_id = new_row_id()
        self._ymap[row_id] = pycrdt.Map(checked)
        self._index.refresh(row_id)  # at once: a read inside an open transaction() sees it
        return row_id

    def update(self, row_id: str, values: Mapping[str, Any]) -> None:
        """Set the given columns of a row, leaving its other columns alone; one edit."""
        self._guard()
        checked = _columns(values)
        row = self._existing(row_id)
        self._guard.charge(sum(value_size(value, column) for column, value in checked.items()), items=len(checked))
        with self._ymap.doc.transaction():
            for column, value in checked.items():
                if column in row and same(to_plain(row[column]), value):
                    continue  # unchanged: do not override a concurrent write to this cell
                row[column] = value
            self._index.refresh(row_id)

    def delete(self, row_id: str) -> None:
        """Remove a row; ``RowNotFoundError`` (a KeyError) if there is none with that id."""
        self._guard()
        self._existing(row_id)
        self._guard.charge(DELETE_BYTES, items=0)
        del self._ymap[row_id]
        self._index.refresh(row_id)

    # --- reading ----------------------------------------------------------------------------

    # Reads come from the table's index (``table_index.TableIndex``): O(1) for ``len``, ``get``
    # and ``in``, and queries that look only at the rows they need. The first read builds it
    # (O(rows)); after that every change, local or remote, updates it.

    def get(self, row_id: str) -> dict[str, Any] | None:
        """The row's columns as a plain dict, or None if there is no such row."""
        return self._index.values(row_id)

    def __getitem__(self, row_id: str) -> dict[str, Any]:
        values = self._index.values(row_id)
        if values is None:
            raise RowNotFoundError(f"no row {row_id!r} in table {self.name!r}")
        return values

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index.ids())

    def _row_items(self) -> Iterator[tuple[str, pycrdt.Map[Any]]]:
        for row_id, row in self._ymap.items():
            if isinstance(row, pycrdt.Map):
                yield row_id, row

    def rows(self) -> list[Row]:
        """Every row, ordered by id."""
        return self._index.rows()

    def query(self, where: Where = None, order_by: OrderBy = None, limit: int | None = None) -> list[Row]:
        """Rows of the local state matching ``where`` (see ``encspaces.shared.query`` for the form).

        ``order_by`` is a column, ``"-column"`` for descending, or a list of those; ties and
        the default order are by row id. Raises ``QueryError`` for a malformed query.

        Cost: an equality condition (``{"col": v}``, ``"=="``, ``"in"``, at the top level or
        in a top-level ``"and"``) looks only at the rows holding those values; ``limit`` with
        the default order or an ``order_by`` stops once enough rows matched (walking a sorted
        index of the first ``order_by`` column). Anything else looks at every row, in plain
        Python, without reading the document. A callable ``where`` is called on a copy of
        each row it looks at, which with a ``limit`` need not be every row.
        """
        return self._index.query(where, order_by, limit)

    def release(self) -> None:
        """The document closed (``Document.close``): the index stops following the table."""
        self._index.release()

    def forget_index(self) -> None:
        """Called by the document when the table may have changed without events: rebuild on the next read."""
        self._index.invalidate()

    def _scan_rows(self) -> list[Row]:
        """Every row read straight from the document, ordered by id (the reference for the index)."""
        return sorted((Row(row_id, to_plain(row)) for row_id, row in self._row_items()), key=lambda row: row.id)

    def _scan_query(self, where: Where = None, order_by: OrderBy = None, limit: int | None = None) -> list[Row]:
        """``query`` the way it was first written: read every row from the document, filter, sort."""
        return run_query(self._scan_rows(), where, order_by, limit)

    def to_py(self) -> dict[str, dict[str, Any]]:
        return {row.id: row.values for row in self.rows()}

    def __repr__(self) -> str:
        return f"SharedTable({self.name!r}, {len(self)} rows)"

    def changes(self) -> ChangeStream[TableChange]:
        """Changes to this table from now on: rows inserted, updated (with columns) and deleted."""
        name = self.name

        def select(change: Change) -> TableChange | None:
            return change if isinstance(change, TableChange) and change.name == name else None

        return self._feed.stream(select)


__all__ = ["SharedTable", "new_row_id"]
