"""Shared text: editing, formatting, reading, and its own change iterator."""

from __future__ import annotations

import pytest
from shared_net import Net, Peer

from encspaces.document import TextChange, TextRange


def test_insert_delete_str_len() -> None:
    text = Peer("a").text()
    text.insert(0, "world")
    text.insert(0, "hello ")
    text.insert(len(text), "!")
    assert str(text) == "hello world!" and len(text) == 12 and text.to_py() == "hello world!"
    text.delete(5, 6)
    assert str(text) == "hello!"
    text.delete(0, 0)
    text.insert(3, "")
    assert str(text) == "hello!"
    assert repr(text) == "SharedText('t', 6 characters)"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda t: t.insert(-1, "x"), IndexError),
        (lambda t: t.insert(4, "x"), IndexError),
        (lambda t: t.insert(True, "x"), TypeError),
        (lambda t: t.insert(0, 5), TypeError),
        (lambda t: t.delete(2, 2), IndexError),
        (lambda t: t.delete(0, -1), IndexError),
        (lambda t: t.delete(0, 1.0), TypeError),
        (lambda t: t.format(1, 5, {"bold": True}), IndexError),
        (lambda t: t.format(0, 1, ["bold"]), TypeError),
        (lambda t: t.insert(0, "x", {"bold": object()}), TypeError),
        (lambda t: t.insert(0, "x", {"size": float("nan")}), ValueError),
    ],
)
def test_bad_arguments_change_nothing(call: object, error: type[Exception]) -> None:
    peer = Peer("a")
    text = peer.text()
    text.insert(0, "abc")
    sent = len(peer.sent)
    with pytest.raises(error):
        call(text)  # type: ignore[operator]
    assert str(text) == "abc" and len(peer.sent) == sent


def test_formatting_attributes() -> None:
    text = Peer("a").text()
    text.insert(0, "hello", {"bold": True})
    text.insert(5, " world", {})
    assert text.to_delta() == [{"insert": "hello", "attributes": {"bold": True}}, {"insert": " world"}]
    text.format(3, 4, {"italic": True, "color": "#f00"})
    assert text.to_delta() == [
        {"insert": "hel", "attributes": {"bold": True}},
        {"insert": "lo", "attributes": {"bold": True, "color": "#f00", "italic": True}},
        {"insert": " w", "attributes": {"color": "#f00", "italic": True}},
        {"insert": "orld"},
    ]
    text.format(0, 11, {"bold": None, "italic": None, "color": None})
    assert text.to_delta() == [{"insert": "hello world"}]


def test_insert_without_attrs_takes_surrounding_formatting() -> None:
    text = Peer("a").text()
    text.insert(0, "ab", {"bold": True})
    text.insert(2, "c")
    text.insert(3, "d", {})
    assert text.to_delta() == [{"insert": "abc", "attributes": {"bold": True}}, {"insert": "d"}]


def test_every_edit_calls_the_guard_first() -> None:
    peer = Peer("a")
    text = peer.text()
    text.insert(0, "abc")
    text.format(0, 1, {"b": True})
    text.delete(0, 1)
    assert peer.guard_calls == 3
    peer.read_only = True
    for edit in (lambda: text.insert(0, "x"), lambda: text.delete(0, 1), lambda: text.format(0, 1, {"b": 1})):
        with pytest.raises(PermissionError):
            edit()
    assert str(text) == "bc"


def test_concurrent_formatting_and_typing_converge() -> None:
    net = Net("a", "b")
    a, b = net.peers
    a.text().insert(0, "shared text")
    net.settle()
    a.text().format(0, 6, {"bold": True})
    b.text().format(3, 5, {"italic": True})
    b.text().insert(11, "!")
    a.text().delete(6, 5)
    net.settle()
    assert a.text().to_delta() == b.text().to_delta()
    assert str(a.text()) == "shared!"


async def test_text_changes_local_and_remote_with_ranges() -> None:
    net = Net("alice", "bob")
    alice, bob = net.peers
    mine, theirs = alice.text().changes(), bob.text().changes()
    alice.text().insert(0, "hello", {"bold": True})
    local = await mine.__anext__()
    assert local == TextChange("t", [{"insert": "hello", "attributes": {"bold": True}}], True, None)
    assert local.name == "t" and local.kind == "text"
    assert local.ranges == [TextRange(0, 5, "insert", {"bold": True})]
    net.settle()
    remote = await theirs.__anext__()
    assert (remote.local, remote.author, remote.delta) == (False, "alice", local.delta)

    bob.text().delete(1, 2)
    bob.text().format(2, 1, {"bold": None})
    net.settle()
    deleted, formatted = await mine.__anext__(), await mine.__anext__()
    assert deleted.author == formatted.author == "bob"
    assert deleted.ranges == [TextRange(1, 2, "delete")]
    assert formatted.ranges == [TextRange(2, 1, "format", {"bold": None})]


async def test_text_changes_stream_only_its_text_and_stops_when_closed() -> None:
    peer = Peer("a")
    stream = peer.text("one").changes()
    peer.text("two").insert(0, "elsewhere")
    peer.text("one").insert(0, "here")
    got = await stream.__anext__()
    assert got.text == "one"
    assert stream.get_nowait() is None
    stream.close()
    peer.text("one").insert(0, "after")
    assert [c async for c in stream] == []


def test_positions_count_characters_not_bytes() -> None:
    """pycrdt addresses text in UTF-8 bytes; the API must not leak that."""
    net = Net("a", "b")
    a, b = net.peers
    text = a.text()
    text.insert(0, "aü😀b")
    assert len(text) == 4
    text.insert(2, "X")
    assert str(text) == "aüX😀b"
    text.delete(3, 1)
    assert str(text) == "aüXb"
    text.format(1, 2, {"bold": True})
    assert text.to_delta() == [{"insert": "a"}, {"insert": "üX", "attributes": {"bold": True}}, {"insert": "b"}]
    with pytest.raises(IndexError):
        text.insert(5, "!")
    with pytest.raises(ValueError, match="lone surrogate"):
        text.insert(0, "\ud800")
    net.settle()
    stream = b.text().changes()
    text.delete(1, 2)
    text.insert(2, "é", {"i": True})
    net.settle()
    deleted, inserted = stream.get_nowait(), stream.get_nowait()
    assert deleted is not None and inserted is not None
    assert deleted.delta == [{"retain": 1}, {"delete": 2}] and deleted.ranges == [TextRange(1, 2, "delete")]
    assert inserted.ranges == [TextRange(2, 1, "insert", {"i": True})]
    assert str(b.text()) == "abé"
