"""Text positions stay exact Python characters whatever Yrs counts (UTF-8 bytes in pycrdt 0.14).

The indexes that convert them (``TextIndex``, ``SparseIndex`` for a text with few non-ASCII
characters) are checked against a plain Python string, alone and inside ``SharedText`` with two
peers exchanging updates: after every step the text equals the model and every character index
maps to the right Yrs offset.
"""

from __future__ import annotations

import random
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_net import Net, Peer

from encspaces.shared import sparse_index, text_index
from encspaces.shared import text as shared_text
from encspaces.shared.changes import TextChange
from encspaces.shared.sparse_index import SparseIndex
from encspaces.shared.text import SharedText, read_positions
from encspaces.shared.text_index import EMBED, Positions, TextIndex, positions_text

PIECES = ["a", "xyz", "é", "ñö", "中", "文字", "😀", "👩‍💻", "a😀é中", "\n"]



class WholeTextReads:
    """Counts the reads of a whole Yrs text (``str()``, and ``diff()`` with ``runs``) from
    ``install`` on: typing must not take one per keystroke."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._monkeypatch = monkeypatch

    def install(self, *, runs: bool = False) -> WholeTextReads:
        for name in ("__str__", "diff") if runs else ("__str__",):
            original = getattr(pycrdt.Text, name)

            def counting(text: pycrdt.Text, original: Any = original) -> Any:
                self.count += 1
                return original(text)

            self._monkeypatch.setattr(pycrdt.Text, name, counting)
        return self


def check_index(index: Positions, model: str, shuffle: int | None = None) -> None:
    """Every position of ``model`` converts both ways, in order or (``shuffle``: a seed) in a
    random order; an offset inside a character is refused."""
    if isinstance(index, TextIndex):
        assert str(index) == model  # (a SparseIndex holds no text)
    assert index.chars == len(model) and index.utf8 == len(model.encode())
    offsets = [0]
    for ch in model:
        offsets.append(offsets[-1] + len(ch.encode()))
    order = list(range(len(model) + 1))
    if shuffle is not None:
        random.Random(shuffle).shuffle(order)
    for i in order:
        assert index.offset(i) == offsets[i]
        assert index.index(offsets[i]) == i
        if i < len(model) and offsets[i + 1] - offsets[i] > 1:
            with pytest.raises(ValueError, match="inside a character"):
                index.index(offsets[i] + 1)


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


def new_index(kind: str, text: str = "") -> Positions:
    """An index of ``text``: a TextIndex (with tiny chunks, so splits happen all the time) or a SparseIndex."""
    return TextIndex(text, max_chunk=4) if kind == "chunked" else SparseIndex(text)


KINDS = ["chunked", "sparse"]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["ins", "del", "remote", "embed"]), st.integers(0, 10**6),
                          st.integers(1, 12), st.lists(st.sampled_from(PIECES), min_size=1, max_size=4)),
                max_size=40))
def test_index_alone_matches_a_plain_string(kind: str, steps: list[tuple[str, int, int, list[str]]]) -> None:
    """Edits at random places (a SparseIndex moves its gap back and forth), Yrs deltas, embeds;
    every position is checked after every step, in a random order (each conversion moves a
    SparseIndex's gap, so the order must not matter)."""
    index = new_index(kind)
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
        elif op == "embed":  # a peer's embed: a non-string insert (or an empty string one), one position
            i = where % (len(model) + 1)
            index.apply_delta([{"retain": len(model[:i].encode())}, {"insert": EMBEDS[where % 3]}])
            model = model[:i] + EMBED + model[i:]
        check_index(index, model, shuffle=where)


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


@pytest.mark.parametrize("kind", KINDS)
def test_index_refuses_what_it_cannot_follow(kind: str) -> None:
    index = new_index(kind, "é中")
    with pytest.raises(ValueError, match="inside a character"):
        index.index(1)
    with pytest.raises(ValueError, match="outside"):
        index.index(6)
    with pytest.raises(ValueError, match="past the end"):
        index.apply_delta([{"retain": 6}, {"retain": 1}])
    with pytest.raises(IndexError, match="past the end"):
        index.delete(1, 2)


@pytest.mark.parametrize("kind", KINDS)
def test_index_follows_an_embed_as_one_character_of_one_byte(kind: str) -> None:
    index = new_index(kind, "é中")
    index.apply_delta([{"retain": 2}, {"insert": {"image": "x"}}])
    check_index(index, "é" + EMBED + "中")
    assert index.offset(2) == 3 and index.index(3) == 2
    index.apply_delta([{"retain": 2}, {"delete": 1}])
    check_index(index, "é中")


def tracked(text: SharedText, model: str | None = None) -> None:
    """The text's own index (when it has one) agrees with ``model`` (the text as positions count
    it, one ``EMBED`` per embed; by default read from the document), as kept, before any rebuild."""
    current = read_positions(text._ytext) if model is None else model
    if text._index is not None:
        check_index(text._index, current)
    elif text._ascii:
        assert current.isascii()


# What a peer embeds: a map, a number, and strings (Yrs reports a string embed like text; an
# empty one; one no run of text can spell, so a model can tell it from text in ``to_delta()``).
EMBEDS: list[object] = [{"image": "x"}, 7, "", "é!"]
EDIT = st.tuples(st.sampled_from(["a-ins", "a-del", "a-fmt", "a-emb", "a-dir", "a-mix", "b-ins", "b-del", "b-emb",
                                  "b-dir", "b-mix", "to-a", "to-b"]),
                 st.integers(0, 10**6), st.integers(1, 6), st.lists(st.sampled_from(PIECES), min_size=1, max_size=3))


def model_of(text: SharedText) -> str:
    """The text as positions count it, from ``to_delta()`` alone (not the code under test)."""
    return "".join(EMBED if not isinstance(run["insert"], str) or run["insert"] in ("", "é!") else run["insert"]
                   for run in text.to_delta())


def direct_edit(peer: Peer, model: str, where: int, size: int, s: str) -> str:
    """An edit beside SharedText, through the handed-out pycrdt document (``Space.doc``), in a
    local transaction: an insert, a delete, a replacement (both in one transaction), or one of the
    first two in a transaction that also edits the text ``u`` and a map. Returns the new model;
    ``u``'s model is read back by the caller."""
    doc = peer.document.hand_out()
    ytext = doc.get("text:t", type=pycrdt.Text)
    i = where % (len(model) + 1)
    n = min(size, len(model) - i)
    start, end = len(model[:i].encode()), len(model[: i + n].encode())
    kind = where % 5
    with doc.transaction():
        if kind in (1, 2, 4) and n:
            del ytext[start:end]
            model = model[:i] + model[i + n :]
        if kind in (0, 2, 3):
            ytext.insert(start, s)
            model = model[:i] + s + model[i:]
        if kind >= 3:
            other = doc.get("text:u", type=pycrdt.Text)
            other.insert(0, s[::-1])
            doc.get("map:m", type=pycrdt.Map)["k"] = where
    return model


def direct_swap(peer: Peer, model: str, where: int) -> str:
    """Through the pycrdt document, the change an index's length check cannot see: characters
    replaced by as many UTF-8 bytes in another number of characters (a two-byte character by
    two ASCII ones, or the reverse); in an ASCII text (or one with no such spot) an "é" inserted."""
    ytext = peer.document.hand_out().get("text:t", type=pycrdt.Text)
    spots = [i for i, ch in enumerate(model) if len(ch.encode()) == 2]
    spots += [i for i in range(len(model) - 1) if (model[i] + model[i + 1]).isascii() and EMBED not in model[i : i + 2]]
    if not spots:
        i, old, new = where % (len(model) + 1), "", "é"
    else:
        i = spots[where % len(spots)]
        old = model[i] if len(model[i].encode()) == 2 else model[i : i + 2]
        new = "ab" if len(old) == 1 else "é"
    start = len(model[:i].encode())
    with ytext.doc.transaction():
        if old:
            del ytext[start : start + len(old.encode())]
        ytext.insert(start, new)
    return model[:i] + new + model[i + len(old) :]


def local_edit(text: SharedText, model: str, op: str, where: int, size: int, s: str) -> str:
    if op.endswith("ins"):
        i = where % (len(model) + 1)
        text.insert(i, s, {"bold": True} if where % 3 == 0 else None)
        return model[:i] + s + model[i:]
    if op.endswith("emb"):  # as an integration would, through the pycrdt document (Space.doc)
        i = where % (len(model) + 1)
        ytext = text._ytext.doc.get("text:t", type=pycrdt.Text)
        ytext.insert_embed(len(model[:i].encode()), EMBEDS[where % len(EMBEDS)])
        return model[:i] + EMBED + model[i:]
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
    steps: list[tuple[str, int, int, list[str]]], small: bool
) -> None:
    """Both peers edit, embed (an embed arrives at the other as a remote change), edit beside
    SharedText through the pycrdt document (local transactions, some also editing another text
    and a map), and exchange updates; after every step each text's positions agree with a
    model built from its runs. The texts hold few non-ASCII characters, so SparseIndex follows
    them as set; ``small``: with a sparse limit of 2 a TextIndex (of tiny chunks) does, and it
    replaces a SparseIndex grown crowded mid-way."""
    old, old_sparse, old_block = text_index.MAX_CHUNK, sparse_index.SPARSE_MAX, shared_text.PASTE_BLOCK
    text_index.MAX_CHUNK = 4 if small else old
    sparse_index.SPARSE_MAX = 2 if small else old_sparse
    shared_text.PASTE_BLOCK = 3 if small else old_block  # (small: most inserts go in as several blocks)
    try:
        a, b = Peer("a"), Peer("b")
        ta, tb = a.text(), b.text()
        ua, ub = a.text("u"), b.text("u")  # edited beside ``t`` in one pycrdt transaction (a-dir)
        ua.insert(0, "u")
        ub.insert(0, "u")
        models = {"a": "", "b": ""}
        sent = {"a": 0, "b": 0}
        for op, where, size, pieces in steps:
            if op.startswith("to-"):  # deliver everything the other peer sent so far
                receiver, sender = (a, b) if op == "to-a" else (b, a)
                for update in sender.sent[sent[sender.member] :]:
                    receiver.document.apply_remote(update, sender.member)
                sent[sender.member] = len(sender.sent)
                models[receiver.member] = model_of(receiver.text())  # what the CRDT merged
            elif op.endswith("mix"):  # one transaction: SharedText edits, then pycrdt ones after them
                peer, text = (a, ta) if op[0] == "a" else (b, tb)
                with peer.document.transaction():
                    own = ("ins", "del")[where % 2]
                    model = local_edit(text, models[peer.member], own, where, size, "".join(pieces))
                    if where % 3 == 0:
                        model = local_edit(text, model, "ins", where // 3, size, "ü")
                    if where % 4 < 2:
                        models[peer.member] = direct_swap(peer, model, where // 4)
                    else:
                        models[peer.member] = direct_edit(peer, model, where // 4, size, "".join(pieces)[::-1])
            elif op.endswith("dir"):  # beside SharedText, then one SharedText edit in each text
                peer, text, u = (a, ta, ua) if op[0] == "a" else (b, tb, ub)
                if size % 3 == 0:
                    model = direct_swap(peer, models[peer.member], where)
                else:
                    model = direct_edit(peer, models[peer.member], where, size, "".join(pieces))
                model_u = model_of(u)
                u.insert(len(model_u) // 2, "|")
                assert model_of(u) == model_u[: len(model_u) // 2] + "|" + model_u[len(model_u) // 2 :]
                tracked(u, model_of(u))
                models[peer.member] = local_edit(text, model, "ins", where // 5, size, "ö")
            else:
                peer, text = (a, ta) if op[0] == "a" else (b, tb)
                models[peer.member] = local_edit(text, models[peer.member], op[2:], where, size, "".join(pieces))
            for peer, text in ((a, ta), (b, tb)):
                model = models[peer.member]
                assert model_of(text) == model
                assert str(text) == model.replace(EMBED, "") and len(text) == len(model)
                tracked(text, model)
        for update in b.sent[sent["b"] :]:
            a.document.apply_remote(update, "b")
        for update in a.sent[sent["a"] :]:
            b.document.apply_remote(update, "a")
        assert str(ta) == str(tb)
        assert ta.to_delta() == tb.to_delta()
        assert len(ta) == len(tb) == len(model_of(ta))
        tracked(ta, model_of(ta))
        tracked(tb, model_of(tb))
    finally:
        text_index.MAX_CHUNK, sparse_index.SPARSE_MAX, shared_text.PASTE_BLOCK = old, old_sparse, old_block


def test_paste_blocks_cut_a_text_into_blocks_inserted_last_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block inserted at one offset, in the order given, rebuilds the text (the benchmarks
    paste bare pycrdt through it)."""
    monkeypatch.setattr(shared_text, "PASTE_BLOCK", 4)
    assert shared_text.paste_blocks("abcdefghij") == ["ij", "efgh", "abcd"]
    assert shared_text.paste_blocks("abcd") == ["abcd"] and shared_text.paste_blocks("") == []
    text = "un café, 中文字 and 😀 over several blocks"
    rebuilt = ""
    for block in shared_text.paste_blocks(text):
        assert 0 < len(block) <= 4
        rebuilt = block + rebuilt
    assert rebuilt == text


@pytest.mark.parametrize("pasted", ["plain ascii text that runs over several blocks",
                                    "un café, 中文字 and 😀👩‍💻 over several blocks"])
def test_a_long_insert_goes_in_as_blocks_and_reads_as_one(monkeypatch: pytest.MonkeyPatch, pasted: str) -> None:
    """A paste longer than PASTE_BLOCK is one Yrs item per block (later edits inside it cut and
    read a block, not the whole paste) and otherwise the insert it was: the same text, the
    formatting of where it lands, one update, what a peer merges."""
    monkeypatch.setattr(shared_text, "PASTE_BLOCK", 5)
    a, b = Peer("a"), Peer("b")
    ta = a.text()
    ta.insert(0, "bold", {"bold": True})
    ta.insert(4, " plain é")
    for update in a.sent:
        b.document.apply_remote(update, "a")
    before = len(a.sent)
    ta.insert(4, pasted)  # after the bold run: takes its formatting, as one insert would
    ta.insert(2, pasted)  # inside it
    assert len(a.sent) == before + 2
    bare = pycrdt.Doc()
    yt = bare.get("text:t", type=pycrdt.Text)
    yt.insert(0, "bold", {"bold": True})
    yt.insert(4, " plain é")
    yt.insert(4, pasted)
    yt.insert(2, pasted)
    assert str(ta) == str(yt) == "bo" + pasted + "ld" + pasted + " plain é"
    assert ta.to_delta() == [{"insert": run, **({"attributes": attrs} if attrs else {})} for run, attrs in yt.diff()]
    tracked(ta, model_of(ta))
    for update in a.sent[before:]:
        b.document.apply_remote(update, "a")
    tb = b.text()
    assert str(tb) == str(ta) and tb.to_delta() == ta.to_delta()
    tracked(tb, model_of(tb))
    # One item per block: each adds its id and its neighbours' to the update.
    one = pycrdt.Doc()
    one_text = one.get("text:t", type=pycrdt.Text)
    sizes: list[int] = []
    one.observe(lambda event: sizes.append(len(event.update)))
    one_text.insert(0, pasted)
    c = Peer("c")
    c.text().insert(0, pasted)
    blocks = -(-len(pasted) // 5)
    assert len(c.sent[-1]) >= sizes[-1] + 4 * (blocks - 1)


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
    reads = WholeTextReads(monkeypatch).install()
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
    assert reads.count == 0
    monkeypatch.undo()
    tracked(text)


def test_a_text_with_few_non_ascii_characters_keeps_only_those(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code or prose with a few non-ASCII characters gets a SparseIndex, kept through typing
    anywhere in the text (never rebuilt, the text never read again); once it holds more than
    ``SPARSE_MAX`` of them a TextIndex replaces it, and stays."""
    peer = Peer("a")
    text = peer.text()
    text.insert(0, 'print("héllo → wörld")\n' * 3)
    text.insert(0, "#")
    index = text._index
    assert isinstance(index, SparseIndex) and len(index) == 9
    reads = WholeTextReads(monkeypatch).install()
    rng = random.Random(5)
    for step in range(300):
        n = len(text)
        if rng.random() < 0.3:
            text.delete(rng.randrange(n), 1)
        else:
            text.insert(rng.randrange(n + 1), "ü" if step % 20 == 0 else "ab")
    assert reads.count == 0 and text._index is index
    monkeypatch.undo()
    tracked(text)
    monkeypatch.setattr(sparse_index, "SPARSE_MAX", len(index) + 2)
    text.insert(len(text) // 2, "中文字")
    assert index.crowded
    text.insert(0, ">")
    assert isinstance(text._index, TextIndex)
    tracked(text)
    chunked = text._index
    text.delete(0, len(text))  # (fewer again: the TextIndex stays)
    text.insert(0, "é")
    assert text._index is chunked
    tracked(text)


def test_a_remote_embed_is_followed_not_rebuilt() -> None:
    """A peer's update may hold an embed; the delta that reaches the position tracking then
    carries a non-string insert (a raw Yrs value, since the text follows remote updates through
    Yrs' own observer), which the index follows as one position: no rebuild from the text."""
    a, b = Peer("a"), Peer("b")
    ta, tb = a.text(), b.text()
    ta.insert(0, "hé llo")
    for update in a.sent:
        b.document.apply_remote(update, "a")
    tb.insert(0, "x")  # b now tracks positions with an index (non-ASCII)
    index = tb._index
    assert index is not None
    other: pycrdt.Doc[object] = pycrdt.Doc()
    for update in a.sent + b.sent:
        other.apply_update(update)
    before = other.get_state()
    other.get("text:t", type=pycrdt.Text).insert_embed(2, {"image": "x"})
    b.document.apply_remote(other.get_update(before), "a")
    assert tb._index is index
    check_index(index, "xh" + EMBED + "é llo")
    assert tb.to_delta() == [{"insert": "xh"}, {"insert": {"image": "x"}}, {"insert": "é llo"}]
    tb.insert(len(tb), "!")
    assert tb._index is index and str(tb) == "xhé llo!"


# --- embeds ----------------------------------------------------------------------------------------
# SharedText writes no embeds, but an integration may (``Space.doc``, pycrdt's ``insert_embed``) and
# its update reaches every device. An embed counts as one position, as in Yjs and as Yrs counts it.

IMAGE = {"image": "cat.png"}


def embed(peer: Peer, position_text: str, at: int, value: object = IMAGE) -> None:
    """``peer`` inserts an embed at API position ``at`` through its pycrdt document (the SDK's
    ``Space.doc``); ``position_text`` is its text with one 1-byte stand-in per embed so far."""
    offset = len(position_text[:at].encode())
    peer.document.hand_out().get("text:t", type=pycrdt.Text).insert_embed(offset, value)


@pytest.mark.parametrize("words", ["hello world", "héllo wörld"])
@pytest.mark.parametrize("opened", ["before", "after"])
def test_local_edits_after_a_peers_embed_land_where_asked(words: str, opened: str) -> None:
    """The defect: positions were rebuilt from ``str()``, which leaves the embed out, so an edit
    past the embed landed one character early (and ``len`` missed it). With the text opened
    before the embed arrives it is followed as a remote change; opened after, it is read from
    the document, as on reopening from the store or starting from a snapshot."""
    net = Net("a", "b")
    a, b = net.peers
    ta = a.text()
    ta.insert(0, words)
    net.settle()
    tb = b.text() if opened == "before" else None
    if tb is not None:
        tb.insert(0, "> ")  # b edits: it tracks positions (an index when the text is not ASCII)
        net.settle()
        embed(a, "> " + words, 7)  # after "> hello"
    else:
        ta.insert(0, "> ")
        embed(a, "> " + words, 7)
    net.settle()
    tb = tb or b.text()
    head, tail = "> " + words[:5], words[5:]  # the embed sits between them, at position 7
    assert len(ta) == len(tb) == len(head) + 1 + len(tail)
    assert str(tb) == head + tail  # str() is the characters alone
    tb.insert(len(tb), "!")  # at the very end
    tb.insert(8, "|")  # just after the embed
    tb.format(9, len(tail), {"bold": True})  # exactly the words after it
    tb.delete(2, 1)  # before it
    expected = [{"insert": head[:2] + head[3:]}, {"insert": IMAGE}, {"insert": "|"},
                {"insert": tail, "attributes": {"bold": True}}, {"insert": "!"}]
    assert tb.to_delta() == expected
    net.settle()
    assert ta.to_delta() == expected
    ta.delete(6, 1)  # the embed itself, by its position
    net.settle()
    assert tb.to_delta() == [{"insert": head[:2] + head[3:] + "|"},
                             {"insert": tail, "attributes": {"bold": True}}, {"insert": "!"}]
    assert len(tb) == len(str(tb))


def test_changes_count_a_peers_embed_as_one_position() -> None:
    """A change stream's deltas count in API positions too: Yrs' byte counts are recounted
    against the text as it was, which must hold the embed (one byte, one position), or a
    delete after it is reported over the wrong characters."""
    net = Net("a", "b")
    a, b = net.peers
    ta = a.text()
    ta.insert(0, "a中b中")
    net.settle()
    changes = b.document.changes()
    embed(a, "a中b中", 1)  # a [embed] 中 b 中
    ta.delete(2, 1)  # the first 中
    ta.insert(3, "Z")  # a [embed] b | Z 中
    net.settle()
    deltas = []
    while (change := changes.get_nowait()) is not None:
        assert isinstance(change, TextChange)
        deltas.append(change.delta)
    assert deltas == [[{"retain": 1}, {"insert": IMAGE}], [{"retain": 2}, {"delete": 1}],
                      [{"retain": 3}, {"insert": "Z"}]]
    assert str(b.text()) == "abZ中" and len(b.text()) == 5


def test_typing_after_a_peers_embed_does_not_read_the_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Following the embed keeps typing O(log n): before, every edit found the index out of step
    with Yrs (the embed missing from it) and rebuilt it from the whole text."""
    net = Net("a", "b")
    a, b = net.peers
    a.text().insert(0, "é中😀" * 500)
    net.settle()
    tb = b.text()
    tb.insert(0, "x")  # b tracks positions with an index
    net.settle()
    embed(a, "x" + "é中😀" * 500, 100)
    net.settle()
    tb.insert(len(tb), "y")  # the first edit after the embed may work positions out once
    reads = WholeTextReads(monkeypatch).install(runs=True)
    for i in range(50):
        tb.insert(150 + i, "z")
        tb.delete(len(tb) - 1, 1)
    monkeypatch.undo()
    assert reads.count == 0
    expected = "x" + "é中😀" * 500
    assert tb.to_delta() == [{"insert": expected[:100]}, {"insert": IMAGE},
                             {"insert": expected[100:149] + "z" * 50 + expected[149:-49]}]  # "y" went first


def test_string_embeds_are_told_from_text_by_aligning_the_runs_with_the_characters() -> None:
    """Yrs reports a string embed in ``diff()`` like text; ``str()`` leaves it out, so reading
    the runs against it finds which runs are embeds, even where one spells the text after it."""
    text = "héllo"
    assert positions_text([("hé", None), (text, None)], text, 1 + len(text.encode())) == EMBED + text
    assert positions_text([("hé", None), ("", None), (7, None), (text, None)], text, 3 + len(text.encode())) \
        == EMBED * 3 + text
    assert positions_text([("h", None), ("é!", None), ("éllo", None)], text, 1 + len(text.encode())) \
        == "h" + EMBED + "éllo"
    with pytest.raises(ValueError, match="do not spell"):
        positions_text([("x", None), ("éllo", None)], text, 99)


@pytest.mark.parametrize("value", ["hé", "", "é!"])
@pytest.mark.parametrize("opened", ["before", "after"])
def test_a_peers_string_embed_is_one_position(value: str, opened: str) -> None:
    """A string embed (a Yrs client's ``insert_embed(i, "...")``) is one position like any embed,
    whether the text follows it as it arrives or reads it when opened."""
    net = Net("a", "b")
    a, b = net.peers
    a.text().insert(0, "héllo")
    net.settle()
    tb = b.text() if opened == "before" else None
    if tb is not None:
        tb.insert(len(tb), "!")  # b tracks positions with an index
        net.settle()
    embed(a, "héllo!" if tb is not None else "héllo", 0, value)
    net.settle()
    tb = tb or b.text()
    tail = "héllo!" if opened == "before" else "héllo"
    assert len(tb) == 1 + len(tail) and str(tb) == tail
    tb.insert(len(tb), "?")
    tb.insert(1, "|")  # just after the embed
    tb.delete(3, 1)  # é
    net.settle()
    assert str(a.text()) == str(tb) == "|hllo" + tail[5:] + "?"
    assert a.text().to_delta() == tb.to_delta()
    tb.delete(0, 1)  # the embed
    net.settle()
    assert a.text().to_delta() == tb.to_delta() == [{"insert": "|hllo" + tail[5:] + "?"}]


# --- local edits beside SharedText, through the pycrdt document -----------------------------------
# An integration holding ``Space.doc`` (``Document.hand_out``) may edit a text through pycrdt in a
# local transaction. Yrs tells the text's observers of local transactions as of remote ones, but
# SharedText only listened around remote updates: such an edit went unnoticed.


def direct(peer: Peer, name: str = "t") -> pycrdt.Text:
    """The text ``name`` as an integration holds it, through the handed-out pycrdt document."""
    return peer.document.hand_out().get(f"text:{name}", type=pycrdt.Text)


@pytest.mark.parametrize("handed_out", ["before", "after"])
def test_a_local_non_ascii_insert_through_pycrdt_ends_the_ascii_shortcut(handed_out: str) -> None:
    """On the ASCII shortcut Yrs offsets are taken as positions; one "é" put in through pycrdt
    made them differ by one byte, unnoticed: the next edit landed a character early (before:
    'éhXello'), or split the "é" and made Yrs panic. The text was tracked (edited) before the
    integration took the document, or after."""
    peer = Peer("a")
    if handed_out == "before":
        direct(peer)
    text = peer.text()
    text.insert(0, "hello")
    assert text._positions() is None  # ASCII: the shortcut
    direct(peer).insert(0, "é")
    text.insert(3, "X")
    assert str(text) == "éheXllo"
    text.delete(1, 1)
    assert str(text) == "éeXllo"
    tracked(text)


def test_a_local_change_keeping_the_utf8_length_is_followed() -> None:
    """With an index, the only check was Yrs' length against the index's: "é" (two bytes)
    replaced by "ab" through pycrdt kept it, and the next edit landed one character late
    (before: 'habllXo!')."""
    peer = Peer("a")
    text = peer.text()
    text.insert(0, "héllo")
    text.insert(5, "!")
    index = text._index
    assert index is not None
    ytext = direct(peer)
    with ytext.doc.transaction():
        del ytext[1:3]  # "é", in UTF-8 bytes
        ytext.insert(1, "ab")
    text.insert(4, "X")
    assert str(text) == "hablXlo!"
    assert text._index is index  # followed from the delta, not rebuilt from the text
    tracked(text)


def test_one_local_transaction_over_several_roots_reaches_each_text() -> None:
    """A transaction through pycrdt that edits two texts and a map: each text hears of its own change."""
    peer = Peer("a")
    t, u = peer.text("t"), peer.text("u")
    t.insert(0, "plain")
    u.insert(0, "wörds")
    u.insert(0, ">")
    doc = peer.document.hand_out()
    yt, yu = doc.get("text:t", type=pycrdt.Text), doc.get("text:u", type=pycrdt.Text)
    with doc.transaction():
        yt.insert(2, "中")
        del yu[2:4]  # "ö"
        yu.insert(2, "oe")
        doc.get("map:m", type=pycrdt.Map)["k"] = 1
    t.insert(4, "|")
    u.insert(4, "|")
    assert (str(t), str(u)) == ("pl中a|in", ">woe|rds")
    tracked(t)
    tracked(u)


def test_a_text_opened_after_the_hand_out_follows_local_edits() -> None:
    peer = Peer("a")
    ytext = direct(peer)
    text = peer.text()
    text.insert(0, "abc")
    ytext.insert(1, "😀")
    text.insert(3, "X")
    assert str(text) == "a😀bXc"
    tracked(text)


def test_edits_in_a_transaction_shared_with_pycrdt_edits() -> None:
    """SharedText's own edits inside an open transaction reach its observer at the commit, with
    whatever else changed the text in it. Its one edit alone keeps the index as it is; a
    pycrdt edit after it in the same transaction makes it work the positions out again."""
    peer = Peer("a")
    text = peer.text()
    text.insert(0, "héllo")
    text.insert(0, ">")
    index = text._index
    ytext = direct(peer)
    with peer.document.transaction():
        text.insert(3, "1")
    assert text._index is index and str(text) == ">hé1llo"
    with peer.document.transaction():
        text.insert(0, "2")
        del ytext[3:5]  # "é" -> "ab": the same UTF-8 length, which the index's check misses
        ytext.insert(3, "ab")
    text.insert(5, "3")
    assert str(text) == "2>hab31llo"
    tracked(text)


def test_typing_beside_a_handed_out_document_reads_no_whole_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Watching local changes costs SharedText's own edits no read of the text or of a delta
    (the index is kept, never rebuilt), and a direct edit is followed from its delta."""
    peer = Peer("a")
    text = peer.text()
    text.insert(0, "é中😀" * 2000)
    ytext = direct(peer)
    text.insert(5, "y")  # builds the index
    index = text._index
    reads = WholeTextReads(monkeypatch).install()
    rng = random.Random(3)
    for step in range(200):
        n = len(text)
        if step % 50 == 49:
            ytext.insert(0, "ö")  # beside SharedText: followed, not re-read
        elif rng.random() < 0.3:
            text.delete(rng.randrange(n), 1)
        else:
            text.insert(rng.randrange(n + 1), rng.choice(PIECES))
    assert reads.count == 0 and text._index is index
    monkeypatch.undo()
    tracked(text)


def test_a_hand_out_inside_an_open_transaction_counts_no_edit_twice() -> None:
    """Edits SharedText made in a transaction before the document was handed out in it were not
    noted as its own: at the commit they would be followed a second time."""
    peer = Peer("a")
    text = peer.text()
    text.insert(0, "héllo")
    text.insert(0, ">")
    with peer.document.transaction():
        text.delete(2, 1)  # "é", two bytes
        text.insert(4, "ö")  # two bytes: counted twice the index would keep Yrs' length
        direct(peer)
    text.insert(4, "|")
    assert str(text) == ">hll|öo"
    tracked(text)
