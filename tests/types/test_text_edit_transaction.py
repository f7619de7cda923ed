"""A text edit outside any transaction begins and commits its own Yrs transaction (not pycrdt's
Python wrapper, for speed): it must behave as pycrdt's ``with doc.transaction()`` did."""

from __future__ import annotations

from typing import Any

import pycrdt
import pytest

from encspaces.document import Document


def test_an_observer_error_comes_out_of_the_edit_and_leaves_no_transaction_open() -> None:
    updates: list[bytes] = []
    document = Document(updates.append)
    text = document.text("t", lambda: None)
    text.insert(0, "hello")

    def fail(_event: Any) -> None:
        raise ValueError("observer failed")

    subscription = document.doc.observe(fail)
    with pytest.raises(ExceptionGroup) as raised:
        text.insert(5, "!")
    assert [type(e) for e in raised.value.exceptions] == [ValueError]
    document.doc.unobserve(subscription)
    assert document.doc._txn is None  # nothing left open: the next edit begins its own
    text.delete(0, 1)
    assert str(text) == "ello!" and len(updates) == 3


def test_reads_during_the_edit_join_its_transaction() -> None:
    """A text first edited here after its content arrived works its positions out from the text,
    inside the edit (a second transaction there would fail), and a change stream reads the text
    at commit."""
    sent: list[bytes] = []
    writer = Document(sent.append)
    writer.text("t", lambda: None).insert(0, "héllo wörld")
    reader = Document(lambda update: None)
    for update in sent:
        reader.apply_remote(update, "w")
    changes = reader.changes()
    text = reader.text("t", lambda: None)
    text.insert(5, ",")  # the first edit here: positions worked out from the text, under the edit
    text.delete(0, 1)
    assert str(text) == "éllo, wörld" and len(text) == 11
    assert [change.local for change in [changes.get_nowait(), changes.get_nowait()]] == [True, True]


def test_edits_inside_a_transaction_join_it_and_make_one_update() -> None:
    updates: list[bytes] = []
    document = Document(updates.append)
    text = document.text("t", lambda: None)
    with document.transaction():
        text.insert(0, "ab")
        text.insert(2, "ç")
        text.delete(0, 1)
        assert str(text) == "bç"
    assert len(updates) == 1


def test_an_edit_from_inside_an_observer_is_refused() -> None:
    """pycrdt runs a text's observers in a read-only transaction: an edit there must not join it."""
    document = Document(lambda update: None)
    text = document.text("t", lambda: None)
    ytext = document.doc.get("text:t", type=pycrdt.Text)
    subscription = ytext.observe(lambda _event: text.insert(0, ">"))
    with pytest.raises(ExceptionGroup) as raised:
        text.insert(0, "x")
    ytext.unobserve(subscription)
    assert [type(e) for e in raised.value.exceptions] == [RuntimeError]
    assert "Read-only" in str(raised.value.exceptions[0])
    assert str(text) == "x"
    text.insert(1, "y")
    assert str(text) == "xy"


def test_a_multithreaded_document_keeps_pycrdts_transactions() -> None:
    """Such a document takes a lock per transaction: edits go through pycrdt's own path."""
    document = Document(lambda update: None)
    document.doc = pycrdt.Doc(allow_multithreading=True)
    text = document.text("t", lambda: None)
    assert not text._shortcut
    text.insert(0, "héllo")
    text.delete(0, 1)
    assert str(text) == "éllo" and document.doc._txn is None


def test_the_installed_pycrdt_has_what_the_shortcut_relies_on() -> None:
    """The shortcut falls back to pycrdt's path when an internal it mirrors is missing; a pycrdt
    release that renames one would silently cost each keystroke ~2 µs. This pins the layout of
    the pycrdt that pyproject.toml allows, so such a release shows here first."""
    document = Document(lambda update: None)
    text = document.text("t", lambda: None)
    assert text._shortcut
