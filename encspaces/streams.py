"""Async streams of events that an application iterates: ``async for change in ...``.

The one stream core of the SDK (document changes in encspaces/shared/feed.py build on it too).
A stream subscribes the moment it is created, so nothing published between asking for it
and the first ``await`` is lost; its hub holds it weakly, so a stream the application drops
stops buffering instead of growing forever.

Every stream ends: ``close()``/``aclose()`` (or leaving ``async with stream:``) ends it from
the consumer's side, and the hub ends all of its streams when the space closes or fails. A
consumer waiting on a stream is woken either way; it first receives what was buffered, then
iteration stops with ``StopAsyncIteration``, or raises the space's error if the space failed.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from types import TracebackType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E")
S = TypeVar("S", bound="EventStream[Any]")


class EventStream(Generic[T]):
    """Async iterator over events, from its creation on, in the order they were published."""

    def __init__(self) -> None:
        self._buffer: deque[T] = deque()
        self._wake = asyncio.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._hub: weakref.ref[StreamHub[Any]] | None = None

    # --- the producer's side -----------------------------------------------------------------

    def _offer(self, event: Any) -> None:
        """What a hub calls for each published event (subclasses may filter or transform it)."""
        self._put(event)

    def _put(self, event: T) -> None:
        if not self._ended:
            self._buffer.append(event)
            self._wake.set()

    def _end(self, error: BaseException | None = None) -> None:
        """No more events: the consumer gets the buffered ones, then the end (or ``error``)."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._wake.set()
        hub = self._hub() if self._hub is not None else None
        if hub is not None:
            hub._streams.discard(self)

    # --- the consumer's side -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the stream receives nothing more (closed, or its space closed or failed)."""
        return self._ended

    def close(self) -> None:
        """Stop receiving events; an iteration in progress ends after the buffered ones."""
        self._end()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self: S) -> S:
        return self

    async def __anext__(self) -> T:
        while not self._buffer:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._buffer.popleft()

    def get_nowait(self) -> T | None:
        """The next buffered event, or None when none is waiting (handy in synchronous code and tests)."""
        return self._buffer.popleft() if self._buffer else None


class StreamHub(Generic[E]):
    """Where events are published to any number of streams; ``end`` ends them all for good."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[EventStream[Any]] = weakref.WeakSet()
        self._ended = False
        self._error: BaseException | None = None

    def attach(self, stream: S) -> S:
        """Subscribe ``stream``; on a hub that already ended, it starts ended."""
        stream._hub = weakref.ref(self)
        if self._ended:
            stream._end(self._error)
        else:
            self._streams.add(stream)
        return stream

    def publish(self, event: E) -> None:
        for stream in list(self._streams):
            stream._offer(event)

    def end(self, error: BaseException | None = None) -> None:
        """End every stream (after what they buffered), raising ``error`` to consumers if given."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        for stream in list(self._streams):
            stream._end(error)
        self._streams.clear()

    @property
    def listening(self) -> bool:
        return len(self._streams) > 0


class EventHub(StreamHub[E]):
    """A hub whose streams receive every event as published."""

    def stream(self) -> EventStream[E]:
        return self.attach(EventStream[E]())


__all__ = ["EventHub", "EventStream", "StreamHub"]
