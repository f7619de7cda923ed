"""The local CRDT document: where local edits are captured and verified remote edits land.

One space is one pycrdt document. Every local transaction yields a Yjs update that must be
encrypted, signed and sent; remote updates are applied only after verification and must not
be sent back. pycrdt does not pass a transaction's origin to document observers, so a flag
raised around remote applications tells the two apart.

The document also hands out the shared objects (texts, lists, maps, tables) as cached
wrappers, groups edits into transactions, and turns every change to an object into one typed
event on ``changes()``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pycrdt

from .shared.array import SharedList
from .shared.changes import (
    Change,
    KeyChange,
    ListChange,
    MapChange,
    NestedChange,
    TableChange,
    TextChange,
    TextRange,
)
from .shared.events import appeared, change_from_events
from .shared.feed import ChangeFeed, ChangeStream
from .shared.gate import EditBudget, Gate
from .shared.kinds import KINDS, ObjectKind, ObjectKindError, check_name, parse_root_name, root_name
from .shared.mapping import SharedMap
from .shared.table import SharedTable
from .shared.text import SharedText, change_shape
from .state_vector import read_deletions, read_state, read_varuint

log = logging.getLogger(__name__)

SharedObject = SharedText | SharedList | SharedMap | SharedTable
Guard = Callable[[], None]

_ROOT_TYPES: dict[ObjectKind, type[pycrdt.Text] | type[pycrdt.Array[Any]] | type[pycrdt.Map[Any]]] = {
    "text": pycrdt.Text,
    "list": pycrdt.Array,
    "map": pycrdt.Map,
    "table": pycrdt.Map,
}

_WRAPPERS: dict[ObjectKind, Callable[[str, Any, Gate, ChangeFeed], SharedObject]] = {
    "text": SharedText,
    "list": SharedList,
    "map": SharedMap,
    "table": SharedTable,
}


class _Stale:
    """Marks a shape not kept up to date because no stream was listening."""


_STALE = _Stale()


def _shape(kind: ObjectKind, root: Any) -> str | bytes | frozenset[str] | None:
    """The part of an object's state its next change is described against (see ``Document._before``)."""
    if kind == "text":
        return change_shape(root)  # with its embeds: Yrs counts each as one, str() leaves them out
    if kind == "list":
        return None
    if kind == "map":
        return frozenset(root.keys())
    return frozenset(key for key, value in root.items() if isinstance(value, pycrdt.Map))


_EMPTY_STATE = b"\x00"  # the state vector of a document no client has written to

# Update bytes a document takes in before it is first laid out again (see ``Document._relayout``).
RELAYOUT_MIN_BYTES = 1 << 18


def _release(obj: SharedObject) -> None:
    """Drop the Yrs subscriptions an object made for itself (texts and tables keep one), for good."""
    if isinstance(obj, SharedText | SharedTable):
        obj.release()


# An update holding no struct and an empty delete set.
_NOTHING_LEFT = b"\x00\x00"


def fully_applied(update: bytes, state: bytes, doc: pycrdt.Doc[Any] | None = None) -> bool:
    """Whether a document whose state vector is ``state`` (``doc``, when given) holds all of ``update``.

    Yrs keeps the parts of an update it cannot integrate yet (structs whose dependencies it lacks,
    deletions of items it does not have) aside, and ``get_update`` leaves them out: a document
    rebuilt from its state would lose them. The diff of the update against the state holds
    no struct when every struct was integrated, and its delete set (always whole) must only
    name clocks the document has. Anything unexpected counts as not applied.

    Given ``doc``, one whose own encoding is ``update`` byte for byte holds all of it: the same
    bytes decode to the same structs and delete set, and Yrs encodes only what it integrated
    (a snapshot's state loaded into a document of its own re-encodes so, ~1.3 ms for B4's
    377 KB, where Yrs decoding the state again below costs ~3.5 ms on every cold open).
    """
    try:
        if doc is not None and doc.get_update() == update:
            return True
        diff = pycrdt.get_update(update, state)
        if diff == _NOTHING_LEFT:
            # The usual answer (no struct left, no delete set: a typed-in insert), decided
            # without reading the state vector, whose parsing cost most of this check.
            return True
        clients, pos = read_varuint(diff, 0)
        if clients:
            return False
        if doc is not None and diff == doc.get_update(state):
            # The update's deletions are exactly the document's own (its delete set, which Yrs
            # writes whole): all applied. Decided without parsing them in Python, ~18 ms for a
            # snapshot of B4 on every cold open (bench/README.md, "Cold open after the snapshot
            # checks"); other encodings of the same set fall through to the exact check below.
            return True
        have = read_state(state)
        ranges, pos = read_deletions(diff, pos)
        return pos == len(diff) and all(clock + length <= have.get(client, 0) for client, clock, length in ranges)
    except Exception:
        return False


class Document:
    """Wraps a pycrdt Doc; reports local updates to ``on_local_update``."""

    def __init__(self, on_local_update: Callable[[bytes], None], client_id: int | None = None) -> None:
        # The Yjs client id local edits are written under (a space's: derived from its key,
        # encspaces.core.client_ids); kept when the pycrdt document is replaced.
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
        self.client_id: int = self.doc.client_id
        self._on_local_update = on_local_update
        self._remote_author: str | None = None
        self._applying_remote = False
        self._feed = ChangeFeed()
        self._feed.on_listen = self._refresh_stale
        self._objects: dict[str, SharedObject] = {}  # name -> the wrapper handed out for it
        self._known: set[str] = set()  # root names of every object opened here or seen arrive
        self._watched: dict[str, pycrdt.Subscription] = {}  # root name -> its deep observer
        # What each observed root looked like after its last change, to describe the next one:
        # a text's content (yrs counts in bytes) and a map's or table's keys (yrs events can omit them).
        self._before: dict[str, str | bytes | frozenset[str] | _Stale | None] = {}
        self._depth = 0  # open transaction() blocks
        self._budget = EditBudget()  # refuses, before it happens, an edit too large for one entry
        self._deferred: builtins.list[tuple[bytes, str | None]] = []
        self._subscription = self.doc.observe(self._observe)
        # Relayout (see _relayout): update bytes taken in since the document was last laid out,
        # the amount that makes it due again, whether one is scheduled, and whether it is still
        # allowed (never again once the pycrdt document was handed out, an object other than a
        # text opened, or an update may be held aside; remote updates are checked until then).
        self._grown = 0
        self._relayout_at = RELAYOUT_MIN_BYTES
        self._relayout_scheduled = False
        self._relayout_allowed = True
        self._handed_out = False  # whether doc went to an integration (hand_out)
        self._closed = False  # its subscriptions dropped (close): nothing is followed any more

    def _observe(self, event: pycrdt.TransactionEvent) -> None:
        if not self._applying_remote:
            update = event.update
            self._on_local_update(update)
            self._grown += len(update)
            if self._grown >= self._relayout_at and not self._relayout_scheduled:
                self._relayout_due()

    def _relayout_due(self) -> None:
        """Schedule a relayout for the next turn of the event loop, outside any transaction."""
        if self._relayout_scheduled or not self._relayout_allowed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nowhere to run it outside the current transaction
            # Ask again only after as many bytes more, not at every edit: raising and catching
            # this error cost about 1 µs an edit once a document without a loop grew past it.
            self._relayout_at = self._grown + RELAYOUT_MIN_BYTES
            return
        self._relayout_scheduled = True
        loop.call_soon(self._relayout)

    def _relayout(self) -> None:
        """Rebuild the pycrdt document from its own state, so Yrs's items lie in document order.

        Yrs finds a text position by walking its items one by one. Items allocated while the
        process does other work (another document, crypto, the network) end up scattered over
        the heap, and the walk then misses the CPU caches: in the B4 replay every insert cost
        about twice what it costs in a process doing nothing else, and a document loaded afresh
        from the same state walks faster than either (bench/README.md, "Replay: why Yrs was
        slower in the full stack"). A rebuild costs about what loading a snapshot costs; it is
        due once the document took in as many update bytes as its state held at the last one,
        so its cost per edit stays flat in the document's size.

        Only where nothing else holds the pycrdt objects: every opened object a text (lists,
        maps and tables hand out nested pycrdt objects), the document never handed out through
        ``doc``, no ``transaction()`` block open, and no update held aside by Yrs (its state
        would not carry it).
        """
        self._relayout_scheduled = False
        if not self._relayout_allowed or self._depth or self._deferred or self._grown < self._relayout_at:
            return
        old = self.doc
        state = old.get_update()
        fresh: pycrdt.Doc[Any] = pycrdt.Doc(client_id=old.client_id)
        fresh.apply_update(state)
        self._replace_doc(fresh)
        for name, obj in self._objects.items():
            assert isinstance(obj, SharedText)
            obj.rebind(fresh.get(root_name("text", name), type=pycrdt.Text))
        self._grown = 0
        self._relayout_at = max(RELAYOUT_MIN_BYTES, len(state))

    def _replace_doc(self, doc: pycrdt.Doc[Any]) -> None:
        """Make ``doc`` the document: its observer, and the deep observers of every watched root.

        The old deep observers are dropped, not left to go with the old document: each one's
        callback holds its root, so the document would never be freed.
        """
        self.doc.unobserve(self._subscription)
        for key, subscription in self._watched.items():
            subscription.drop()
            parsed = parse_root_name(key)
            assert parsed is not None
            kind, name = parsed
            root = doc.get(key, type=_ROOT_TYPES[kind])
            self._watched[key] = root.observe_deep(self._observer(kind, name, root))
        self.doc = doc
        self._subscription = doc.observe(self._observe)

    def hand_out(self) -> pycrdt.Doc[Any]:
        """The pycrdt document for an integration, which may keep it: it is never replaced after this."""
        self._relayout_allowed = False
        if not self._handed_out and not self._closed:
            # From now on the text may also change by local edits made through pycrdt: every
            # text follows all its changes (SharedText.watch_local), not only remote ones.
            self._handed_out = True
            for obj in self._objects.values():
                if isinstance(obj, SharedText):
                    obj.watch_local()
        return self.doc

    def close(self) -> None:
        """Drop every Yrs subscription of this document and of its objects; reads still work.

        pycrdt keeps an observer's callback in Rust, bound to the pycrdt document it observes,
        where Python's cycle collector cannot see it: a document that observed anything was
        never freed, and with it whatever its callbacks reach (for a space, the whole ``Space``
        with its store, verifier and document; for a history view, the document at that seq).
        Called when the space closes and when a history view is built: from then on nothing
        changes the document but an integration holding ``doc``, and nothing here follows it.
        """
        if self._closed:
            return
        self._closed = True
        self._relayout_allowed = False
        self.doc.unobserve(self._subscription)
        for subscription in self._watched.values():
            subscription.drop()
        self._watched.clear()
        for obj in self._objects.values():
            _release(obj)

    # --- remote updates --------------------------------------------------------------------

    def apply_remote(self, update: bytes, author: str | None) -> None:
        """Apply a verified update; raises ValueError when the bytes are not a valid update.

        Inside a ``transaction()`` block (which an application may hold across an ``await``)
        the update is checked now and applied when the block ends, so remote edits never land
        in the middle of a local group.
        """
        if self._depth:
            try:
                pycrdt.get_state(update)  # decodes the whole update without applying it
            except BaseException as exc:
                if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                    raise
                raise ValueError(f"not a valid document update: {exc}") from exc
            self._deferred.append((update, author))
            return
        self._apply(update, author)
        self._discover(author)

    def adopt(self, doc: pycrdt.Doc[Any], author: str | None) -> bool:
        """Make ``doc`` (a snapshot's state, loaded to check it) the document, if this one is untouched.

        A new device starting from a snapshot loads its state once to hash it; loading the same
        state again into an empty document costs as much (4.5 ms of CPU for the B4 document).
        Only a document that holds nothing and that nothing opened or observes is replaced;
        otherwise False, and the caller applies the state as an update.
        """
        if self._objects or self._known or self._watched or self._depth or self._deferred \
                or doc.client_id != self.client_id or self.doc.get_state() != _EMPTY_STATE:
            return False
        self._replace_doc(doc)
        self._discover(author)
        return True

    def _apply(self, update: bytes, author: str | None) -> None:
        self._applying_remote = True
        self._remote_author = author
        try:
            with contextlib.ExitStack() as texts:
                for obj in self._objects.values():
                    if isinstance(obj, SharedText):  # texts follow the change to keep positions exact
                        texts.enter_context(obj.remote_changes())
                with self.doc.transaction(origin="remote"):
                    self.doc.apply_update(update)
                    # Read in the update's own transaction (Yrs integrated what it could, held
                    # the rest aside, during apply_update): a transaction of its own, opened
                    # and committed just to read the state vector, cost as much as the check.
                    fully = not self._relayout_allowed or fully_applied(update, self.doc.get_state())
            self._forget_table_indexes()
            if not fully:
                self._relayout_allowed = False  # Yrs holds part of it aside: a rebuild would drop it
        except BaseException as exc:  # pycrdt raises pyo3 PanicException (a BaseException) on garbage
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            raise ValueError(f"not a valid document update: {exc}") from exc
        finally:
            self._applying_remote = False
            self._remote_author = None
        self._grown += len(update)
        if self._grown >= self._relayout_at:
            self._relayout_due()

    def _forget_table_indexes(self) -> None:
        """After a remote update, tables read their rows from the document again at the next read.

        yrs does not report every change a remote update makes through the table's deep
        observer: a concurrent cell write that wins over a local one was seen to change a row
        with no event at all (tests/types/test_shared_convergence.py, seed 88025), which left
        the index stale. Until the index can tell from the update itself which rows it touches,
        the first read after a remote change costs a rebuild (bench/README.md, "Tables").
        """
        for obj in self._objects.values():
            if isinstance(obj, SharedTable):
                obj.forget_index()

    def _apply_deferred(self) -> None:
        while self._deferred:
            update, author = self._deferred.pop(0)
            try:
                self._apply(update, author)
            except ValueError as exc:
                log.warning("remote update by %s could not be applied, skipped: %s", author, exc)
            self._discover(author)

    @property
    def remote_author(self) -> str | None:
        """The member whose update is being applied right now; None outside ``apply_remote``."""
        return self._remote_author

    def state(self) -> bytes:
        return self.doc.get_update()

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group edits: everything done inside becomes one Yjs update, so one entry.

        Blocks nest (only the outermost one commits). Yjs cannot roll back, so edits made
        before an exception inside the block are kept and sent. Nothing is sent until the
        block ends, so awaiting ``sync()`` inside one would wait for itself.
        """
        self._depth += 1
        self._budget.begin()
        try:
            with self.doc.transaction():
                yield
        finally:
            self._depth -= 1
            self._budget.end()
            if not self._depth:
                self._apply_deferred()

    # --- shared objects --------------------------------------------------------------------

    def text(self, name: str, guard: Guard) -> SharedText:
        obj = self.open_object(name, "text", guard)
        assert isinstance(obj, SharedText)
        return obj

    def list(self, name: str, guard: Guard) -> SharedList:
        obj = self.open_object(name, "list", guard)
        assert isinstance(obj, SharedList)
        return obj

    def map(self, name: str, guard: Guard) -> SharedMap:
        obj = self.open_object(name, "map", guard)
        assert isinstance(obj, SharedMap)
        return obj

    def table(self, name: str, guard: Guard) -> SharedTable:
        obj = self.open_object(name, "table", guard)
        assert isinstance(obj, SharedTable)
        return obj

    def objects(self) -> builtins.list[tuple[str, ObjectKind]]:
        """Every shared object in the document, opened here or created by others, as (name, kind)."""
        found = [parsed for root in self._root_keys() if (parsed := parse_root_name(root)) is not None]
        return sorted((name, kind) for kind, name in found)

    def open_object(self, name: str, kind: ObjectKind, guard: Guard) -> SharedObject:
        """The cached wrapper for ``name``; the guard given first is the one it keeps."""
        existing = self._objects.get(check_name(name))
        if existing is not None:
            if existing.kind != kind:
                raise ObjectKindError(f"{name!r} is a {existing.kind} in this space, not a {kind}")
            return existing
        roots = self._root_keys()
        others = [other for other in KINDS if other != kind and root_name(other, name) in roots]
        if others and root_name(kind, name) not in roots:
            raise ObjectKindError(f"{name!r} is a {others[0]} in this space, not a {kind}")
        if kind != "text":
            self._relayout_allowed = False  # its wrapper hands out nested pycrdt objects (see _relayout)
        gate = Gate(guard, self._budget, root_name(kind, name))
        obj = _WRAPPERS[kind](name, self._root(kind, name), gate, self._feed)
        self._objects[name] = obj
        if self._closed:
            _release(obj)
        elif self._handed_out and isinstance(obj, SharedText):
            obj.watch_local()
        return obj

    def _root_keys(self) -> set[str]:
        return set(self.doc.keys())

    def _root(self, kind: ObjectKind, name: str) -> Any:
        """The root holding the object; observed once anyone listens for changes.

        Building pycrdt's deep events cost about half of every keystroke, so an application
        that never asks for changes never pays for them.
        """
        key = root_name(kind, name)
        root = self.doc.get(key, type=_ROOT_TYPES[kind])
        self._known.add(key)
        if key not in self._watched and self._feed.listening and not self._closed:
            self._before[key] = _shape(kind, root)
            self._watched[key] = root.observe_deep(self._observer(kind, name, root))
        return root

    def _refresh_stale(self) -> None:
        """A stream is starting: observe every object, and describe changes from its state now.

        Objects that arrived while nobody listened were not discovered (``_discover``): they
        are known from now on, and their arrival, which happened before this stream, is not
        reported.
        """
        if self._closed:
            return  # nothing changes any more: nothing to follow
        self._known.update(key for key in self._root_keys() if parse_root_name(key) is not None)
        for key in self._known:
            parsed = parse_root_name(key)
            if parsed is None:
                continue
            kind, name = parsed
            root = self.doc.get(key, type=_ROOT_TYPES[kind])
            if key not in self._watched:
                self._watched[key] = root.observe_deep(self._observer(kind, name, root))
                self._before[key] = _shape(kind, root)
            elif self._before.get(key) is _STALE:
                self._before[key] = _shape(kind, root)

    def _discover(self, author: str | None) -> None:
        """Start watching objects a remote update created, and report their arrival as a change.

        Only while a stream listens: listing the roots builds a wrapper per root, several times
        the cost of applying a one-keystroke update once a document holds a few objects
        (bench/README.md, "Receiving at 10×10"), and with no stream there is nothing to watch or
        report. A stream starting later finds what arrived meanwhile (``_refresh_stale``).
        """
        if not self._feed.listening:
            return
        for key in sorted(self._root_keys()):
            if key in self._known or (parsed := parse_root_name(key)) is None:
                continue
            kind, name = parsed
            root = self._root(kind, name)
            if self._feed.listening:
                try:
                    change = appeared(kind, name, root, False, author)
                except Exception:  # reading a hostile document must not break applying it
                    log.exception("could not describe new %s %r", kind, name)
                    continue
                if change is not None:
                    self._feed.publish(change)

    def _observer(self, kind: ObjectKind, name: str, root: Any) -> Callable[[builtins.list[Any]], None]:
        key = root_name(kind, name)

        def observe(events: builtins.list[Any]) -> None:
            if not self._feed.listening:
                # A text's shape is its whole content: recomputing it on every keystroke nobody
                # listens to made typing quadratic. It is refreshed when a stream starts.
                self._before[key] = _STALE
                return
            try:
                before = self._before.get(key)
                now = self._before[key] = _shape(kind, root)
                remote = self._applying_remote
                author = self._remote_author if remote else None
                change = change_from_events(kind, name, events, not remote, author, before, now, root)
            except Exception:  # an exception here would surface from pycrdt's commit, far from its cause
                log.exception("could not describe a change to %s %r", kind, name)
                return
            if change is not None:
                self._feed.publish(change)

        return observe

    # --- change events ---------------------------------------------------------------------

    def changes(self, name: str | None = None, kind: ObjectKind | None = None) -> ChangeStream[Change]:
        """Typed changes from now on, to every object (or those of ``name``/``kind``), in applied order.

        The stream subscribes when it is created, so nothing between this call and the first
        ``await`` is missed; drop it or call ``close()`` when done.
        """

        def select(change: Change) -> Change | None:
            if (name is None or change.name == name) and (kind is None or change.kind == kind):
                return change
            return None

        return self._feed.stream(select)

    def end_changes(self, error: BaseException | None = None) -> None:
        """End every change stream (the space closed, or failed with ``error``)."""
        self._feed.end(error)


__all__ = [
    "Change",
    "Document",
    "KeyChange",
    "ListChange",
    "MapChange",
    "NestedChange",
    "ObjectKindError",
    "SharedList",
    "SharedMap",
    "SharedTable",
    "SharedText",
    "TableChange",
    "TextChange",
    "TextRange",
]
