"""Filtering and ordering table rows, from plain data rather than code.

A filter is data, never a string to evaluate, so it can come from a UI or a saved view
without any injection risk, and a malformed one fails at once with a ``QueryError`` naming
where it is wrong instead of silently matching nothing.

Filter form (``where``)::

    {"status": "open"}                      column equals value (also None, lists, dicts)
    {"status": "open", "owner": "ana"}      several columns: all must hold
    {"priority": {">=": 3}}                 a comparison: "==" "!=" "<" "<=" ">" ">="
    {"priority": {">": 1, "<=": 5}}         several comparisons on a column: all must hold
    {"tag": {"in": ["a", "b"]}}             membership: "in", "not in" (the operand is a list)
    {"due": {"exists": True}}               whether the row has the column at all
    {"and": [f1, f2, ...]}                  all of the filters (an empty list matches every row)
    {"or": [f1, f2, ...]}                   any of the filters (an empty list matches no row)
    {"not": f}                              the filter does not hold
    {}  or None                             every row

"and", "or" and "not" are reserved: a column with one of those names cannot be filtered on.
To compare a column with a dict value use ``{"col": {"==": {...}}}``. A plain callable
``where=lambda values: ...`` is accepted too, for filters written in code.

Semantics, chosen so that rows with odd or missing data never raise:

* Equality is by type: ``True`` does not equal ``1`` and ``"1"`` does not equal ``1``, but
  ``1`` equals ``1.0``. "!=" and "not in" are the exact negations of "==" and "in".
* "<", "<=", ">", ">=" compare numbers with numbers and strings with strings; the operand
  must be a number or a string. A value of another type, or a missing column, never
  satisfies an ordering comparison.
* A missing column equals nothing (so it satisfies "!=" and "not in").

Ordering (``order_by``): a column name, ``"-col"`` for descending, or a list of them, the
first deciding and the next breaking ties. Values of different types are ordered by type:
None < booleans < numbers < strings < lists < dicts. Rows missing the column always come
last, in both directions. Remaining ties are broken by row id, so every member sees the same
order for the same state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from ..errors import QueryError
from .values import canonical, check_plain, same

Predicate = Callable[[Mapping[str, Any]], bool]
Where = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool] | None
OrderBy = str | Sequence[str] | None

COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "exists")
COMBINATORS = ("and", "or", "not")
_MISSING = object()


class Row(NamedTuple):
    """One table row: its id and a plain dict of its columns."""

    id: str
    values: dict[str, Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compile_where(where: Where) -> Predicate:
    """Check a filter once and turn it into a predicate over a row's column dict."""
    if where is None:
        return lambda values: True
    if callable(where) and not isinstance(where, Mapping):
        predicate = where
        return lambda values: bool(predicate(values))
    return _compile(where, "where")


def _compile(condition: Any, at: str) -> Predicate:
    if not isinstance(condition, Mapping):
        raise QueryError(f"{at}: a filter must be a dict, not {type(condition).__name__}")
    parts: list[Predicate] = []
    for key, value in condition.items():
        if not isinstance(key, str):
            raise QueryError(f"{at}: column names are strings, not {type(key).__name__}")
        if key in ("and", "or"):
            if not isinstance(value, list | tuple):
                raise QueryError(f"{at}.{key}: expected a list of filters, got {type(value).__name__}")
            subs = [_compile(sub, f"{at}.{key}[{i}]") for i, sub in enumerate(value)]
            parts.append(_all(subs) if key == "and" else _any(subs))
        elif key == "not":
            parts.append(_not(_compile(value, f"{at}.not")))
        elif isinstance(value, Mapping):
            if not value:
                raise QueryError(f"{at}.{key}: an empty comparison; use {{'==': {{}}}} to match an empty dict")
            parts.append(_all([_comparison(key, op, operand, f"{at}.{key}") for op, operand in value.items()]))
        else:
            parts.append(_comparison(key, "==", value, f"{at}.{key}"))
    return parts[0] if len(parts) == 1 else _all(parts)


def _all(predicates: list[Predicate]) -> Predicate:
    return lambda values: all(p(values) for p in predicates)


def _any(predicates: list[Predicate]) -> Predicate:
    return lambda values: any(p(values) for p in predicates)


def _not(predicate: Predicate) -> Predicate:
    return lambda values: not predicate(values)


def _operand(value: Any, at: str) -> Any:
    try:
        return check_plain(value, at)
    except (TypeError, ValueError) as exc:
        raise QueryError(str(exc)) from None


def _comparison(column: str, op: Any, operand: Any, at: str) -> Predicate:
    if op == "==" or op == "!=":
        expected = _operand(operand, at)

        def equal(values: Mapping[str, Any]) -> bool:
            value = values.get(column, _MISSING)
            return value is not _MISSING and same(value, expected)

        return equal if op == "==" else _not(equal)
    if op in ("<", "<=", ">", ">="):
        if not (_is_number(operand) or isinstance(operand, str)):
            raise QueryError(f"{at}: {op!r} needs a number or a string, not {type(operand).__name__}")
        bound = _operand(operand, at)
        numeric = _is_number(bound)
        test: Callable[[Any, Any], bool] = {
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }[op]

        def ordered(values: Mapping[str, Any]) -> bool:
            value = values.get(column, _MISSING)
            comparable = _is_number(value) if numeric else isinstance(value, str)
            return comparable and test(value, bound)

        return ordered
    if op == "in" or op == "not in":
        if not isinstance(operand, list | tuple):
            raise QueryError(f"{at}: {op!r} needs a list of values, not {type(operand).__name__}")
        choices = _operand(operand, at)

        def member(values: Mapping[str, Any]) -> bool:
            value = values.get(column, _MISSING)
            return value is not _MISSING and any(same(value, choice) for choice in choices)

        return member if op == "in" else _not(member)
    if op == "exists":
        if not isinstance(operand, bool):
            raise QueryError(f"{at}: 'exists' needs True or False, not {operand!r}")
        return lambda values: (column in values) is operand
    raise QueryError(f"{at}: unknown comparison {op!r}; use one of {', '.join(COMPARISONS)}")


def parse_order_by(order_by: OrderBy) -> list[tuple[str, bool]]:
    """``[(column, descending), ...]`` from ``"col"``, ``"-col"`` or a list of those."""
    if order_by is None:
        return []
    terms = [order_by] if isinstance(order_by, str) else order_by
    if not isinstance(terms, list | tuple):
        raise QueryError(f"order_by: expected a column name or a list of them, not {type(order_by).__name__}")
    parsed: list[tuple[str, bool]] = []
    for i, term in enumerate(terms):
        if not isinstance(term, str):
            raise QueryError(f"order_by[{i}]: expected a column name, not {type(term).__name__}")
        descending = term.startswith("-")
        column = term[1:] if descending else term
        if not column:
            raise QueryError(f"order_by[{i}]: {term!r} names no column")
        parsed.append((column, descending))
    return parsed


def _rank(value: Any) -> tuple[int, Any]:
    """A key that orders any two stored values: first by type, then within the type."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, value)
    if _is_number(value):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    try:
        if isinstance(value, list):
            return (4, json.dumps(value, sort_keys=True, default=repr))
        if isinstance(value, dict):
            return (5, json.dumps(value, sort_keys=True, default=repr))
    except RecursionError:
        # Nested deeper than json walks: only another member's client writes that. Ordered
        # after every other value, among themselves by their flat (non-recursive) description.
        return (7, json.dumps(canonical(value), default=repr))
    return (6, repr(value))


def sort_rows(rows: list[Row], order_by: OrderBy) -> list[Row]:
    terms = parse_order_by(order_by)
    ordered = sorted(rows, key=lambda row: row.id)
    for column, descending in reversed(terms):  # stable sorts: the last applied decides first
        # A missing column gets the flag that sorts last in this direction.
        missing = (0,) if descending else (1,)
        present = 1 if descending else 0

        def key(row: Row, column: str = column, missing: tuple[int] = missing, present: int = present) -> Any:
            value = row.values.get(column, _MISSING)
            return missing if value is _MISSING else (present, *_rank(value))

        ordered.sort(key=key, reverse=descending)
    return ordered


def check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise QueryError(f"limit: expected a non-negative int or None, not {limit!r}")
    return limit


def run_query(rows: list[Row], where: Where = None, order_by: OrderBy = None, limit: int | None = None) -> list[Row]:
    """Rows matching ``where``, ordered, at most ``limit`` of them; arguments are all checked first."""
    predicate = compile_where(where)
    parse_order_by(order_by)
    limit = check_limit(limit)
    selected = [row for row in rows if predicate(row.values)]
    ordered = sort_rows(selected, order_by)
    return ordered if limit is None else ordered[:limit]


__all__ = ["COMBINATORS", "COMPARISONS", "OrderBy", "Row", "Where", "compile_where", "run_query", "sort_rows"]
