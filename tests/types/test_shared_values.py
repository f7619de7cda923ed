"""Every value the API accepts round-trips exactly everywhere; everything else is refused at the call.

Everywhere: another member, a snapshot of the state loaded into a fresh document, and the
content hash (equal on every member). Refused: with UnsupportedValueError naming where in the
value it is, before the document changes. Reading and hashing take any state another Yjs
client can produce, and never raise.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pycrdt
import pytest
from shared_net import Net, Peer

from encspaces.document import Document
from encspaces.errors import EntryTooLargeError, UnsupportedTypeError, UnsupportedValueError
from encspaces.shared.gate import CALL_BYTES, ITEM_BYTES, MAX_EDIT_BYTES
from encspaces.shared.values import MAX_DEPTH, MAX_SAFE_INT, to_plain
from encspaces.snapshot import content_hash, state_content_hash


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


ACCEPTED: list[Any] = [
    0, 0.5, -1.25, 1e20, -1e20, 2.0**53, 1e300, 5e-324, MAX_SAFE_INT, -MAX_SAFE_INT, True, False, None,
    "", "plain", "é ü 😀 \u200b", "\x00nul", {"a": {"b": [1, None, "x"]}, "": 0.1}, [[], {}, [[]]],
    nested(MAX_DEPTH), {"deep": nested(MAX_DEPTH - 1)},
]


def exact(a: Any, b: Any) -> bool:
    """Equal, with the same types, and the same sign of zero."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(exact(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(exact(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def fresh_from(state: bytes) -> Document:
    doc = Document(lambda update: None)
    doc.apply_remote(state, None)
    return doc


def views(doc: Document) -> dict[str, Any]:
    return {
        "map": doc.map("m", lambda: None).to_py(),
        "list": doc.list("l", lambda: None).to_py(),
        "table": doc.table("tb", lambda: None).to_py(),
        "delta": doc.text("t", lambda: None).to_delta(),
    }


@pytest.mark.parametrize("value", ACCEPTED, ids=repr)
def test_accepted_values_round_trip_to_others_snapshots_and_hashes(value: Any) -> None:
    net = Net("a", "b")
    a, b = net.peers
    a.map()["v"] = value
    a.list().append(value)
    row = a.table().insert({"v": value, "w": {"c": 1}})
    a.text().insert(0, "formatted", {"mark": value} if value is not None else {})
    net.settle()
    snap = fresh_from(a.document.state())
    for doc in (a.document, b.document, snap):
        got = views(doc)
        assert exact(got["map"]["v"], value) and exact(got["list"][0], value)
        assert exact(got["table"][row], {"v": value, "w": {"c": 1}})
        if value is not None:
            assert exact(got["delta"][0]["attributes"]["mark"], value)
    assert content_hash(a.document.doc) == content_hash(b.document.doc) == content_hash(snap.doc)
    assert state_content_hash(a.document.state()) == content_hash(a.document.doc)


def test_integral_floats_read_as_ints_within_the_safe_range() -> None:
    peer = Peer("a")
    peer.map()["v"] = 5.0
    assert exact(peer.map()["v"], 5)
    peer.map()["v"] = 2.0**53  # beyond it a float stays a float: no int would be exact for everyone
    assert exact(peer.map()["v"], 2.0**53)


def test_negative_zero_is_stored_as_zero_on_every_member() -> None:
    """Yjs encodes -0.0 as the integer 0: the writer must not keep a -0.0 nobody else sees."""
    net = Net("a", "b")
    a, b = net.peers
    a.map()["v"] = -0.0
    a.list().append({"x": -0.0})
    a.text().insert(0, "t", {"m": -0.0})
    net.settle()
    for peer in net.peers:
        assert exact(peer.map()["v"], 0) and exact(peer.list()[0], {"x": 0})
        assert exact(peer.text().to_delta()[0]["attributes"]["m"], 0)
    assert content_hash(a.document.doc) == content_hash(b.document.doc)


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (2**53, UnsupportedValueError, "exact only up to 2**53-1"),
        (-(2**64), UnsupportedValueError, "too large"),
        (float("inf"), UnsupportedValueError, "not a finite number"),
        (float("nan"), UnsupportedValueError, "not a finite number"),
        ({"ok": [1, float("-inf")]}, UnsupportedValueError, "['ok'][1]: -inf"),
        (b"bytes", UnsupportedTypeError, "bytes is not a JSON-like value"),
        ({1, 2}, UnsupportedTypeError, "set"),
        ({"k": object()}, UnsupportedTypeError, "['k']: object"),
        ({"a": {1: "x"}}, UnsupportedTypeError, "['a']: dict keys must be str, not int"),
        ({("tuple",): 1}, UnsupportedTypeError, "dict keys must be str"),
        ("lone \ud800 surrogate", UnsupportedValueError, "lone surrogate"),
        ({"\udfff": 1}, UnsupportedValueError, "lone surrogate"),
        (nested(MAX_DEPTH + 1), UnsupportedValueError, f"nested more than {MAX_DEPTH}"),
    ],
    ids=lambda param: re.sub(r" at 0x[0-9a-f]+", "", repr(param)),  # the same ids in every xdist worker
)
def test_values_that_cannot_round_trip_are_refused_at_the_call(value: Any, error: type[Exception], words: str) -> None:
    peer = Peer("a")
    before = content_hash(peer.document.doc)
    writes = [
        lambda: peer.map().set("v", value), lambda: peer.map().update({"v": value}),
        lambda: peer.list().append(value), lambda: peer.list().extend([1, value]),
        lambda: peer.table().insert({"v": value}), lambda: peer.text().insert(0, "x", {"mark": value}),
    ]
    for write in writes:
        with pytest.raises(error) as info:
            write()
        assert words in str(info.value)
        assert isinstance(info.value, ValueError)
    assert peer.sent == [] and content_hash(peer.document.doc) == before


# --- what another Yjs client can write: reading and hashing never raise -----------------------


def crafted(make: Any) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    make(doc)
    return doc.get_update()


def deep_arrays(doc: pycrdt.Doc[Any], depth: int) -> None:
    inner: pycrdt.Array[Any] = pycrdt.Array()
    doc.get("map:m", type=pycrdt.Map)["deep"] = inner
    with doc.transaction():
        for _ in range(depth):
            nxt: pycrdt.Array[Any] = pycrdt.Array()
            inner.append(nxt)
            inner = nxt


CRAFTED = {
    "integral float beyond int64": lambda d: d.get("map:m", type=pycrdt.Map).__setitem__("k", 1e20),
    "huge float in a format mark": lambda d: (d.get("text:t", type=pycrdt.Text).insert(0, "hi"),
                                             d.get("text:t", type=pycrdt.Text).format(0, 1, {"size": 1e300})),
    "map embedded in a text": lambda d: d.get("text:t", type=pycrdt.Text).insert_embed(0, pycrdt.Map({"a": 1e20})),
    "number embedded in a text": lambda d: d.get("text:t", type=pycrdt.Text).insert_embed(0, 7),
    "sub-document in a map": lambda d: d.get("map:m", type=pycrdt.Map).__setitem__("x", pycrdt.Doc()),
    "text in a list": lambda d: d.get("list:l", type=pycrdt.Array).append(pycrdt.Text("inner")),
    "xml in a map": lambda d: d.get("map:m", type=pycrdt.Map).__setitem__(
        "x", pycrdt.XmlFragment([pycrdt.XmlElement("p", {"k": "v"}, [pycrdt.XmlText("hi")])])),
    "bytes and nan": lambda d: d.get("list:l", type=pycrdt.Array).extend([b"\x00", float("nan"), float("-inf")]),
    "a text root holding map entries": lambda d: d.get("text:t", type=pycrdt.Map).__setitem__("k", 1),
    "a table row that is not a map": lambda d: d.get("table:tb", type=pycrdt.Map).__setitem__("r", 5),
    "nesting 3000 deep": lambda d: deep_arrays(d, 3000),
}


@pytest.mark.parametrize("make", CRAFTED.values(), ids=CRAFTED.keys())
def test_any_state_another_client_writes_reads_and_hashes(make: Any) -> None:
    update = crafted(make)
    peer = Peer("a")
    for open_all in (peer.text, peer.list, peer.map, peer.table):
        open_all()
    peer.document.apply_remote(update, "mallory")
    first = content_hash(peer.document.doc)
    assert state_content_hash(update) == first == state_content_hash(peer.document.state())
    views(peer.document)  # every reader returns
    for name in ("map:m", "list:l", "table:tb"):
        root = peer.document.doc.get(name, type=pycrdt.Array if name == "list:l" else pycrdt.Map)
        to_plain(root)
    peer.table().rows()


def test_equal_content_hashes_need_equal_content() -> None:
    """The hash tells a dict from a list of pairs, and an empty root nobody wrote from none."""
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    a.map()["v"] = {"price": 100}
    b.map()["v"] = [["price", 100]]
    c.map()["v"] = {"price": 100}
    c.map("never-written")
    assert content_hash(a.document.doc) != content_hash(b.document.doc)
    assert content_hash(a.document.doc) == content_hash(c.document.doc)


# --- an edit too large for one entry is refused before the document changes -----------------


def limit_for_map_value(key: str = "k", name: str = "m") -> int:
    """The longest ASCII string ``map(name)[key]`` takes (the estimate's terms, in gate.py)."""
    return MAX_EDIT_BYTES - CALL_BYTES - len(f"map:{name}") - (ITEM_BYTES + 5 + len(key) + 5)


def test_the_size_limit_is_exact_at_its_boundary() -> None:
    peer = Peer("a")
    longest = limit_for_map_value()
    with pytest.raises(EntryTooLargeError, match="one entry carries at most"):
        peer.map()["k"] = "x" * (longest + 1)
    assert peer.sent == [] and "k" not in peer.map()
    peer.map()["k"] = "x" * longest
    assert len(peer.sent) == 1 and len(peer.sent[0]) <= MAX_EDIT_BYTES


@pytest.mark.parametrize(
    "write",
    [
        lambda p: p.table().insert({"blob": "x" * 1_500_000}),
        lambda p: p.text().insert(0, "y" * 1_100_000),
        lambda p: p.map().update({"a": "z" * 600_000, "b": "z" * 600_000}),
        lambda p: p.list().extend(["w" * 100_000] * 11),
        lambda p: p.table().update(p.table().insert({"a": 1}), {"big": ["v" * 1000] * 1100}),
        lambda p: p.text().insert(0, "é" * 600_000),  # two UTF-8 bytes each
    ],
)
def test_an_oversized_edit_is_refused_before_anything_changes(write: Any) -> None:
    peer = Peer("a")
    peer.map()["before"] = 1
    sent, state = len(peer.sent), content_hash(peer.document.doc)
    with pytest.raises(EntryTooLargeError):
        write(peer)
    assert content_hash(peer.document.doc) == state or len(peer.sent) == sent + 1  # (update: the row, not the cell)
    assert all(len(update) <= MAX_EDIT_BYTES for update in peer.sent)


def test_a_transaction_is_refused_once_its_total_would_pass_the_limit() -> None:
    peer = Peer("a")
    done = 0
    with pytest.raises(EntryTooLargeError, match="this transaction would grow"), peer.document.transaction():
        for i in range(20):
            peer.map()[f"k{i}"] = "x" * 100_000
            done += 1
    assert 5 < done < 11  # what was written before the refused edit stays, as one update under the limit
    assert len(peer.sent) == 1 and len(peer.sent[0]) <= MAX_EDIT_BYTES
    assert len(peer.map()) == done
    peer.map()["after"] = "x" * 100_000  # a new transaction starts from zero
    assert len(peer.sent) == 2
