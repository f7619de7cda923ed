"""Document: wrappers per name, kinds, root layout, plain values, and robustness of observers."""

from __future__ import annotations

import itertools
from typing import Any

import pycrdt
import pytest
from shared_net import Net, Peer

import encspaces.document as document_module
from encspaces.document import Document, ObjectKindError
from encspaces.errors import EncspacesError


def test_wrappers_are_cached_per_name() -> None:
    peer = Peer("a")
    assert peer.text("x") is peer.text("x") and peer.text("x") is not peer.text("y")
    assert peer.list() is peer.list() and peer.map() is peer.map() and peer.table() is peer.table()
    other_guard_calls: list[int] = []
    same = peer.document.text("x", lambda: other_guard_calls.append(1))
    same.insert(0, "a")  # the wrapper keeps the guard it was created with
    assert same is peer.text("x") and other_guard_calls == [] and peer.guard_calls == 1


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(["text", "list", "map", "table"], 2)))
def test_a_name_has_one_kind(first: str, second: str) -> None:
    peer = Peer("a")
    getattr(peer, first)("x")
    with pytest.raises(ObjectKindError, match=f"'x' is a {first} in this space, not a {second}"):
        getattr(peer, second)("x")


def test_kind_is_known_from_the_document_before_opening() -> None:
    net = Net("a", "b")
    a, b = net.peers
    a.table("tasks").insert({"x": 1})
    net.settle()
    with pytest.raises(ObjectKindError, match="'tasks' is a table in this space, not a map") as info:
        b.map("tasks")
    assert isinstance(info.value, EncspacesError) and isinstance(info.value, TypeError)
    assert len(b.table("tasks")) == 1


def test_a_name_created_concurrently_with_two_kinds_stays_usable() -> None:
    net = Net("a", "b", "c")
    a, b, c = net.peers
    a.text("x").insert(0, "text")
    b.map("x")["k"] = "map"
    net.settle()
    assert c.document.objects() == [("x", "map"), ("x", "text")]
    assert str(c.text("x")) == "text"  # each creator keeps its object; a fresh member may open either once
    with pytest.raises(ObjectKindError):
        c.map("x")


def test_objects_live_under_kind_prefixed_roots() -> None:
    peer = Peer("a")
    peer.text("notes").insert(0, "n")
    peer.list("todo").append(1)
    peer.map("cfg")["a"] = 1
    peer.table("rows").insert({})
    peer.document.doc.get("legacy", type=pycrdt.Text).insert(0, "ignored")
    assert set(peer.document.doc.keys()) >= {"text:notes", "list:todo", "map:cfg", "table:rows", "legacy"}
    assert peer.document.objects() == [("cfg", "map"), ("notes", "text"), ("rows", "table"), ("todo", "list")]
    assert Peer("fresh").document.objects() == []


def test_names_are_strings() -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        Peer("a").document.text(3, lambda: None)  # type: ignore[arg-type]
    peer = Peer("a")
    peer.text("with:colon").insert(0, "ok")
    assert peer.document.objects() == [("with:colon", "text")]


def test_garbage_updates_raise_value_error_and_change_nothing() -> None:
    peer = Peer("a")
    peer.text().insert(0, "safe")
    for garbage in (b"", b"\xff" * 10, b"\x01\x01\x01"):
        with pytest.raises(ValueError):
            peer.document.apply_remote(garbage, "mallory")
    assert str(peer.text()) == "safe" and peer.document.remote_author is None


def test_state_carries_everything_to_a_new_document() -> None:
    source = Peer("a")
    source.text().insert(0, "t", {"bold": True})
    source.list().append({"a": [1]})
    source.map()["m"] = 1
    row = source.table().insert({"c": "v"})
    fresh = Document(lambda update: None)
    fresh.apply_remote(source.document.state(), "a")
    guard = lambda: None  # noqa: E731
    assert fresh.text("t", guard).to_delta() == [{"insert": "t", "attributes": {"bold": True}}]
    assert fresh.list("l", guard).to_py() == [{"a": [1]}]
    assert fresh.map("m", guard).to_py() == {"m": 1}
    assert fresh.table("tb", guard).to_py() == {row: {"c": "v"}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (-7, -7),
        (2**53 - 1, 2**53 - 1),
        (1.5, 1.5),
        (2.0, 2),  # Yjs has only floats: integral numbers come back as int
        (True, True),
        (None, None),
        ("", ""),
        ((1, (2, "x")), [1, [2, "x"]]),
        ({"b": {"c": [None]}, "a": 1}, {"a": 1, "b": {"c": [None]}}),
    ],
)
def test_plain_values_round_trip_to_other_members(value: Any, expected: Any) -> None:
    net = Net("a", "b")
    a = net.peers[0]
    a.map()["v"] = value
    a.list().append(value)
    row = a.table().insert({"v": value})
    net.settle()
    for peer in net.peers:
        for got in (peer.map()["v"], peer.list()[0], peer.table()[row]["v"]):
            assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (2**53, ValueError),
        (-(2**70), ValueError),
        (float("inf"), ValueError),
        (float("nan"), ValueError),
        (b"bytes", TypeError),
        ({1, 2}, TypeError),
        ({"k": object()}, TypeError),
        ({("tuple",): 1}, TypeError),
        ("lone \ud800 surrogate", ValueError),
        ({"\udfff": 1}, ValueError),
    ],
)
def test_values_that_cannot_be_shared_exactly_are_refused(value: Any, error: type[Exception]) -> None:
    peer = Peer("a")
    for write in (lambda: peer.map().set("v", value), lambda: peer.list().append(value),
                  lambda: peer.table().insert({"v": value})):
        with pytest.raises(error):
            write()
    assert peer.sent == []


def test_values_written_by_other_clients_are_read_safely() -> None:
    """Another Yjs client may store binary data or nested texts; reading gives plain values."""
    peer = Peer("a")
    raw = peer.document.doc.get("map:m", type=pycrdt.Map)
    raw["bin"] = b"\x00\x01"
    raw["text"] = pycrdt.Text("nested")
    raw["big"] = 1e300
    assert peer.map().to_py() == {"big": 1e300, "bin": b"\x00\x01", "text": "nested"}


def test_a_failing_observer_never_breaks_applying_updates(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    net = Net("a", "b")
    a, b = net.peers
    b.text()
    stream = b.document.changes()

    def broken(*args: object) -> None:
        raise RuntimeError("bug in event conversion")

    monkeypatch.setattr(document_module, "change_from_events", broken)
    monkeypatch.setattr(document_module, "appeared", broken)
    a.text().insert(0, "still applied")
    a.map().update(k=1)
    net.settle()
    assert str(b.text()) == "still applied" and b.map().to_py() == {"k": 1}
    assert stream.get_nowait() is None
    assert "could not describe" in caplog.text


@pytest.mark.xfail(strict=False, reason="pycrdt 0.14 loses content when one author's updates arrive out of order")
def test_out_of_order_updates_of_one_author_can_lose_content() -> None:
    """Why the SDK (and Net) must apply each author's updates in order: found by the random tests."""
    author = Peer("a")
    text = author.text()
    for index, char in ((0, "c"), (0, "b"), (0, "b"), (3, "b")):
        text.insert(index, char)
    reader = Peer("b")
    for i in (0, 2, 3, 1):
        reader.document.apply_remote(author.sent[i], "a")
    assert str(reader.text()) == str(text) == "bbcb"


def test_an_untouched_document_adopts_a_loaded_state_and_goes_on_reporting_local_edits() -> None:
    source = Peer("a")
    source.text("t").insert(0, "snapshot text")
    updates: list[bytes] = []
    fresh = Document(updates.append)
    stranger: pycrdt.Doc[Any] = pycrdt.Doc(client_id=fresh.client_id + 1)
    stranger.apply_update(source.document.state())
    assert not fresh.adopt(stranger, "author")  # local edits would stand under another client id
    loaded: pycrdt.Doc[Any] = pycrdt.Doc(client_id=fresh.client_id)
    loaded.apply_update(source.document.state())
    assert fresh.adopt(loaded, "author")
    assert fresh.doc is loaded and fresh.objects() == [("t", "text")]
    fresh.text("t", lambda: None).insert(0, ">")
    assert len(updates) == 1  # the adopted document's local edits still become updates
    source.document.apply_remote(updates[0], "b")
    assert str(source.text("t")) == ">snapshot text"


@pytest.mark.parametrize("touch", ["opened", "written"])
def test_a_document_in_use_does_not_adopt(touch: str) -> None:
    document = Document(lambda update: None)
    if touch == "opened":
        document.text("t", lambda: None)
    else:
        other = Peer("b")
        other.text("u").insert(0, "x")
        document.apply_remote(other.document.state(), "b")
    loaded: pycrdt.Doc[Any] = pycrdt.Doc()
    before = document.doc
    assert not document.adopt(loaded, "author") and document.doc is before
