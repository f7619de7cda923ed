"""Fan-out of change events to any number of async iterators.

A stream subscribes the moment it is created (not at its first ``await``), so no change made
between asking for the stream and starting to iterate is lost. The feed holds streams only
weakly: a stream the application drops stops buffering events instead of growing forever.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .changes import Change

T = TypeVar("T")


class _Closed:
    """Queued to wake a consumer waiting on a stream that was closed."""


_CLOSED = _Closed()


class ChangeStream(Generic[T]):
    """Async iterator over changes, from its creation on, in the order they were applied."""

    def __init__(self, feed: ChangeFeed, select: Callable[[Change], T | None]) -> None:
        self._feed = feed
        self._select = select
        self._queue: asyncio.Queue[T | _Closed] = asyncio.Queue()
        self._closed = False

    def _offer(self, change: Change) -> None:
        if self._closed:
            return
        selected = self._select(change)
        if selected is not None:
            self._queue.put_nowait(selected)

    def __aiter__(self) -> ChangeStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _Closed):
            raise StopAsyncIteration
        return item

    def get_nowait(self) -> T | None:
        """The next buffered change, or None when none is waiting (handy in synchronous code and tests)."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not isinstance(item, _Closed):
                return item
        return None

    def close(self) -> None:
        """Stop receiving changes; an iteration in progress ends after the buffered ones."""
        if not self._closed:
            self._closed = True
            self._feed._streams.discard(self)
            self._queue.put_nowait(_CLOSED)

    async def aclose(self) -> None:
        self.close()


class ChangeFeed:
    """Where the document publishes changes; streams pick the ones they want."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[ChangeStream[Any]] = weakref.WeakSet()
        # Called before a stream is added: describing changes costs work on every keystroke,
        # so the document only keeps what it needs for that while someone listens.
        self.on_listen: Callable[[], None] | None = None

    def stream(self, select: Callable[[Change], T | None]) -> ChangeStream[T]:
        if self.on_listen is not None:
            self.on_listen()
        stream = ChangeStream(self, select)
        self._streams.add(stream)
        return stream

    def publish(self, change: Change) -> None:
        for stream in list(self._streams):
            stream._offer(change)

    @property
    def listening(self) -> bool:
        return len(self._streams) > 0


__all__ = ["ChangeFeed", "ChangeStream"]
