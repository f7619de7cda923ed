"""Reading a data entry's plaintext: which items an update holds, whatever clock they start at."""

from __future__ import annotations

from typing import Any

import pycrdt
import pytest

from encspaces.core.client_ids import NONCE_SIZE, ClientOwners, data_plaintext, derive_client_id
from encspaces.data_payload import Unusable, foreign_items, read_data


def _edits(client: int) -> tuple[pycrdt.Doc[Any], bytes, bytes]:
    """A document under ``client``, its first update (clock 0) and a later one (from clock 5,
    with a deletion): pycrdt's ``get_state`` of the later one is empty, which must not matter."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client)
    text = doc.get("text:doc", type=pycrdt.Text)
    text.insert(0, "hello")
    first = doc.get_update()
    before = doc.get_state()
    text.insert(5, "!")
    del text[0:1]
    return doc, first, doc.get_update(before)


def test_items_are_found_under_whatever_client_wrote_them() -> None:
    _, first, later = _edits(1234)
    for update in (first, later):
        assert foreign_items(update, 1234) is None
        assert foreign_items(update, 99) == (1, 1234)
    other: pycrdt.Doc[Any] = pycrdt.Doc(client_id=77)
    other.apply_update(first)
    other.get("text:doc", type=pycrdt.Text).insert(0, "x")
    both = other.get_update()
    assert foreign_items(both, 1234) == (1, 77)
    assert foreign_items(both, 5) == (2, foreign_items(both, 5)[1])  # type: ignore[index]
    with pytest.raises(ValueError, match="not a valid document update"):
        foreign_items(b"\xff\xfegarbage", 1)


def test_deletions_of_others_items_are_not_foreign() -> None:
    _, first, _ = _edits(1234)
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=55)
    doc.apply_update(first)
    before = doc.get_state()
    del doc.get("text:doc", type=pycrdt.Text)[0:2]
    assert foreign_items(doc.get_update(before), 55) is None


def test_read_data_checks_the_derived_client_id() -> None:
    author, nonce = b"\x09" * 32, b"\x03" * NONCE_SIZE
    _, first, later = _edits(derive_client_id(author, nonce))
    owners = ClientOwners()
    assert read_data(data_plaintext(nonce, later), True, owners, author) == later
    wrong = read_data(data_plaintext(b"\x04" * NONCE_SIZE, first), True, owners, author)
    assert isinstance(wrong, Unusable) and wrong.kind == "foreign_client"
    short = read_data(nonce, True, owners, author)
    assert isinstance(short, Unusable) and short.kind == "invalid_update"
    garbage = read_data(nonce + b"\xff\xfe", True, owners, author)
    assert isinstance(garbage, Unusable) and garbage.kind == "invalid_update"
    assert read_data(first, False, owners, b"\x01" * 32) == first  # a space from before: bare updates


def test_a_sessions_next_entries_are_read_from_the_bytes_of_its_client_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once an entry of a session was read, the next ones whose update writes the same client id
    in the same bytes are its own without decoding the header again (a received entry's cost)."""
    author, nonce = b"\x09" * 32, b"\x03" * NONCE_SIZE
    _, first, later = _edits(derive_client_id(author, nonce))
    owners = ClientOwners()
    assert read_data(data_plaintext(nonce, first), True, owners, author) == first

    def unread(data: bytes, pos: int) -> tuple[int, int]:
        raise AssertionError("the header was decoded again")

    monkeypatch.setattr("encspaces.data_payload.read_varuint", unread)
    assert read_data(data_plaintext(nonce, later), True, owners, author) == later


def test_a_known_session_gives_the_same_verdicts_as_a_fresh_reader() -> None:
    """Whatever follows a session's first entry (its own edits, another writer's items under it,
    another author under its client id, cut or garbled updates), a device that read the session
    before and one that did not answer alike."""
    author, nonce = b"\x09" * 32, b"\x03" * NONCE_SIZE
    client = derive_client_id(author, nonce)
    doc, first, later = _edits(client)
    other: pycrdt.Doc[Any] = pycrdt.Doc(client_id=77)
    other.apply_update(doc.get_update())
    before = other.get_state()
    other.get("text:doc", type=pycrdt.Text).insert(0, "x")
    foreign = other.get_update(before)
    mixed = pycrdt.merge_updates(later, foreign)
    cases = [(author, later), (author, foreign), (author, mixed), (b"\x0a" * 32, later), (author, b"\x00\x00")]
    cases += [(author, later[:cut]) for cut in range(1, len(later))]
    cases += [(author, later[:i] + bytes([later[i] ^ 0x80]) + later[i + 1 :]) for i in range(len(later))]
    for who, update in cases:
        known = ClientOwners()
        assert read_data(data_plaintext(nonce, first), True, known, author) == first
        fresh = ClientOwners()
        fresh.first[client] = author  # (what the known reader's first entry claimed)
        assert read_data(data_plaintext(nonce, update), True, known, who) \
            == read_data(data_plaintext(nonce, update), True, fresh, who), (who, update)
