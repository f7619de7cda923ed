"""A collaborative rich text: characters with optional formatting attributes.

Formatting follows Yjs (and Quill): attributes are key/value marks on ranges of characters,
a None value removes a mark, and concurrent formatting of overlapping ranges merges per
attribute. Edits apply locally at once and reach others once verified.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import pycrdt

from ..errors import ArgumentTypeError, IndexOutOfRangeError
from .changes import Change, TextChange
from .feed import ChangeFeed, ChangeStream
from .gate import DELETE_BYTES, ITEM_BYTES, Gate, value_size
from .sparse_index import sparse
from .text_index import Positions, TextIndex, positions_text
from .values import check_plain, check_str, to_plain, utf8_len

# Characters per Yrs block of a long insert without attributes (a paste, a loaded file). Yrs keeps
# one insert as one block, and every later edit inside a block cuts it and reads it up to the
# offset: the first keystrokes into a pasted megabyte cost 116-162 µs each, against 8-12 in
# 10 KB (bench/README.md, "Typing: a paste in blocks").
PASTE_BLOCK = 4096


def paste_blocks(s: str) -> list[str]:
    """``s`` cut as a long insert goes into Yrs: blocks of at most PASTE_BLOCK characters, in
    the order they are inserted (last first, each at the same offset).

    Every block then lies left of the one inserted before it, which Yrs never merges (it
    merges only a block that continues its left neighbour, and keeps the text's order). The
    benchmarks paste through it too, so bare pycrdt is timed on the blocks SharedText makes.
    """
    return [s[start:start + PASTE_BLOCK] for start in reversed(range(0, len(s), PASTE_BLOCK))]


def _insert_in_blocks(ytext: Any, handle: Any, offset: int, s: str) -> None:
    """Insert ``s`` at ``offset`` as ``paste_blocks``: the text, its formatting and its update
    are those of one insert, with one item per block."""
    for block in paste_blocks(s):
        ytext.insert(handle, offset, block, None)


def read_positions(ytext: pycrdt.Text, length: int | None = None) -> str:
    """The whole text as positions count it: its characters, and one ``text_index.EMBED`` (one
    character, one UTF-8 byte) for each embed, which ``str()`` leaves out. Its UTF-8 offsets are
    Yrs offsets and its characters API positions. ``length``: the Yrs length, when the caller
    has it (inside an edit's transaction). O(document): for building an index, not per edit.

    ``str()`` and ``len()`` first: a text without embeds (Yrs' length is the UTF-8 length of its
    characters) is read once; only one holding embeds reads its runs (``diff()``) too.
    """
    current = str(ytext)
    size = len(ytext) if length is None else length
    if utf8_len(current) == size:
        return current
    return positions_text(ytext.diff(), current, size)


def change_shape(ytext: pycrdt.Text) -> str | bytes:
    """What the text's next change is recounted against (``events.text_change``), read whole
    after each change while a change stream listens. An ASCII text as ``str()``: every Yrs unit
    is one position then, an embed's too, so nothing is recounted (and telling ASCII is O(1)).
    Any other as ``read_positions`` in UTF-8, encoded here once instead of at the recount: the
    check for embeds costs no encoding of its own."""
    current = str(ytext)
    if current.isascii():
        return current
    encoded = current.encode("utf-8")
    size = len(ytext)
    if len(encoded) == size:
        return encoded
    return positions_text(ytext.diff(), current, size).encode("utf-8")


def _positional(delta: list[dict[str, Any]]) -> list[tuple[str, int, Any]]:
    """A Yrs text delta's inserts and deletes, each with the UTF-8 offset it applies at (as
    ``SharedText`` notes its own edits); retains, formatting included, move no position."""
    out: list[tuple[str, int, Any]] = []
    offset = 0
    for op in delta:
        if "retain" in op:
            offset += int(op["retain"])
        elif "insert" in op:
            value = op["insert"]
            size = utf8_len(value) if isinstance(value, str) and value else 1
            last = out[-1] if out else None
            if last is not None and last[0] == "insert" and isinstance(value, str) and isinstance(last[2], str) \
                    and last[1] + utf8_len(last[2]) == offset:
                out[-1] = ("insert", last[1], last[2] + value)  # one insert, split by its formatting
            else:
                out.append(("insert", offset, value))
            offset += size
        elif "delete" in op:
            last = out[-1] if out else None
            if last is not None and last[0] == "delete" and last[1] == offset:
                out[-1] = ("delete", offset, last[2] + int(op["delete"]))  # one delete across runs
            else:
                out.append(("delete", offset, int(op["delete"])))
    return out


def _attributes(attrs: Any) -> dict[str, Any]:
    if not isinstance(attrs, dict):
        raise ArgumentTypeError(f"formatting attributes must be a dict, not {type(attrs).__name__}")
    checked: dict[str, Any] = check_plain(attrs, "attributes", depth=-1)  # depth counts from each value
    return checked


class SharedText:
    """A collaborative text; positions and lengths count Python characters (code points).

    An embed (a non-text item, such as an image, that another client or an integration put in
    the text through pycrdt's ``insert_embed`` on ``Space.doc``; SharedText itself writes none)
    counts as one position, as in Yjs: ``len(text)`` counts it, an index after it is one more,
    and ``delete`` removes it like a character. ``str(text)`` holds the characters alone, so
    with embeds ``len(text)`` is ``len(str(text))`` plus their number; ``to_delta()`` shows
    them in place (``{"insert": {...}}``), and change deltas (``changes()``) count them as one
    too. An embed that is itself a string (which only a Yrs client can write) reads in
    ``to_delta()`` and change deltas like text, though it is one position.
    """

    kind: ClassVar[Literal["text"]] = "text"

    def __init__(self, name: str, ytext: pycrdt.Text, guard: Gate, feed: ChangeFeed) -> None:
        self.name = name
        self._ytext = ytext
        self._guard = guard
        self._feed = feed
        # Yrs (pycrdt 0.14) counts UTF-8 bytes (insert offsets, len, event deltas) and an embed
        # as one; the API counts characters and an embed as one. While the text is known to be
        # ASCII (embeds aside) the two agree and edits skip any conversion (_ascii True). Once
        # it is not, an index converts (see _positions): a SparseIndex (the positions of the few
        # non-ASCII characters, O(1) for typing in one place) or, past SPARSE_MAX of them, a
        # TextIndex (a chunked copy with Fenwick trees, an embed in it as one text_index.EMBED,
        # O(log n)); either is kept up to date by every local edit and, for remote updates, from
        # the Yrs delta (see remote_changes). _ascii None: not known yet (checked once, when
        # first needed).
        self._ascii: bool | None = None
        self._index: Positions | None = None
        # Local edits made beside this wrapper, through the pycrdt document (see watch_local):
        # the Yrs subscription following them, True while this wrapper commits its own edit
        # (its change is already counted), and the edits it made inside a transaction it
        # joined, to tell at that transaction's commit whether anything else changed the text.
        self._watch: Any = None
        self._released = False  # the document closed: never subscribe again (release)
        self._committing = False
        self._joined: list[tuple[str, int, Any]] | None = None
        self._bind(ytext)

    def _bind(self, ytext: pycrdt.Text) -> None:
        """Keep what every edit needs from ``ytext`` (see ``_begin``)."""
        self._ytext = ytext
        doc = ytext.doc
        self._doc = doc
        self._yrs_doc = doc._doc
        self._yrs_text = ytext.integrated
        # Made the pycrdt document's current transaction while an edit of ours runs, so anything
        # reading the document during it (a change-stream observer at commit) joins ours.
        self._own_txn = pycrdt.Transaction(doc)
        # pycrdt's path where the shortcut does not apply: a document made for multithreaded use
        # (a lock per transaction), or a pycrdt without the attributes its __enter__ sets.
        self._shortcut = not getattr(doc, "_allow_multithreading", True) and hasattr(doc, "_exceptions") \
            and hasattr(self._own_txn, "_leases")
        if self._watch is not None:  # keep watching, on the text now bound
            self._watch.drop()
            self._watch = self._yrs_text.observe(self._on_change)

    def release(self) -> None:
        """The document closed (``Document.close``): stop following the text; reads still work."""
        self._released = True
        if self._watch is not None:
            self._watch.drop()
            self._watch = None

    def rebind(self, ytext: pycrdt.Text) -> None:
        """Follow the document's relayout onto ``ytext``, a copy holding the same content."""
        self._bind(ytext)

    def watch_local(self) -> None:
        """From now on, follow every change to the text, local ones made beside this wrapper too.

        Once the pycrdt document is handed out (``Space.doc``), an integration can edit the text
        through pycrdt in a local transaction. Yrs does tell a text's observers of local
        transactions, but this wrapper only listened around remote updates
        (``remote_changes``), so such an edit went unnoticed: on the ASCII shortcut a non-ASCII
        insert left Yrs offsets and positions apart, and with an index a change keeping the
        UTF-8 length (``"é"`` replaced by ``"ab"``) passed its length check. Either way the next
        edit landed at the wrong character, or inside one (Yrs panics).

        Watching subscribes once on the Yrs text for good (``_on_change``): a transaction that
        touches the text reaches it at commit, whoever made it. Transactions touching other
        roots only do not. This wrapper's own edits, which already counted themselves, cost it
        one Python call each (about 0.3 µs, no delta read); anything else is followed from its
        delta as a remote update is, and remote updates use this subscription instead of one
        made per update. Only from the hand-out on (``Document.hand_out``): until then nothing
        but this wrapper edits the text locally, and typing pays nothing for it.

        Yrs reports at the commit, so within one transaction that edits the text both ways an
        edit of this wrapper after a pycrdt one may land off (an index still catches a change of
        length at once); the commit then finds the delta is not this wrapper's one edit alone
        and positions are worked out afresh, exact again from there on.
        """
        if self._watch is None and not self._released:
            self._watch = self._yrs_text.observe(self._on_change)
            if self._doc._txn is not None:
                # Handed out inside an open transaction: edits this wrapper made in it so far were
                # not noted, and its commit would count them twice. Work positions out afresh.
                self.forget_ascii()

    def forget_ascii(self) -> None:
        """The text may have changed without this wrapper seeing how: work it out again when needed."""
        self._ascii = None
        self._index = None

    @contextmanager
    def remote_changes(self) -> Iterator[None]:
        """Around a remote update (the document's hook): follow what it does to this text.

        Costs one Yrs event per update, only while positions are being tracked; a text that
        nobody edits here is not observed and is worked out when first edited. A text watching
        local edits too (``watch_local``) follows the update through that subscription.

        The callback subscribes on the Yrs text itself, not through ``pycrdt.Text.observe``:
        that one inspects the callback's signature on every subscription and wraps every event
        in a pycrdt ``TextEvent`` (converting target, path and delta, and opening a read
        transaction), about 45 µs of the 70 an opened text added to each one-keystroke remote
        update (bench/README.md, "Applying one received update", s4). Only the delta is read,
        during the callback, while Yrs' transaction is alive; an embed in it arrives as a raw
        Yrs value, a non-string insert: one position and one Yrs unit, which the index follows
        as one ``EMBED`` and which leaves an ASCII text's positions equal to Yrs offsets.
        A string embed arrives as a string, like text. An empty one is followed as the embed
        it is (``Positions.apply_delta``), one of one UTF-8 byte converts as text would, and
        any other leaves the index longer in bytes than Yrs' text (later deltas move both by
        the same counts), so the next ``_positions`` finds them apart and rebuilds the index,
        which reads each embed as one position (``read_positions``).
        """
        watching = self._watch is not None  # (then its subscription follows the update)
        if not watching and self._index is None and not self._ascii:
            yield
            return
        subscription = None if watching else self._yrs_text.observe(self._on_remote)
        try:
            yield
        except BaseException:
            self.forget_ascii()
            raise
        finally:
            if subscription is not None:
                subscription.drop()

    def _on_change(self, event: Any) -> None:
        """Any committed transaction that changed the text, while watching (``watch_local``)."""
        if self._committing:
            return  # this wrapper's own edit, in its own transaction: already counted
        joined = self._joined
        if joined is None:
            self._on_remote(event)  # a remote update, or local edits made beside this wrapper
            return
        self._joined = None
        if self._index is None and not self._ascii:
            return
        try:
            if len(joined) == 1 and _positional(event.delta) == joined:
                return  # the transaction changed the text by this wrapper's one edit alone
        except Exception:
            pass
        # Something else changed the text in the same transaction, or this wrapper made several
        # edits in it (their delta is composed; telling it apart is not worth the code): work
        # the positions out again at the next edit.
        self.forget_ascii()

    def _on_remote(self, event: Any) -> None:
        if self._index is None and not self._ascii:
            return  # (not tracked: worked out when first needed, the delta is not even read)
        try:
            delta = event.delta
            if self._index is not None:
                self._index.apply_delta(delta)
            elif self._ascii:
                for op in delta:
                    inserted = op.get("insert")
                    if type(inserted) is str and not inserted.isascii():  # (an embed is one, as ASCII)
                        self._ascii = False  # the index is built from the text when first needed
                        break
        except Exception:  # never break applying an update: work the positions out again instead
            self.forget_ascii()

    def _positions(self, handle: Any = None) -> Positions | None:
        """The index converting characters to Yrs offsets; None while the text is ASCII.
        ``handle``: the Yrs transaction of an edit in progress, to read the length under it.

        A text with at most ``SPARSE_MAX`` non-ASCII characters gets a ``SparseIndex`` (those
        characters alone; typing costs it one addition), any other a ``TextIndex``, which one
        that grew crowded is replaced by, once (O(document), as any build)."""
        index = self._index
        if index is not None:
            if index.utf8 == (len(self._ytext) if handle is None else self._yrs_text.len(handle)) \
                    and not index.crowded:
                return index
            self._index = None  # out of step (a change this wrapper missed), or crowded: rebuild it
        elif self._ascii:
            return None
        current = read_positions(self._ytext, None if handle is None else self._yrs_text.len(handle))
        self._ascii = current.isascii()
        if self._ascii:
            return None
        self._index = sparse(current) or TextIndex(current)
        return self._index

    def _begin(self) -> tuple[pycrdt.Transaction, bool]:
        """The transaction for one edit, and whether this edit began it (and must ``_end`` it).

        An edit inside an open transaction (``Space.transaction()``, or pycrdt's own) joins it,
        after pycrdt's own check (never edit in a read-only one). Otherwise it begins a Yrs
        transaction itself rather than through pycrdt's ``Doc.transaction()``: that wrapper's
        Python (lease counting, origins, locking for multithreaded documents) cost about
        1.8 µs of the ~6 µs an edit took in the SDK, more than Yrs's own insert of a keystroke
        (bench/README.md, "The writer's per-keystroke cost"). The document is made to see
        ``_own_txn`` as its current transaction meanwhile, exactly as pycrdt's ``__enter__``
        does, so reads and nested ``transaction()`` blocks during the edit join it. Documents
        created for multithreaded use (a lock per transaction) keep pycrdt's path (``_shortcut``).
        """
        doc = self._doc
        current = doc._txn
        if current is not None:
            self._ytext._forbid_read_transaction(current)
            return current, False
        if not self._shortcut:
            txn = doc.transaction()
            txn.__enter__()
            return txn, True
        own = self._own_txn
        own._txn = self._yrs_doc.create_transaction()
        own._leases = 1
        doc._txn = own
        return own, True

    def _end(self, txn: pycrdt.Transaction) -> None:
        """Commit the edit's own transaction as pycrdt's ``__exit__`` does (observers run now;
        their exceptions come out as one ExceptionGroup), and leave the document without one."""
        if txn is not self._own_txn:
            self._committing = True
            try:
                txn.__exit__(None, None, None)
            finally:
                self._committing = False
            return
        doc = self._doc
        native = txn._txn
        assert native is not None
        try:
            self._committing = True  # (a watching observer skips this edit: see _on_change)
            native.commit()
            if doc._exceptions:
                exceptions = tuple(doc._exceptions)
                doc._exceptions.clear()
                raise ExceptionGroup("Observer callback error", exceptions)
        finally:
            native.drop()
            txn._txn = None
            txn._leases = 0
            doc._txn = None
            self._committing = False

    def _join(self, edit: tuple[str, int, Any]) -> None:
        """Note an edit made in a transaction this wrapper joined, while watching: its commit
        reaches ``_on_change`` with the transaction's whole change to the text."""
        if self._watch is not None:
            if self._joined is None:
                self._joined = [edit]
            else:
                self._joined.append(edit)

    def insert(self, index: int, s: str, attrs: dict[str, Any] | None = None) -> None:
        """Insert ``s`` at ``index``.

        With ``attrs`` None the new characters take the formatting of the text they are typed
        into (as in an editor); pass a dict to set marks explicitly (``{}`` for none).
        """
        self._guard.allow()
        if not isinstance(s, str):
            raise ArgumentTypeError(f"can only insert str into a text, not {type(s).__name__}")
        ascii_only = s.isascii()
        if not ascii_only:
            check_str(s, "inserted text")  # (ASCII holds no lone surrogate)
        checked = None if attrs is None else _attributes(attrs)
        # The characters, and a mark opening and closing around them for each attribute.
        marks = 0 if checked is None else 2 * sum(value_size(v, k) for k, v in checked.items())
        txn, began = self._begin()
        try:
            ytext, handle = self._yrs_text, txn._txn
            positions = None if self._ascii else self._positions(handle)  # (ASCII: no index, one call less)
            size = ytext.len(handle) if positions is None else positions.chars
            if type(index) is not int or not 0 <= index <= size:  # (the usual case checked inline)
                self._check_index(index, size)
            in_blocks = checked is None and len(s) > PASTE_BLOCK
            items = -(-len(s) // PASTE_BLOCK) if in_blocks else 1
            self._guard.charge(items * (ITEM_BYTES + 5) + (len(s) if ascii_only else utf8_len(s)) + marks,
                               items=items + 2 * len(checked or ()))
            if s:
                offset = index if positions is None else positions.insert(index, s)
                try:
                    if in_blocks:
                        _insert_in_blocks(ytext, handle, offset, s)
                    else:
                        ytext.insert(handle, offset, s, None if checked is None else iter(checked.items()))
                except BaseException:
                    self.forget_ascii()  # the index already counts s: work positions out again
                    raise
                if positions is None and not ascii_only:
                    self._ascii = False
                if not began:
                    self._join(("insert", offset, s))
        finally:
            if began:
                self._end(txn)

    def delete(self, index: int, length: int) -> None:
        """Remove ``length`` positions (characters, an embed as one) starting at ``index``."""
        self._guard.allow()
        txn, began = self._begin()
        try:
            ytext, handle = self._yrs_text, txn._txn
            positions = None if self._ascii else self._positions(handle)  # (ASCII: no index, one call less)
            size = ytext.len(handle) if positions is None else positions.chars
            if type(index) is not int or type(length) is not int or not 0 <= index <= index + length <= size:
                self._check_range(index, length, size)
            self._guard.charge(DELETE_BYTES, items=0)
            if not length:
                return
            start, size = (index, length) if positions is None else positions.delete(index, length)
            try:
                ytext.remove_range(handle, start, size)
            except BaseException:
                self.forget_ascii()  # the index already lost these characters: work positions out again
                raise
            if not began:
                self._join(("delete", start, size))
        finally:
            if began:
                self._end(txn)

    def format(self, index: int, length: int, attrs: dict[str, Any]) -> None:
        """Set formatting marks on ``length`` characters at ``index``; a None value removes a mark."""
        self._guard()
        start, size = self._byte_range(index, length)
        checked = _attributes(attrs)
        if size and checked:
            # A mark opens and closes at every boundary between differently formatted runs.
            # (Counted over the whole text: pycrdt 0.14 reads runs only whole, ``diff()``, and a
            # bound from the range's length alone would overcharge a long range in a text of
            # few runs, refusing formatting that fits.)
            runs = 2 + len(self._ytext.diff())
            self._guard.charge(2 * runs * sum(value_size(v, k) for k, v in checked.items()),
                               items=2 * runs * len(checked))
            own = self._doc._txn is None  # (else the transaction it joins commits later)
            self._committing = own  # formatting moves no position: a watching observer skips it
            try:
                self._ytext.format(start, start + size, checked)
            finally:
                self._committing = False

    def to_delta(self) -> list[dict[str, Any]]:
        """The text as formatted runs: ``[{"insert": "Hi", "attributes": {"bold": True}}, ...]``."""
        return [
            {"insert": to_plain(content), **({"attributes": to_plain(attrs)} if attrs else {})}
            for content, attrs in self._ytext.diff()
        ]

    def to_py(self) -> str:
        """The characters, embeds left out (as ``str()``)."""
        return str(self._ytext)

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise ArgumentTypeError(f"a text index must be an int, not {type(index).__name__}")
        if not 0 <= index <= size:
            raise IndexOutOfRangeError(f"index {index} is outside the text (length {size})")

    def _check_range(self, index: int, length: int, size: int) -> None:
        self._check_index(index, size)
        if isinstance(length, bool) or not isinstance(length, int):
            raise ArgumentTypeError(f"a length must be an int, not {type(length).__name__}")
        if length < 0 or index + length > size:
            raise IndexOutOfRangeError(f"cannot use {length} characters at {index} of a text of length {size}")

    def _byte_range(self, index: int, length: int) -> tuple[int, int]:
        """Yrs addresses text in UTF-8 bytes; the API in Python characters (code points)."""
        positions = self._positions()
        self._check_range(index, length, len(self._ytext) if positions is None else positions.chars)
        if positions is None:
            return index, length
        start = positions.offset(index)
        return start, positions.offset(index + length) - start

    def __str__(self) -> str:
        """The characters, embeds left out: ``to_delta()`` has them."""
        return str(self._ytext)

    def __len__(self) -> int:
        """Length in positions: Python characters, and one per embed (pycrdt's own ``len``
        counts UTF-8 bytes)."""
        positions = self._positions()
        return len(self._ytext) if positions is None else positions.chars

    def __repr__(self) -> str:
        return f"SharedText({self.name!r}, {len(self)} characters)"

    def changes(self) -> ChangeStream[TextChange]:
        """Every change to this text from now on, local and remote, in the order they were applied."""
        name = self.name

        def select(change: Change) -> TextChange | None:
            return change if isinstance(change, TextChange) and change.text == name else None

        return self._feed.stream(select)


__all__ = ["SharedText", "change_shape", "paste_blocks", "read_positions"]
