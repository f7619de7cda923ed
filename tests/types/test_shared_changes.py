"""Typed change events from Document.changes(): object, kind, what changed, who, local or remote."""

from __future__ import annotations

import gc
import random
from typing import Any

from shared_net import Net, Peer

from encspaces.document import (
    Change,
    KeyChange,
    ListChange,
    MapChange,
    NestedChange,
    TableChange,
    TextChange,
)


def drain(stream: Any) -> list[Change]:
    out = []
    while (change := stream.get_nowait()) is not None:
        out.append(change)
    return out


def test_local_and_remote_events_for_every_kind() -> None:
    net = Net("alice", "bob")
    alice, bob = net.peers
    mine, theirs = alice.document.changes(), bob.document.changes()
    for peer in net.peers:  # both open every object first, so bob's events come from observers
        peer.text(), peer.list(), peer.map(), peer.table()
    alice.text().insert(0, "hi")
    alice.list().extend([1, {"a": 1}])
    alice.map()["k"] = "v"
    row = alice.table().insert({"c": 1})
    local = drain(mine)
    assert local == [
        TextChange("t", [{"insert": "hi"}], True, None),
        ListChange("l", [{"insert": [1, {"a": 1}]}], True, None),
        MapChange("m", {"k": KeyChange("add", None, "v")}, True, None),
        TableChange("tb", [row], {}, [], True, None),
    ]
    assert [(c.name, c.kind) for c in local] == [("t", "text"), ("l", "list"), ("m", "map"), ("tb", "table")]
    net.settle()
    remote = drain(theirs)
    assert [(c.name, c.kind, c.local, c.author) for c in remote] == [
        (c.name, c.kind, False, "alice") for c in local
    ]
    assert [getattr(c, "delta", None) for c in remote] == [getattr(c, "delta", None) for c in local]
    assert drain(mine) == []  # applying to bob reports nothing to alice


def test_list_and_map_events_describe_nested_changes() -> None:
    peer = Peer("a")
    lst, m = peer.list(), peer.map()
    lst.extend(["x", {"title": "t", "tags": []}])
    m["profile"] = {"name": "ann", "langs": ["en"]}
    m["n"] = 1
    stream = peer.document.changes()
    with peer.document.transaction():
        lst.get_map(1)["title"] = "T"
        lst.get_map(1).get_list("tags").append("new")
        del lst[0]
    with peer.document.transaction():
        m.get_map("profile").get_list("langs").append("fr")
        m["n"] = 2
        del m["profile"]
    list_change, map_change = drain(stream)
    assert isinstance(list_change, ListChange) and isinstance(map_change, MapChange)
    assert list_change.delta == [{"delete": 1}]
    assert sorted(list_change.nested, key=lambda n: len(n.path)) == [
        NestedChange((0,), keys={"title": KeyChange("update", "t", "T")}),
        NestedChange((0, "tags"), delta=[{"insert": ["new"]}]),
    ]
    # the profile map was removed in the same transaction: its nested edit is not reported, its old value is gone
    assert map_change.keys == {"n": KeyChange("update", 1, 2), "profile": KeyChange("delete", None, None)}
    assert map_change.changed_keys == {"n", "profile"}


def test_map_changed_keys_include_nested_edits() -> None:
    peer = Peer("a")
    m = peer.map()
    m["profile"] = {"name": "ann"}
    stream = m.changes()
    m.get_map("profile")["name"] = "bea"
    change = stream.get_nowait()
    assert change is not None and change.keys == {} and change.changed_keys == {"profile"}
    assert change.nested == [NestedChange(("profile",), keys={"name": KeyChange("update", "ann", "bea")})]


def test_table_events_report_row_ids_and_columns() -> None:
    net = Net("alice", "bob")
    alice, bob = net.peers
    table = alice.table()
    r1, r2, r3 = (table.insert({"n": i}) for i in range(3))
    net.settle()
    theirs = bob.table().changes()
    mine = table.changes()
    with alice.document.transaction():
        r4 = table.insert({"n": 4})
        table.update(r4, {"m": 1})  # a row inserted and updated at once is just inserted
        table.update(r1, {"n": 10, "extra": True})
        table.update(r2, {"n": 1})  # unchanged: not reported
        table.delete(r3)
    expected = TableChange("tb", [r4], {r1: ["extra", "n"]}, [r3], True, None)
    assert drain(mine) == [expected]
    net.settle()
    (remote,) = drain(theirs)
    assert (remote.inserted, remote.updated, remote.deleted) == (expected.inserted, expected.updated, expected.deleted)
    assert (remote.local, remote.author) == (False, "alice")


def test_streams_filter_by_name_and_kind() -> None:
    peer = Peer("a")
    by_name, by_kind, everything = (
        peer.document.changes(name="x"),
        peer.document.changes(kind="map"),
        peer.document.changes(),
    )
    peer.text("x").insert(0, "a")
    peer.map("y")["k"] = 1
    peer.list("z").append(1)
    assert [c.name for c in drain(by_name)] == ["x"]
    assert [c.name for c in drain(by_kind)] == ["y"]
    assert [c.name for c in drain(everything)] == ["x", "y", "z"]


def test_objects_created_by_others_are_reported_when_they_appear() -> None:
    net = Net("alice", "bob")
    alice, bob = net.peers
    stream = bob.document.changes()
    alice.text("notes").insert(0, "bold", {"bold": True})
    alice.list("todo").extend([1, [2]])
    alice.map("cfg").update(a=1)
    row = alice.table("tasks").insert({"x": 1})
    alice.list("empty")  # opened but never written: nothing to send, nothing to report
    net.settle()
    got = {c.name: c for c in drain(stream)}
    assert got == {
        "notes": TextChange("notes", [{"insert": "bold", "attributes": {"bold": True}}], False, "alice"),
        "todo": ListChange("todo", [{"insert": [1, [2]]}], False, "alice"),
        "cfg": MapChange("cfg", {"a": KeyChange("add", None, 1)}, False, "alice"),
        "tasks": TableChange("tasks", [row], {}, [], False, "alice"),
    }
    alice.list("todo").append(3)  # now bob watches it: ordinary events follow
    net.settle()
    assert drain(stream) == [ListChange("todo", [{"retain": 2}, {"insert": [3]}], False, "alice")]


def test_objects_that_arrived_while_nobody_listened_are_watched_once_a_stream_starts() -> None:
    """Nobody listening, arriving objects are not looked for (that costs every update): a stream
    started later still gets their changes, and not their arrival, which came before it."""
    net = Net("alice", "bob")
    alice, bob = net.peers
    alice.list("todo").extend([1])
    alice.map("cfg").update(a=1)
    net.settle()
    stream = bob.document.changes()
    assert drain(stream) == []
    alice.list("todo").append(2)
    alice.map("cfg").update(b=2)
    net.settle()
    assert drain(stream) == [
        ListChange("todo", [{"retain": 1}, {"insert": [2]}], False, "alice"),
        MapChange("cfg", {"b": KeyChange("add", None, 2)}, False, "alice"),
    ]
    assert sorted(bob.document.objects()) == [("cfg", "map"), ("todo", "list")]


async def test_stream_subscribes_at_creation_and_can_be_closed() -> None:
    peer = Peer("a")
    stream = peer.document.changes()
    peer.map()["a"] = 1  # before the first await
    assert (await stream.__anext__()).name == "m"
    stream.close()
    stream.close()
    await stream.aclose()
    peer.map()["b"] = 2
    assert [c async for c in stream] == []


async def test_dropped_streams_stop_receiving() -> None:
    peer = Peer("a")
    kept = peer.document.changes()
    peer.document.changes()  # dropped at once
    gc.collect()
    assert len(peer.document._feed._streams) == 1
    peer.map()["a"] = 1
    assert kept.get_nowait() is not None


def test_no_events_are_built_without_listeners() -> None:
    peer = Peer("a")
    peer.map()["a"] = 1  # exercised for the early return; nothing to observe
    assert not peer.document._feed.listening


def test_text_deltas_replayed_on_a_mirror_reproduce_the_text() -> None:
    """Ranges from remote events are enough to keep an external copy (an editor buffer) in sync."""
    rng = random.Random(7)
    net = Net("a", "b", "c")
    watcher = net.peers[2]
    stream = watcher.text().changes()
    mirror = ""
    for _ in range(200):
        peer = rng.choice(net.peers[:2])
        text = peer.text()
        if len(text) and rng.random() < 0.4:
            i = rng.randrange(len(text))
            text.delete(i, rng.randint(1, len(text) - i))
        else:
            text.insert(rng.randint(0, len(text)), rng.choice(["x", "yz", "hello ", "ü", "😀!"]))
        if rng.random() < 0.3:
            net.deliver_one(rng)
    net.settle(rng)
    events = 0
    while (change := stream.get_nowait()) is not None:
        events += 1
        inserts = iter(op["insert"] for op in change.delta if "insert" in op)  # the n-th insert range's text
        for r in change.ranges:
            if r.action == "insert":
                inserted = next(inserts)
                assert len(inserted) == r.length
                mirror = mirror[: r.index] + inserted + mirror[r.index :]
            elif r.action == "delete":
                mirror = mirror[: r.index] + mirror[r.index + r.length :]
    assert events > 10
    assert mirror == str(watcher.text()) == str(net.peers[0].text()) == str(net.peers[1].text())
