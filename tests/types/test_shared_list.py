"""Shared list: the Python list interface over a Yjs array, with nested maps and lists."""

from __future__ import annotations

import pytest
from shared_net import Net, Peer

from encspaces.shared import KeyChange, ListChange, NestedChange, SharedList


def test_append_insert_extend_read() -> None:
    peer = Peer("a")
    lst = peer.list()
    lst.append(1)
    lst.append("two")
    lst.insert(0, None)
    lst.extend([3.5, True, [1, 2], {"k": "v"}])
    lst.insert(len(lst), "end")
    lst.insert(-1, "before end")
    expected = [None, 1, "two", 3.5, True, [1, 2], {"k": "v"}, "before end", "end"]
    assert lst.to_py() == expected and list(lst) == expected and len(lst) == len(expected)
    assert lst[1] == 1 and isinstance(lst[1], int) and lst[-1] == "end"
    assert lst[1:3] == [1, "two"] and lst[::-3] == expected[::-3] and lst[100:] == []
    assert "two" in lst and lst.index("two") == 2 and lst.count("two") == 1
    assert repr(lst).startswith("SharedList('l', [None, 1,")
    assert lst == expected and lst != expected[1:] and lst != "x" and lst != Peer("b").list()
    with pytest.raises(TypeError):
        hash(lst)


def test_delete_set_pop_clear_remove_reverse() -> None:
    peer = Peer("a")
    lst = peer.list()
    lst.extend(list(range(10)))
    del lst[0]
    del lst[-1]
    assert lst.to_py() == [1, 2, 3, 4, 5, 6, 7, 8]
    del lst[1:3]
    assert lst.to_py() == [1, 4, 5, 6, 7, 8]
    del lst[::2]
    assert lst.to_py() == [4, 6, 8]
    lst[0] = "four"
    lst[1:2] = ["six", "and", "more"]
    assert lst.to_py() == ["four", "six", "and", "more", 8]
    assert lst.pop() == 8 and lst.pop(0) == "four"
    lst.remove("and")
    lst.reverse()
    assert lst.to_py() == ["more", "six"]
    lst += ["x"]
    lst.clear()
    assert lst.to_py() == [] and len(lst) == 0
    lst.clear()
    del lst[0:0]


def test_each_bulk_edit_is_one_update() -> None:
    peer = Peer("a")
    lst = peer.list()
    for edit in (
        lambda: lst.extend([1, 2, 3, 4]),
        lambda: lst.__setitem__(slice(0, 2), ["a", "b", "c"]),
        lambda: lst.__delitem__(slice(None, None, 2)),
        lambda: lst.__setitem__(0, {"x": 1}),
        lambda: lst.reverse(),
        lambda: lst.clear(),
    ):
        before = len(peer.sent)
        edit()
        assert len(peer.sent) == before + 1


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda lst: lst[3], IndexError),
        (lambda lst: lst[-4], IndexError),
        (lambda lst: lst["0"], TypeError),
        (lambda lst: lst.insert(4, "x"), IndexError),
        (lambda lst: lst.insert(-4, "x"), IndexError),
        (lambda lst: lst.__setitem__(3, "x"), IndexError),
        (lambda lst: lst.__setitem__(slice(0, 3, 2), ["x", "y"]), ValueError),
        (lambda lst: lst.__delitem__(3), IndexError),
        (lambda lst: lst.pop(7), IndexError),
        (lambda lst: lst.append(object()), TypeError),
        (lambda lst: lst.append({1: "int key"}), TypeError),
        (lambda lst: lst.append(2**60), ValueError),
        (lambda lst: lst.extend([1, float("inf")]), ValueError),
        (lambda lst: lst.get_map(0), TypeError),
        (lambda lst: lst.get_list(0), TypeError),
    ],
)
def test_bad_calls_raise_and_change_nothing(call: object, error: type[Exception]) -> None:
    peer = Peer("a")
    lst = peer.list()
    lst.extend([1, 2, 3])
    sent = len(peer.sent)
    with pytest.raises(error):
        call(lst)  # type: ignore[operator]
    assert lst.to_py() == [1, 2, 3] and len(peer.sent) == sent


def test_nested_maps_and_lists_are_editable_in_place() -> None:
    peer = Peer("a")
    lst = peer.list()
    lst.append({"title": "x", "tags": ["a"]})
    lst.append([1, [2]])
    item = lst.get_map(0)
    item["done"] = True
    item.get_list("tags").append("b")
    inner = lst.get_list(1)
    assert isinstance(inner, SharedList) and inner.name == "l"
    inner.get_list(1).append(3)
    assert lst.to_py() == [{"done": True, "tags": ["a", "b"], "title": "x"}, [1, [2, 3]]]


def test_guard_is_called_before_every_edit() -> None:
    peer = Peer("a")
    lst = peer.list()
    lst.extend([1, 2, 3])
    peer.read_only = True
    for edit in (
        lambda: lst.append(1),
        lambda: lst.insert(0, 1),
        lambda: lst.extend([1]),
        lambda: lst.__setitem__(0, 9),
        lambda: lst.__delitem__(0),
        lambda: lst.pop(),
        lambda: lst.clear(),
        lambda: lst.reverse(),
    ):
        with pytest.raises(PermissionError):
            edit()
    assert lst.to_py() == [1, 2, 3]


def test_concurrent_edits_of_one_nested_item_keep_both() -> None:
    net = Net("a", "b")
    a, b = net.peers
    a.list().append({"title": "draft"})
    net.settle()
    a.list().get_map(0)["title"] = "final"
    b.list().get_map(0)["owner"] = "bob"
    b.list().insert(0, "first")
    a.list().append("last")
    net.settle()
    assert a.list().to_py() == b.list().to_py() == ["first", {"owner": "bob", "title": "final"}, "last"]


def test_list_changes_stream() -> None:
    net = Net("a", "b")
    a, b = net.peers
    a.list().extend([{"n": 1}, "x"])
    net.settle()
    stream, other = b.list().changes(), b.list("other").changes()
    a.list().get_map(0)["n"] = 2
    a.list().insert(1, [1])
    net.settle()
    nested, inserted = stream.get_nowait(), stream.get_nowait()
    assert nested == ListChange("l", [], False, "a", [NestedChange((0,), keys={"n": KeyChange("update", 1, 2)})])
    assert inserted == ListChange("l", [{"retain": 1}, {"insert": [[1]]}], False, "a")
    assert other.get_nowait() is None
