"""Text positions stay exact Python characters whatever Yrs counts (UTF-8 bytes in pycrdt 0.14).

The index that converts them (``TextIndex``) is checked against a plain Python string, alone
and inside ``SharedText`` with two peers exchanging updates: after every step the text equals
the model and every character index maps to the right Yrs offset.
"""

from __future__ import annotations

import random

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_net import Peer

from encspaces.shared import text_index
from encspaces.shared.text import SharedText
from encspaces.shared.text_index import TextIndex

PIECES = ["a", "xyz", "é", "ñö", "中", "文字", "😀", "👩‍💻", "a😀é中", "\n"]


def check_index(index: TextIndex, model: str) -> None:
    assert str(index) == model
    assert index.chars == len(model) and index.utf8 == len(model.encode())
    offset = 0
    for i, ch in enumerate(model):
        assert index.offset(i) == offset
        assert index.index(offset) == i
        offset += len(ch.encode())
    assert index.offset(len(model)) == offset and index.index(offset) == len(model)


def test_pycrdt_counts_utf8_bytes() -> None:
    """What this module is for: pycrdt 0.14's Text counts UTF-8 bytes in len, insert and deltas."""
    doc: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    text.insert(0, "aé中😀")
    assert len(text) == 1 + 2 + 3 + 4
    text.insert(1 + 2 + 3, "|")  # after 中, in bytes
    assert str(text) == "aé中|😀"
    other: pycrdt.Doc[pycrdt.Text] = pycrdt.Doc()
    seen: list[list[dict[str, object]]] = []
    other_text = other.get("t", type=pycrdt.Text)  # kept: its subscriptions live with it
    other_text.observe(lambda event: seen.append(event.delta))
    other.apply_update(doc.get_update())
    state = other.get_state()
    del text[1:3]  # é
    other.apply_update(doc.get_update(state))
    assert seen[-1] == [{"retain": 1}, {"delete": 2}]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["ins", "del", "remote"]), st.integers(0, 10**6),
                          st.integers(1, 12), st.lists(st.sampled_from(PIECES), min_size=1, max_size=4)),
                max_size=40))
def test_index_alone_matches_a_plain_string(steps: list[tuple[str, int, int, list[str]]]) -> None:
    index = TextIndex("", max_chunk=4)  # tiny chunks: splits and merges happen all the time
    model = ""
    for op, where, size, pieces in steps:
        s = "".join(pieces)
        if op == "ins":
            i = where % (len(model) + 1)
            index.insert(i, s)
            model = model[:i] + s + model[i:]
        elif op == "del" and model:
            i = where % len(model)
            n = min(size, len(model) - i)
            index.delete(i, n)
            model = model[:i] + model[i + n :]
        elif op == "remote":  # the same edit as a Yrs delta in bytes
            i = where % (len(model) + 1)
            n = min(size, len(model) - i)
            b = len(model[:i].encode())
            index.apply_delta([{"retain": b}, {"delete": len(model[i : i + n].encode())}, {"insert": s}])
            model = model[:i] + s + model[i + n :]
        check_index(index, model)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10**6), st.sampled_from(PIECES)), max_size=60),
       st.integers(2, 6))
def test_one_descent_finds_what_the_two_trees_say(steps: list[tuple[bool, int, str]], chunk: int) -> None:
    """``_locate`` walks both trees at once; it must agree with a find in one and a prefix sum
    in the other at every position, including the end and chunk boundaries, emptied chunks too."""
    index = TextIndex("", max_chunk=chunk)
    model = ""
    for insert, where, s in steps:
        if insert or not model:
            i = where % (len(model) + 1)
            index.insert(i, s)
            model = model[:i] + s + model[i:]
        else:
            i = where % len(model)
            n = min(len(s), len(model) - i)
            index.delete(i, n)
            model = model[:i] + model[i + n :]
        for position in range(len(model) + 1):
            i, before = index._chars.find(position)
            assert index._locate(position) == (i, before, index._bytes.prefix(i))
    check_index(index, model)


def test_index_refuses_what_it_cannot_follow() -> None:
    index = TextIndex("é中")
    with pytest.raises(ValueError, match="inside a character"):
        index.index(1)
    with pytest.raises(ValueError, match="outside"):
        index.index(6)
    with pytest.raises(ValueError, match="embed"):
        index.apply_delta([{"insert": {"image": "x"}}])


def tracked(text: SharedText) -> None:
    """The text's own index (when it has one) agrees with Yrs, as kept, before any rebuild."""
    current = str(text._ytext)
    if text._index is not None:
        check_index(text._index, current)
    elif text._ascii:
        assert current.isascii()


EDIT = st.tuples(st.sampled_from(["a-ins", "a-del", "a-fmt", "b-ins", "b-del", "to-a", "to-b"]),
                 st.integers(0, 10**6), st.integers(1, 6), st.lists(st.sampled_from(PIECES), min_size=1, max_size=3))


def local_edit(text: SharedText, model: str, op: str, where: int, size: int, s: str) -> str:
    if op.endswith("ins"):
        i = where % (len(model) + 1)
        text.insert(i, s, {"bold": True} if where % 3 == 0 else None)
        return model[:i] + s + model[i:]
    if not model:
        return model
    i = where % len(model)
    n = min(size, len(model) - i)
    if op.endswith("del"):
        text.delete(i, n)
        return model[:i] + model[i + n :]
    text.format(i, n, {"em": True if where % 2 else None})
    return model


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EDIT, max_size=40), st.booleans())
def test_shared_text_matches_a_plain_string_under_remote_updates(
    steps: list[tuple[str, int, int, list[str]]], small_chunks: bool
) -> None:
    old = text_index.MAX_CHUNK
    text_index.MAX_CHUNK = 4 if small_chunks else old
    try:
        a, b = Peer("a"), Peer("b")
        ta, tb = a.text(), b.text()
        models = {"a": "", "b": ""}
        sent = {"a": 0, "b": 0}
        for op, where, size, pieces in steps:
            if op.startswith("to-"):  # deliver everything the other peer sent so far
                receiver, sender = (a, b) if op == "to-a" else (b, a)
                for update in sender.sent[sent[sender.member] :]:
                    receiver.document.apply_remote(update, sender.member)
                sent[sender.member] = len(sender.sent)
                models[receiver.member] = str(receiver.text())  # what the CRDT merged
            else:
                peer, text = (a, ta) if op[0] == "a" else (b, tb)
                models[peer.member] = local_edit(text, models[peer.member], op[2:], where, size, "".join(pieces))
            for peer, text in ((a, ta), (b, tb)):
                assert str(text) == models[peer.member] and len(text) == len(models[peer.member])
                tracked(text)
        for update in b.sent[sent["b"] :]:
            a.document.apply_remote(update, "b")
        for update in a.sent[sent["a"] :]:
            b.document.apply_remote(update, "a")
        assert str(ta) == str(tb)
        assert ta.to_delta() == tb.to_delta()
        tracked(ta)
        tracked(tb)
    finally:
        text_index.MAX_CHUNK = old


def test_a_remote_non_ascii_edit_ends_the_ascii_shortcut() -> None:
    """An ASCII text takes offsets as they are; a remote update bringing one emoji must switch
    it to converted positions, or the next local edit lands inside a character."""
    a, b = Peer("a"), Peer("b")
    ta, tb = a.text(), b.text()
    ta.insert(0, "hello")
    b.document.apply_remote(a.sent[-1], "a")
    assert tb._positions() is None  # ASCII: tracked without an index
    ta.insert(0, "😀")
    b.document.apply_remote(a.sent[-1], "a")
    tb.insert(2, "X")
    tb.delete(3, 1)
    assert str(tb) == "😀hXllo"
    tracked(tb)


def test_typing_does_not_read_the_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per keystroke, no O(document) read: once the index exists, str() of the Yrs text is never taken."""
    peer, other = Peer("a"), Peer("b")
    text = peer.text()
    text.insert(0, "é中😀" * 2000)
    other_text = other.text()
    other_text.insert(0, "x")
    text.insert(5, "y")  # builds the index (if not yet)
    reads = 0
    original = pycrdt.Text.__str__

    def counting(self: pycrdt.Text) -> str:
        nonlocal reads
        reads += 1
        return original(self)

    monkeypatch.setattr(pycrdt.Text, "__str__", counting)
    rng = random.Random(7)
    for _ in range(200):
        n = len(text)
        if rng.random() < 0.3:
            i = rng.randrange(n)
            text.delete(i, 1)
        elif rng.random() < 0.1:
            text.format(rng.randrange(n - 2), 2, {"bold": True})
        else:
            text.insert(rng.randrange(n + 1), rng.choice(PIECES))
    peer.document.apply_remote(other.sent[-1], "b")  # a remote update is followed, not re-read
    text.insert(len(text), "z")
    assert reads == 0
    monkeypatch.undo()
    tracked(text)


def test_a_remote_embed_makes_a_tracked_text_work_its_positions_out_again() -> None:
    """SharedText never writes embeds, but a peer's update may hold one; the delta that reaches
    the position tracking then carries a non-string insert (a raw Yrs value since the text
    follows remote updates through Yrs' own observer), which must end the tracking, not
    shift every later position."""
    a, b = Peer("a"), Peer("b")
    ta, tb = a.text(), b.text()
    ta.insert(0, "hé llo")
    for update in a.sent:
        b.document.apply_remote(update, "a")
    tb.insert(0, "x")  # b now tracks positions with an index (non-ASCII)
    assert tb._index is not None
    hostile: pycrdt.Doc[object] = pycrdt.Doc()
    for update in a.sent + b.sent:
        hostile.apply_update(update)
    before = hostile.get_state()
    hostile.get("text:t", type=pycrdt.Text).insert_embed(2, {"image": "x"})
    b.document.apply_remote(hostile.get_update(before), "a")
    assert tb._index is None and not tb._ascii
    assert tb.to_delta() == [{"insert": "xh"}, {"insert": {"image": "x"}}, {"insert": "é llo"}]
