"""Table queries: the filter form's semantics, ordering, limits, and errors for malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from shared_net import Peer

from encspaces.errors import EncspacesError, QueryError
from encspaces.shared import SharedTable

ROWS: dict[str, dict[str, Any]] = {
    "n1": {"n": 1, "s": "apple", "flag": True, "tag": "a"},
    "n2": {"n": 2.5, "s": "Banana", "flag": False, "tag": "b"},
    "n3": {"n": 3, "s": "cherry", "tag": "a"},
    "str": {"n": "10", "s": "date", "flag": 1},
    "none": {"n": None, "s": None, "tag": ["a"]},
    "bare": {},
}


@pytest.fixture
def table() -> SharedTable:
    """A table with rows of mixed and missing columns; rows get known names through a lookup."""
    t = Peer("a").table()
    ids = {name: t.insert(values) for name, values in ROWS.items()}
    t.names = {row_id: name for name, row_id in ids.items()}  # type: ignore[attr-defined]
    return t


def names(table: SharedTable, **query: Any) -> list[str]:
    return [table.names[row.id] for row in table.query(**query)]  # type: ignore[attr-defined]


def matching(table: SharedTable, where: Any) -> set[str]:
    return set(names(table, where=where))


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (None, set(ROWS)),
        ({}, set(ROWS)),
        ({"n": 1}, {"n1"}),
        ({"n": 1.0}, {"n1"}),
        ({"n": 2.5}, {"n2"}),
        ({"n": "10"}, {"str"}),
        ({"n": 10}, set()),
        ({"flag": True}, {"n1"}),
        ({"flag": 1}, {"str"}),
        ({"n": None}, {"none"}),
        ({"tag": ["a"]}, {"none"}),
        ({"tag": {"==": ["a"]}}, {"none"}),
        ({"tag": "a", "n": 3}, {"n3"}),
        ({"n": {"!=": 1}}, {"n2", "n3", "str", "none", "bare"}),
        ({"n": {">": 1}}, {"n2", "n3"}),
        ({"n": {">=": 1, "<": 3}}, {"n1", "n2"}),
        ({"n": {"<=": 2.5}}, {"n1", "n2"}),
        ({"s": {">=": "b"}}, {"n3", "str"}),
        ({"s": {"<": "B"}}, set()),
        ({"n": {"in": [1, "10", None]}}, {"n1", "str", "none"}),
        ({"n": {"not in": [1, "10", None]}}, {"n2", "n3", "bare"}),
        ({"flag": {"exists": True}}, {"n1", "n2", "str"}),
        ({"flag": {"exists": False}}, {"n3", "none", "bare"}),
        ({"or": [{"n": 1}, {"s": "date"}]}, {"n1", "str"}),
        ({"and": [{"tag": "a"}, {"n": {">": 1}}]}, {"n3"}),
        ({"not": {"tag": "a"}}, {"n2", "str", "none", "bare"}),
        ({"and": []}, set(ROWS)),
        ({"or": []}, set()),
        ({"or": [{"and": [{"tag": "a"}, {"not": {"n": 1}}]}, {"flag": False}]}, {"n2", "n3"}),
        (lambda values: values.get("tag") == "b", {"n2"}),
    ],
)
def test_filter_semantics(table: SharedTable, where: Any, expected: set[str]) -> None:
    assert matching(table, where) == expected


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (["n", 1], "where: a filter must be a dict, not list"),
        ("n == 1", "a filter must be a dict"),
        ({1: 2}, "column names are strings"),
        ({"and": {"n": 1}}, "where.and: expected a list of filters"),
        ({"or": "n"}, "where.or: expected a list"),
        ({"and": [{"n": 1}, 3]}, "where.and[1]: a filter must be a dict"),
        ({"not": [{"n": 1}]}, "where.not: a filter must be a dict"),
        ({"n": {}}, "where.n: an empty comparison"),
        ({"n": {"~=": 1}}, "where.n: unknown comparison '~='"),
        ({"n": {">": None}}, "needs a number or a string"),
        ({"n": {"<": [1]}}, "needs a number or a string"),
        ({"n": {">=": True}}, "needs a number or a string"),
        ({"n": {"in": 1}}, "'in' needs a list"),
        ({"n": {"not in": "abc"}}, "'not in' needs a list"),
        ({"n": {"exists": 1}}, "'exists' needs True or False"),
        ({"n": {"==": object()}}, "is not a JSON-like value"),
        ({"n": float("nan")}, "not a finite number"),
        ({"or": [{"n": {"in": [1, {2, 3}]}}]}, "is not a JSON-like value"),
    ],
)
def test_malformed_filters_raise_query_error(table: SharedTable, where: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace("[", r"\[")) as info:
        table.query(where=where)
    assert isinstance(info.value, ValueError) and isinstance(info.value, EncspacesError)


def test_malformed_queries_fail_even_on_an_empty_table() -> None:
    empty = Peer("a").table()
    with pytest.raises(QueryError):
        empty.query(where={"n": {"bad": 1}})
    with pytest.raises(QueryError):
        empty.query(order_by="-")
    with pytest.raises(QueryError):
        empty.query(limit=-1)


def test_default_order_is_by_row_id(table: SharedTable) -> None:
    assert [row.id for row in table.query()] == sorted(row.id for row in table.rows())
    assert names(table) == list(ROWS)  # ids are time-ordered, and ROWS were inserted in order


def test_order_by_column_types_then_values_missing_last(table: SharedTable) -> None:
    # None < bool < numbers < strings < lists < dicts; rows without the column come last either way
    assert names(table, order_by="n") == ["none", "n1", "n2", "n3", "str", "bare"]
    assert names(table, order_by="-n") == ["str", "n3", "n2", "n1", "none", "bare"]
    assert names(table, order_by="flag") == ["n2", "n1", "str", "n3", "none", "bare"]
    assert names(table, order_by="s") == ["none", "n2", "n1", "n3", "str", "bare"]
    assert names(table, order_by="tag") == ["n1", "n3", "n2", "none", "str", "bare"]


def test_order_by_several_columns_and_ties_by_id(table: SharedTable) -> None:
    assert names(table, order_by=["tag", "-n"]) == ["n3", "n1", "n2", "none", "str", "bare"]
    assert names(table, order_by=("-tag", "n")) == ["none", "n2", "n1", "n3", "str", "bare"]
    assert names(table, order_by="missing") == list(ROWS)
    assert names(table, order_by="-missing") == list(ROWS)


def test_dict_and_list_values_sort_without_error() -> None:
    t = Peer("a").table()
    ids = [t.insert({"v": v}) for v in ({"b": 1}, [2], {"a": 1}, [1, 2], "s", 0, False, None)]
    got = [t.get(row.id)["v"] for row in t.query(order_by="v")]  # type: ignore[index]
    assert got == [None, False, 0, "s", [1, 2], [2], {"a": 1}, {"b": 1}]
    assert len(t.query(order_by="-v")) == len(ids)


def test_limit_and_combined_query(table: SharedTable) -> None:
    assert names(table, where={"tag": {"exists": True}}, order_by="-s", limit=2) == ["n3", "n1"]
    assert names(table, limit=0) == []
    assert len(table.query(limit=100)) == len(ROWS)


@pytest.mark.parametrize(
    ("order_by", "limit"),
    [("", None), ("-", None), (["n", 3], None), (5, None), ({"n": 1}, None), (None, -1), (None, 1.5), (None, True)],
)
def test_malformed_order_by_and_limit(table: SharedTable, order_by: Any, limit: Any) -> None:
    with pytest.raises(QueryError):
        table.query(order_by=order_by, limit=limit)
