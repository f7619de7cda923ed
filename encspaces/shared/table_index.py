"""A table's rows kept as plain Python beside the CRDT, so reads cost what their answer costs.

Reading a row out of pycrdt crosses into Rust once per cell (about 10 µs a row), so a query
that read the whole table on every call cost O(rows) however small its answer. The index
holds each row's plain values, the row ids in order, and, built on first use per column, an
equality index (value -> row ids) and a sorted index ((sort key, row id) in order).

It is built from the document on the first read and then kept up to date from the table's
deep observer, which sees every change however it arrived: local edits, verified remote
entries, snapshots and stored state loaded at open. The observer only notes which rows
changed; the next read re-reads those rows from the document (never trusting an event's
old/new values, and never mid-transaction, when yrs may not have integrated all of an update
yet). The table's own writes also refresh the row at once, so a read inside an open
``transaction()`` block sees them as before. After a remote change to the table's own keys,
the next read compares the key count with the document (yrs can omit keys from a concurrent
deletion's event) and rebuilds on a mismatch.

Queries evaluate the same compiled predicate and the same ordering rules as the plain scan
(``encspaces.shared.query.run_query``); the index only chooses which rows to look at and in
which order to look at them. Where that could change an answer (a NaN among the ordered
values, whose comparisons are not an order), it falls back to the scan.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pycrdt

from .query import OrderBy, Row, Where, _rank, check_limit, compile_where, parse_order_by, sort_rows
from .values import MAX_DEPTH, to_plain

_MISSING_KEY: tuple[int] = (1,)


def copy_plain(value: Any, depth: int = 0) -> Any:
    """A copy of a plain value that shares no list or dict with it (callers may mutate results).

    Past ``MAX_DEPTH`` (deeper than this API writes: only another member's client can) the rest
    is copied by ``to_plain``, which does not recurse: a row nested 100,000 deep must read.
    """
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return to_plain(value)
        # (scalars, most cells, are taken as they are: no call per cell)
        return {key: copy_plain(item, depth + 1) if type(item) in _NESTED else item for key, item in value.items()}
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return to_plain(value)
        return [copy_plain(item, depth + 1) if type(item) in _NESTED else item for item in value]
    return value


_NESTED = (dict, list)  # what copy_plain walks into (plain values hold no subclasses of either)


def equality_key(value: Any, depth: int = 0) -> Any:
    """A hashable key equal for two values exactly when ``values.same`` calls them equal.

    Numbers share a tag, so ``1`` and ``1.0`` meet; booleans have their own, so ``True``
    never meets ``1``. Values no filter operand can be (bytes, odd objects, lists and dicts
    nested deeper than ``MAX_DEPTH``, which only another member's client writes) get a key no
    operand's key equals.
    """
    if depth > MAX_DEPTH and isinstance(value, list | tuple | dict):
        return ("deep",)
    if value is None:
        return ("n",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("#", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list | tuple):  # a filter's operand may still be a tuple; stored values never are
        return ("l", tuple(equality_key(item, depth + 1) for item in value))
    if isinstance(value, dict):
        return ("d", tuple(sorted((key, equality_key(item, depth + 1)) for key, item in value.items())))
    return ("?", id(value))


def sort_key(values: Mapping[str, Any], column: str) -> tuple[Any, ...]:
    """The ascending key ``sort_rows`` uses for a column: present values by rank, missing last."""
    if column not in values:
        return _MISSING_KEY
    return (0, *_rank(values[column]))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _equality_terms(where: Any) -> list[tuple[str, list[Any]]]:
    """Conditions every matching row must meet, as (column, allowed values), from a data filter.

    Only the filter's top-level columns and the items of a top-level "and" are looked at
    (those must all hold); a column's "==" or "in" gives its allowed values. The index uses
    one of them to pick candidate rows; the whole predicate still decides.
    """
    terms: list[tuple[str, list[Any]]] = []
    if not isinstance(where, Mapping):
        return terms
    for key, value in where.items():
        if key == "and" and isinstance(value, list | tuple):
            for sub in value:
                terms.extend(_equality_terms(sub))
        elif key in ("or", "not"):
            continue
        elif not isinstance(value, Mapping):
            terms.append((key, [value]))
        else:
            if "==" in value:
                terms.append((key, [value["=="]]))
            if "in" in value and isinstance(value["in"], list | tuple):
                terms.append((key, list(value["in"])))
    return terms


class TableIndex:
    """Plain-Python state of one table, kept in step with its pycrdt map."""

    def __init__(self, ymap: pycrdt.Map[Any]) -> None:
        self._ymap = ymap
        self.built = False
        self._rows: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []  # row ids, sorted
        self._others: set[str] = set()  # keys under the table that are not rows (a misbehaving member's)
        self._equal: dict[str, dict[Any, set[str]]] = {}  # column -> equality key -> row ids
        self._sorted: dict[str, list[tuple[tuple[Any, ...], str]]] = {}  # column -> [(sort key, row id)]
        self._nan: dict[str, int] = {}  # column -> rows holding NaN there (no order: queries scan)
        self.rebuilds = 0
        self._dirty: set[str] = set()  # rows changed since they were last read from the document
        self._suspect = False  # a remote root change happened: check the key count at the next read
        self._subscription: pycrdt.Subscription | None = None  # observing costs every write: from the first read
        self._released = False  # the document closed: built once more without following it (release)

    # --- keeping up with the document ---------------------------------------------------------

    def _read(self, row_id: str) -> dict[str, Any] | None:
        if row_id not in self._ymap:
            return None
        row = self._ymap[row_id]
        if not isinstance(row, pycrdt.Map):
            return None
        values: dict[str, Any] = to_plain(row)
        return values

    def build(self) -> None:
        if self._subscription is None and not self._released:
            self._subscription = self._ymap.observe_deep(self._on_events)
        self.built = True
        self.rebuilds += 1
        self._dirty = set()
        self._suspect = False
        self._rows = {}
        self._others = set()
        self._equal = {}
        self._sorted = {}
        self._nan = {}
        for row_id in self._ymap.keys():  # noqa: SIM118 - one call into Rust for every key
            values = self._read(row_id)
            if values is None:
                self._others.add(row_id)
            else:
                self._rows[row_id] = values
                self._count_nan(values, 1)
        self._order = sorted(self._rows)

    def invalidate(self) -> None:
        """Read everything from the document again at the next read: it changed without events
        for every change (yrs integrated structs that were waiting for others, see
        ``Document._apply``)."""
        if self.built:
            self._suspect = False
            self._dirty = set()
            self.built = False

    def ensure(self) -> None:
        if not self.built:
            self.build()
        elif self._dirty or self._suspect:
            self._settle()

    def _on_events(self, events: list[Any]) -> None:
        if not self.built:
            return
        touched: set[str] = set()
        suspect = False  # a root event that may have left a key out
        for event in events:
            path = tuple(getattr(event, "path", ()) or ())
            if path:
                touched.add(str(path[0]))
            else:
                keys = getattr(event, "keys", {}) or {}
                touched.update(keys)
                # yrs has reported a concurrent deletion with no keys at all; only remote updates
                # (applied under an origin) can be concurrent. len() of a yrs map counts its
                # entries, so this check is O(rows) in Rust (about 0.5 ms at 10^5 rows).
                suspect = suspect or not keys or getattr(event.transaction, "origin", None) is not None
        # Rows are re-read at the next read, not now: while yrs integrates an update that was
        # waiting for another (a member's edit to a row that arrived before the row), observers
        # can run before all of it is in place; once the transaction is over it all is.
        self._dirty |= touched
        self._suspect = self._suspect or suspect

    def _settle(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for row_id in dirty:
            self.refresh(row_id)
        if self._suspect:
            self._suspect = False
            if len(self._ymap) != len(self._rows) + len(self._others):
                self.build()  # an event left a key out: start again from the document

    def refresh(self, row_id: str) -> None:
        """Re-read one row from the document and update every structure that holds it."""
        if not self.built:
            return
        new = self._read(row_id)
        if new is None and row_id in self._ymap:
            self._others.add(row_id)
        else:
            self._others.discard(row_id)
        old = self._rows.get(row_id)
        if old is None and new is None:
            return
        # (_same_types before ``==``: it is False for any list or dict cell, so ``==`` never walks
        # a value another member's client nested thousands deep, which would raise RecursionError)
        if old is not None and new is not None and old.keys() == new.keys() and _same_types(old, new) \
                and old == new:
            return
        if old is None:
            bisect.insort(self._order, row_id)
        elif new is None:
            del self._order[bisect.bisect_left(self._order, row_id)]
        if old is not None:
            self._count_nan(old, -1)
            self._unindex(row_id, old)
            del self._rows[row_id]
        if new is not None:
            self._rows[row_id] = new
            self._count_nan(new, 1)
            self._index(row_id, new)

    def _count_nan(self, values: Mapping[str, Any], step: int) -> None:
        for column, value in values.items():
            if _is_nan(value):
                self._nan[column] = self._nan.get(column, 0) + step

    def _index(self, row_id: str, values: Mapping[str, Any]) -> None:
        for column, buckets in self._equal.items():
            if column in values:
                buckets.setdefault(equality_key(values[column]), set()).add(row_id)
        for column, entries in self._sorted.items():
            if not _is_nan(values.get(column)):  # NaN is no order: never in a sorted index (see query)
                bisect.insort(entries, (sort_key(values, column), row_id))

    def _unindex(self, row_id: str, values: Mapping[str, Any]) -> None:
        for column, buckets in self._equal.items():
            if column in values:
                key = equality_key(values[column])
                bucket = buckets.get(key)
                if bucket is not None:
                    bucket.discard(row_id)
                    if not bucket:
                        del buckets[key]
        for column, entries in self._sorted.items():
            if _is_nan(values.get(column)):
                continue
            entry = (sort_key(values, column), row_id)
            at = bisect.bisect_left(entries, entry)
            if at < len(entries) and entries[at] == entry:
                del entries[at]

    def _equality(self, column: str) -> dict[Any, set[str]]:
        buckets = self._equal.get(column)
        if buckets is None:
            buckets = {}
            for row_id, values in self._rows.items():
                if column in values:
                    buckets.setdefault(equality_key(values[column]), set()).add(row_id)
            self._equal[column] = buckets
        return buckets

    def _sorted_by(self, column: str) -> list[tuple[tuple[Any, ...], str]]:
        entries = self._sorted.get(column)
        if entries is None:
            entries = sorted(
                (sort_key(values, column), row_id)
                for row_id, values in self._rows.items()
                if not _is_nan(values.get(column))
            )
            self._sorted[column] = entries
        return entries

    # --- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        self.ensure()
        return len(self._rows)

    def __contains__(self, row_id: object) -> bool:
        self.ensure()
        return isinstance(row_id, str) and row_id in self._rows

    def values(self, row_id: str) -> dict[str, Any] | None:
        """A copy of the row's columns, or None."""
        self.ensure()
        values = self._rows.get(row_id) if isinstance(row_id, str) else None
        return None if values is None else copy_plain(values)

    def ids(self) -> list[str]:
        self.ensure()
        return list(self._order)

    def rows(self) -> list[Row]:
        self.ensure()
        return [Row(row_id, copy_plain(self._rows[row_id])) for row_id in self._order]

    def query(self, where: Where = None, order_by: OrderBy = None, limit: int | None = None) -> list[Row]:
        """Exactly ``run_query(rows(), where, order_by, limit)``, looking at as few rows as it can."""
        predicate = compile_where(where)  # every argument is checked first, as the scan does
        terms = parse_order_by(order_by)
        limit = check_limit(limit)
        self.ensure()
        if callable(where) and not isinstance(where, Mapping):
            test: Callable[[dict[str, Any]], bool] = lambda values: predicate(copy_plain(values))  # noqa: E731
        else:
            test = predicate
        if limit == 0:
            return []
        candidates = self._candidates(where)
        if any(self._nan.get(column) for column, _ in terms):
            ids: Iterable[str] = self._order if candidates is None else sorted(candidates)
            found = [Row(row_id, self._rows[row_id]) for row_id in ids if test(self._rows[row_id])]
            return self._copies(sort_rows(found, order_by), limit)
        # Many candidates for a few rows: walking in order (skipping the others) finds them sooner
        # than ordering them all; about limit * rows / candidates rows are looked at.
        walk = limit is not None and (candidates is None or limit * len(self._rows) < len(candidates) ** 2)
        if candidates is not None and not walk:  # few rows to look at: look at them all, then order them
            found = [Row(row_id, self._rows[row_id]) for row_id in sorted(candidates) if test(self._rows[row_id])]
            return self._copies(sort_rows(found, order_by) if terms else found, limit)
        if not terms:
            return self._copies(self._matching(self._order, test, limit, candidates), limit)
        if limit is None:
            found = [Row(row_id, values) for row_id in self._order if test(values := self._rows[row_id])]
            return self._copies(sort_rows(found, order_by), limit)
        return self._copies(self._ordered(terms, order_by, test, limit, candidates), limit)

    def _candidates(self, where: Where) -> set[str] | None:
        """Row ids that can match, from the smallest equality condition; None when there is none."""
        best: set[str] | None = None
        for column, choices in _equality_terms(where):
            buckets = self._equality(column)
            found: set[str] = set()
            for choice in choices:
                found |= buckets.get(equality_key(choice), set())
            if best is None or len(found) < len(best):
                best = found
        return best

    def _matching(
        self, ids: Iterable[str], test: Callable[[dict[str, Any]], bool], limit: int | None, pool: set[str] | None
    ) -> list[Row]:
        found: list[Row] = []
        for row_id in ids:
            if pool is not None and row_id not in pool:
                continue
            values = self._rows[row_id]
            if test(values):
                found.append(Row(row_id, values))
                if limit is not None and len(found) >= limit:
                    break
        return found

    def _ordered(
        self,
        terms: list[tuple[str, bool]],
        order_by: OrderBy,
        test: Callable[[dict[str, Any]], bool],
        limit: int,
        pool: set[str] | None,
    ) -> list[Row]:
        """Walk the first term's sorted index group by group (a group shares its key) until enough match.

        Within a group the remaining terms and the row id decide, as in ``sort_rows``.
        """
        column, descending = terms[0]
        found: list[Row] = []
        entries = self._sorted_by(column)
        if len(terms) == 1:  # groups come in id order, which is the tie-break: no sorting at all
            for start, end in self._groups(entries, descending):
                found.extend(self._matching((entries[i][1] for i in range(start, end)), test, limit - len(found), pool))
                if len(found) >= limit:
                    break
            return found
        for start, end in self._groups(entries, descending):
            rows = [
                Row(row_id, values)
                for _, row_id in entries[start:end]
                if (pool is None or row_id in pool) and test(values := self._rows[row_id])
            ]
            found.extend(sort_rows(rows, order_by))
            if len(found) >= limit:
                break
        return found

    @staticmethod
    def _groups(entries: list[tuple[tuple[Any, ...], str]], descending: bool) -> Iterator[tuple[int, int]]:
        """Ranges ``[start, end)`` of entries sharing a sort key, in the order ``sort_rows`` puts them.

        Ascending, that is the list's order, missing values (key ``(1,)``) last. Descending,
        present values come from the end of the list backwards, then the missing ones; inside a
        range ids stay ascending (the stable sort keeps the id order). Boundaries are found by
        bisection, so a walk costs what it reads, however large a group is.
        """
        total = len(entries)
        if not descending:
            at = 0
            while at < total:
                end = bisect.bisect_right(entries, entries[at][0], at, total, key=_first)
                yield at, end
                at = end
            return
        first_missing = bisect.bisect_left(entries, _MISSING_KEY, key=_first)
        end = first_missing
        while end > 0:
            start = bisect.bisect_left(entries, entries[end - 1][0], 0, end, key=_first)
            yield start, end
            end = start
        if first_missing < total:
            yield first_missing, total

    @staticmethod
    def _copies(rows: list[Row], limit: int | None) -> list[Row]:
        chosen = rows if limit is None else rows[:limit]
        return [Row(row.id, copy_plain(row.values)) for row in chosen]

    def release(self) -> None:
        """The document closed: stop following the map (see ``Document.close``); reads rebuild once."""
        self._released = True
        if self._subscription is not None:
            self._ymap.unobserve(self._subscription)
            self._subscription = None
        self.built = False


def _first(entry: tuple[tuple[Any, ...], str]) -> tuple[Any, ...]:
    return entry[0]


def _same_types(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """``==`` calls ``True`` and ``1`` equal; a row changed from one to the other must be re-indexed."""
    return all(type(a[key]) is type(b[key]) and not isinstance(a[key], list | dict) for key in a)


__all__ = ["TableIndex", "copy_plain", "equality_key", "sort_key"]
