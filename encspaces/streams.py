"""Async streams of events that an application iterates: ``async for change in ...``.

A stream subscribes the moment it is created, so nothing published between asking for it
and the first ``await`` is lost; its hub holds it weakly, so a stream the application drops
stops buffering instead of growing forever.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Generic, TypeVar

T = TypeVar("T")


class EventStream(Generic[T]):
    def __init__(self, hub: EventHub[T]) -> None:
        self.queue: asyncio.Queue[T] = asyncio.Queue()
        self._hub = hub

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        return await self.queue.get()

    def close(self) -> None:
        self._hub.streams.discard(self)


class EventHub(Generic[T]):
    def __init__(self) -> None:
        self.streams: weakref.WeakSet[EventStream[T]] = weakref.WeakSet()

    def stream(self) -> EventStream[T]:
        stream = EventStream(self)
        self.streams.add(stream)
        return stream

    def publish(self, event: T) -> None:
        for stream in list(self.streams):
            stream.queue.put_nowait(event)
