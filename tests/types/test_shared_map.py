"""Shared map: the dict interface over a Yjs map, with nested maps and lists."""

from __future__ import annotations

import pytest
from shared_net import Net, Peer


def test_set_get_delete_and_views() -> None:
    peer = Peer("a")
    m = peer.map()
    m["b"] = 1
    m.set("a", "x")
    m.update({"c": [1, {"d": None}]}, e=False)
    assert m.to_py() == {"a": "x", "b": 1, "c": [1, {"d": None}], "e": False}
    assert list(m) == list(m.keys()) == ["a", "b", "c", "e"]
    assert next(iter(m.items())) == ("a", "x") and list(m.values())[1] == 1
    assert m["b"] == 1 and isinstance(m["b"], int) and m.get("zz") is None and m.get("zz", 5) == 5
    assert "a" in m and "zz" not in m and 3 not in m and len(m) == 4
    assert m == {"a": "x", "b": 1, "c": [1, {"d": None}], "e": False}
    m.delete("a")
    del m["b"]
    assert m.pop("e") is False and m.setdefault("f", 2) == 2
    assert m.to_py() == {"c": [1, {"d": None}], "f": 2}
    with pytest.raises(KeyError):
        m["a"]
    with pytest.raises(KeyError):
        m.delete("a")
    m.clear()
    assert m.to_py() == {} and len(m) == 0
    assert repr(m) == "SharedMap('m', {})"


def test_writes_are_checked_and_grouped() -> None:
    peer = Peer("a")
    m = peer.map()
    m.update(a=1, b=2, c=3)
    assert len(peer.sent) == 1
    m.clear()
    assert len(peer.sent) == 2
    with pytest.raises(TypeError):
        m[1] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        m.update({"ok": 1, "bad": {1, 2}})
    with pytest.raises(ValueError):
        m["n"] = float("nan")
    assert m.to_py() == {} and len(peer.sent) == 2


def test_writing_the_current_value_is_skipped() -> None:
    peer = Peer("a")
    m = peer.map()
    m["x"] = {"deep": [1, 2]}
    m["y"] = 1
    sent = len(peer.sent)
    m["x"] = {"deep": [1, 2]}
    m["y"] = 1.0
    m.update(x={"deep": [1, 2]}, y=1)
    assert len(peer.sent) == sent
    m["y"] = True  # True is not 1
    assert len(peer.sent) == sent + 1 and m["y"] is True


def test_nested_objects() -> None:
    peer = Peer("a")
    m = peer.map()
    m["settings"] = {"theme": "dark", "recent": ["a"]}
    m["plain"] = 3
    settings = m.get_map("settings")
    settings["font"] = 12
    settings.get_list("recent").append("b")
    assert m.get_map("settings") is not settings  # handles are cheap and always fresh
    assert m["settings"] == {"font": 12, "recent": ["a", "b"], "theme": "dark"}
    with pytest.raises(KeyError):
        m.get_map("missing")
    with pytest.raises(TypeError):
        m.get_map("plain")
    with pytest.raises(TypeError):
        m.get_list("settings")


def test_guard_is_called_before_every_edit() -> None:
    peer = Peer("a")
    m = peer.map()
    m["a"] = {"b": 1}
    nested = m.get_map("a")
    peer.read_only = True
    for edit in (
        lambda: m.__setitem__("x", 1),
        lambda: m.set("x", 1),
        lambda: m.__delitem__("a"),
        lambda: m.update(x=1),
        lambda: m.clear(),
        lambda: nested.__setitem__("c", 1),
    ):
        with pytest.raises(PermissionError):
            edit()
    assert m.to_py() == {"a": {"b": 1}}


def test_concurrent_writes_to_different_keys_and_nested_maps_merge() -> None:
    net = Net("a", "b", "c")
    a, b, c = net.peers
    a.map()["profile"] = {"name": "ann"}
    net.settle()
    a.map().get_map("profile")["age"] = 30
    b.map().get_map("profile")["city"] = "Oslo"
    c.map()["other"] = True
    a.map()["same"] = "a"
    b.map()["same"] = "b"
    net.settle()
    views = [p.map().to_py() for p in net.peers]
    assert views[0] == views[1] == views[2]
    assert views[0]["profile"] == {"age": 30, "city": "Oslo", "name": "ann"}
    assert views[0]["same"] in ("a", "b") and views[0]["other"] is True
