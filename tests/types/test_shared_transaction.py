"""Document.transaction(): several edits become one update, one entry, one event per object."""

from __future__ import annotations

import pytest
from shared_net import Net, Peer

from encspaces.document import TableChange


def edit_everything(peer: Peer) -> None:
    peer.text().insert(0, "title")
    peer.list().extend([1, 2])
    peer.map()["k"] = {"nested": True}
    row = peer.table().insert({"a": 1})
    peer.table().update(row, {"b": 2})


def test_edits_in_a_transaction_are_one_update() -> None:
    net = Net("a", "b")
    a, b = net.peers
    for peer in net.peers:
        peer.text(), peer.list(), peer.map(), peer.table()
    stream = b.document.changes()
    with a.document.transaction():
        edit_everything(a)
        assert a.sent == []  # nothing leaves before the block ends
        assert str(a.text()) == "title"  # but the edits are visible locally at once
    assert len(a.sent) == 1
    net.settle()
    assert str(b.text()) == "title" and b.list().to_py() == [1, 2] and b.map().to_py() == {"k": {"nested": True}}
    events = []
    while (change := stream.get_nowait()) is not None:
        events.append(change)
    # one event per object (their order within a transaction is up to Yjs)
    assert sorted((c.kind, c.author) for c in events) == [("list", "a"), ("map", "a"), ("table", "a"), ("text", "a")]
    (table_change,) = [c for c in events if isinstance(c, TableChange)]
    assert len(table_change.inserted) == 1 and table_change.updated == {}


def test_nested_transactions_commit_once() -> None:
    peer = Peer("a")
    with peer.document.transaction():
        peer.text().insert(0, "a")
        with peer.document.transaction():
            peer.text().insert(1, "b")
            with peer.document.transaction():
                peer.map()["x"] = 1
        peer.text().insert(2, "c")
        assert peer.sent == []
    assert len(peer.sent) == 1 and str(peer.text()) == "abc"


def test_without_a_transaction_each_edit_is_its_own_update() -> None:
    peer = Peer("a")
    edit_everything(peer)
    assert len(peer.sent) == 5


def test_an_empty_transaction_sends_nothing() -> None:
    peer = Peer("a")
    with peer.document.transaction():
        peer.text()
        str(peer.text())
    assert peer.sent == []


def test_edits_before_an_exception_are_kept_and_sent_once() -> None:
    peer = Peer("a")
    with pytest.raises(RuntimeError), peer.document.transaction():
        peer.text().insert(0, "kept")
        raise RuntimeError("boom")
    assert str(peer.text()) == "kept" and len(peer.sent) == 1


def test_remote_updates_wait_for_an_open_transaction() -> None:
    """An application may hold a transaction across an await; remote entries land after it."""
    net = Net("a", "b")
    a, b = net.peers
    a.text().insert(0, "remote ")
    stream = b.document.changes()
    with b.document.transaction():
        b.text().insert(0, "local")
        net.settle()  # delivered mid-transaction
        assert str(b.text()) == "local"
        with pytest.raises(ValueError, match="not a valid document update"):
            b.document.apply_remote(b"\xff\xfe garbage", "a")
    assert len(b.sent) == 1
    assert str(a.text()) == "remote " and "remote" in str(b.text())
    net.settle()
    assert str(a.text()) == str(b.text()) and str(b.text()) in ("localremote ", "remote local")
    changes = [stream.get_nowait(), stream.get_nowait()]
    assert [(c.local, c.author) for c in changes if c] == [(True, None), (False, "a")]


def test_a_deferred_update_that_fails_later_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer("b")
    doc = peer.document
    with doc.transaction():
        doc._deferred.append((b"\x01\x02\x03", "mallory"))  # passed the cheap check, fails to apply
        peer.text().insert(0, "still fine")
    assert str(peer.text()) == "still fine"
    assert "could not be applied" in caplog.text and doc._deferred == []
