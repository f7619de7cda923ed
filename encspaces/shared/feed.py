"""Fan-out of change events to any number of async iterators.

Built on the SDK's one stream core (encspaces/streams.py): a stream subscribes the moment it
is created (not at its first ``await``), so no change made between asking for the stream and
starting to iterate is lost; the feed holds streams only weakly, so a stream the application
drops stops buffering events instead of growing forever; and every stream ends, when the
application closes it or when its space closes or fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..streams import EventStream, StreamHub
from .changes import Change

T = TypeVar("T")


class ChangeStream(EventStream[T]):
    """Async iterator over changes, from its creation on, in the order they were applied.

    ``close()``/``aclose()`` or ``async with`` end it; it also ends when its space closes
    (after the buffered changes) or fails (then iterating raises the space's error).
    """

    def __init__(self, select: Callable[[Change], T | None]) -> None:
        super().__init__()
        self._select = select

    def _offer(self, event: Any) -> None:
        if not self._ended:
            selected = self._select(event)
            if selected is not None:
                self._put(selected)


class ChangeFeed(StreamHub[Change]):
    """Where the document publishes changes; streams pick the ones they want."""

    def __init__(self) -> None:
        super().__init__()
        # Called before a stream is added: describing changes costs work on every keystroke,
        # so the document only keeps what it needs for that while someone listens.
        self.on_listen: Callable[[], None] | None = None

    def stream(self, select: Callable[[Change], T | None]) -> ChangeStream[T]:
        if self.on_listen is not None:
            self.on_listen()
        return self.attach(ChangeStream(select))


__all__ = ["ChangeFeed", "ChangeStream"]
