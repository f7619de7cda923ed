"""Every background task of a space has an owner: an unexpected end fails the space, loudly.

A task that dies with an exception nobody awaits leaves a zombie: not failed, not connected,
not reconnecting, every ``sync()`` waiting forever. ``supervise`` turns such an end into the
space's error (an ``EncspacesError`` as it is, anything else wrapped in ``InternalError``
naming the task, the original chained), and ``guarded`` does the same for a loop callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import EncspacesError, InternalError

T = TypeVar("T", bound="asyncio.Future[Any]")

Fail = Callable[[EncspacesError], None]


def as_failure(what: str, exc: BaseException) -> EncspacesError:
    """``exc`` as the error a space fails with: itself if it is ours, else an InternalError about ``what``."""
    if isinstance(exc, EncspacesError):
        return exc
    error = InternalError(f"{what} failed unexpectedly: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def supervise(task: T, what: str, fail: Fail) -> T:
    """Fail through ``fail`` if ``task`` ends with an exception (cancellation is a normal end)."""

    def done(finished: asyncio.Future[Any]) -> None:
        if finished.cancelled():
            return
        exc = finished.exception()
        if exc is not None:
            fail(as_failure(what, exc))

    task.add_done_callback(done)
    return task


def guarded(what: str, callback: Callable[[], None], fail: Fail) -> Callable[[], None]:
    """``callback`` for ``loop.call_soon``/``call_later``: an exception fails instead of reaching the loop."""

    def run() -> None:
        try:
            callback()
        except Exception as exc:  # a callback has no caller: the space is where it surfaces
            fail(as_failure(what, exc))

    return run


__all__ = ["as_failure", "guarded", "supervise"]
