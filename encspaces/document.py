"""The local CRDT document: where local edits are captured and verified remote edits land.

One space is one pycrdt document. Every local transaction yields a Yjs update that must be
encrypted, signed and sent; remote updates are applied only after verification and must not
be sent back. pycrdt does not pass a transaction's origin to document observers, so a flag
raised around remote applications tells the two apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pycrdt


@dataclass(frozen=True)
class TextChange:
    """One change to a shared text: a Yjs delta (retain / insert / delete items)."""

    text: str  # the text's name
    delta: list[dict[str, Any]]
    local: bool
    author: str | None  # member id of the remote author; None for local changes


class Document:
    """Wraps a pycrdt Doc; reports local updates to ``on_local_update``."""

    def __init__(self, on_local_update: Callable[[bytes], None]) -> None:
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self._on_local_update = on_local_update
        self._remote_author: str | None = None
        self._applying_remote = False
        self._texts: dict[str, SharedText] = {}
        self.doc.observe(self._observe)

    def _observe(self, event: pycrdt.TransactionEvent) -> None:
        if not self._applying_remote:
            self._on_local_update(event.update)

    def apply_remote(self, update: bytes, author: str | None) -> None:
        """Apply a verified update; raises ValueError when the bytes are not a valid update."""
        self._applying_remote = True
        self._remote_author = author
        try:
            with self.doc.transaction(origin="remote"):
                self.doc.apply_update(update)
        except BaseException as exc:  # pycrdt raises pyo3 PanicException (a BaseException) on garbage
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            raise ValueError(f"not a valid document update: {exc}") from exc
        finally:
            self._applying_remote = False
            self._remote_author = None

    @property
    def remote_author(self) -> str | None:
        return self._remote_author

    def state(self) -> bytes:
        return self.doc.get_update()

    def text(self, name: str, guard: Callable[[], None]) -> SharedText:
        shared = self._texts.get(name)
        if shared is None:
            shared = SharedText(self, name, self.doc.get(name, type=pycrdt.Text), guard)
            self._texts[name] = shared
        return shared


class SharedText:
    """A collaborative text. Edits apply locally at once and reach others once verified."""

    def __init__(self, document: Document, name: str, ytext: pycrdt.Text, guard: Callable[[], None]) -> None:
        self._document = document
        self.name = name
        self._ytext = ytext
        self._guard = guard
        self._queues: list[asyncio.Queue[TextChange]] = []
        ytext.observe(self._observe)

    def _observe(self, event: pycrdt.TextEvent) -> None:
        local = event.transaction.origin != "remote"
        delta: list[dict[str, Any]] = list(getattr(event, "delta", []))
        change = TextChange(self.name, delta, local, None if local else self._document.remote_author)
        for queue in self._queues:
            queue.put_nowait(change)

    def insert(self, index: int, s: str) -> None:
        self._guard()
        self._check_index(index)
        self._ytext.insert(index, s)

    def delete(self, index: int, length: int) -> None:
        self._guard()
        self._check_index(index)
        if length < 0 or index + length > len(self._ytext):
            raise IndexError(f"cannot delete {length} characters at {index} from a text of length {len(self._ytext)}")
        if length:
            del self._ytext[index : index + length]

    def _check_index(self, index: int) -> None:
        if not 0 <= index <= len(self._ytext):
            raise IndexError(f"index {index} is outside the text (length {len(self._ytext)})")

    def __str__(self) -> str:
        return str(self._ytext)

    def __len__(self) -> int:
        return len(self._ytext)

    def __repr__(self) -> str:
        return f"SharedText({self.name!r}, {len(self)} characters)"

    async def changes(self) -> AsyncIterator[TextChange]:
        """Every change from now on, local and remote, in the order they were applied."""
        queue: asyncio.Queue[TextChange] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)


__all__ = ["Document", "SharedText", "TextChange"]
