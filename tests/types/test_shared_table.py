"""Shared table: generated row ids, column-wise merge, and reading rows."""

from __future__ import annotations

import re

import pycrdt
import pytest
from shared_net import Net, Peer

from encspaces.shared import Row


def test_insert_get_update_delete() -> None:
    peer = Peer("a")
    table = peer.table()
    first = table.insert({"title": "write spec", "done": False, "tags": ["x"], "meta": {"n": 1}})
    second = table.insert({})
    assert re.fullmatch(r"[0-9a-f]{28}", first) and first != second
    assert table.get(first) == {"done": False, "meta": {"n": 1}, "tags": ["x"], "title": "write spec"}
    assert table[second] == {} and table.get("nope") is None
    table.update(first, {"done": True, "owner": None})
    assert table.get(first) == {"done": True, "meta": {"n": 1}, "owner": None, "tags": ["x"], "title": "write spec"}
    assert first in table and "nope" not in table and 5 not in table and len(table) == 2
    assert list(table) == sorted([first, second])
    table.delete(second)
    assert table.rows() == [Row(first, table[first])]
    assert table.to_py() == {first: table[first]}
    assert repr(table) == "SharedTable('tb', 1 rows)"


def test_each_call_is_one_update_and_unchanged_cells_are_not_written() -> None:
    peer = Peer("a")
    table = peer.table()
    row = table.insert({"a": 1, "b": 2})
    assert len(peer.sent) == 1
    table.update(row, {"a": 10, "b": 20, "c": 30})
    assert len(peer.sent) == 2
    table.update(row, {"a": 10, "b": 20.0})
    assert len(peer.sent) == 2
    table.delete(row)
    assert len(peer.sent) == 3


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda t, r: t.update("missing", {"a": 1}), KeyError),
        (lambda t, r: t.delete("missing"), KeyError),
        (lambda t, r: t["missing"], KeyError),
        (lambda t, r: t.insert(["not", "a", "dict"]), TypeError),
        (lambda t, r: t.insert({1: "x"}), TypeError),
        (lambda t, r: t.update(r, {"a": float("nan")}), ValueError),
        (lambda t, r: t.update(r, {"a": 1, "b": object()}), TypeError),
    ],
)
def test_bad_calls_raise_and_change_nothing(call: object, error: type[Exception]) -> None:
    peer = Peer("a")
    table = peer.table()
    row = table.insert({"a": 0})
    sent = len(peer.sent)
    with pytest.raises(error):
        call(table, row)  # type: ignore[operator]
    assert table.to_py() == {row: {"a": 0}} and len(peer.sent) == sent


def test_guard_is_called_before_every_edit() -> None:
    peer = Peer("a")
    table = peer.table()
    row = table.insert({"a": 0})
    peer.read_only = True
    for edit in (lambda: table.insert({"a": 1}), lambda: table.update(row, {"a": 2}), lambda: table.delete(row)):
        with pytest.raises(PermissionError):
            edit()
    assert table.to_py() == {row: {"a": 0}}


def test_concurrent_updates_of_different_columns_keep_both() -> None:
    net = Net("a", "b", "c")
    a, b, c = net.peers
    row = a.table().insert({"title": "draft", "status": "open", "owner": None})
    net.settle()
    a.table().update(row, {"title": "final"})
    b.table().update(row, {"status": "closed"})
    c.table().update(row, {"owner": "carol", "priority": 2})
    net.settle()
    expected = {"owner": "carol", "priority": 2, "status": "closed", "title": "final"}
    assert a.table().get(row) == b.table().get(row) == c.table().get(row) == expected


def test_concurrent_writes_to_one_cell_agree_on_one_value() -> None:
    net = Net("a", "b")
    a, b = net.peers
    row = a.table().insert({"n": 0})
    net.settle()
    a.table().update(row, {"n": 1})
    b.table().update(row, {"n": 2})
    net.settle()
    assert a.table().get(row) == b.table().get(row)
    assert a.table()[row]["n"] in (1, 2)


def test_delete_wins_over_a_concurrent_update() -> None:
    net = Net("a", "b")
    a, b = net.peers
    row = a.table().insert({"n": 0})
    keep = a.table().insert({"n": 1})
    net.settle()
    a.table().delete(row)
    b.table().update(row, {"n": 5})
    net.settle()
    assert a.table().to_py() == b.table().to_py() == {keep: {"n": 1}}


def test_concurrent_inserts_all_survive() -> None:
    net = Net("a", "b")
    a, b = net.peers
    ids = [a.table().insert({"by": "a", "i": i}) for i in range(5)] + [b.table().insert({"by": "b"}) for _ in range(5)]
    net.settle()
    assert len(set(ids)) == 10
    assert sorted(a.table()) == sorted(b.table()) == sorted(ids)


def test_entries_that_are_not_rows_are_ignored() -> None:
    """A misbehaving member may write anything under the table's root; reading must not break."""
    peer = Peer("a")
    table = peer.table()
    row = table.insert({"a": 1})
    peer.document.doc.get("table:tb", type=pycrdt.Map)["junk"] = "not a row"
    assert table.rows() == [Row(row, {"a": 1})] and len(table) == 1 and "junk" not in table
    assert table.get("junk") is None and list(table) == [row]
    with pytest.raises(KeyError):
        table.update("junk", {"a": 1})
