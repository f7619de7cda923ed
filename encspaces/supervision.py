"""Every background task of a space has an owner: an unexpected end fails the space, loudly.

A task that dies with an exception nobody awaits leaves a zombie: not failed, not connected,
not reconnecting, every ``sync()`` waiting forever. ``supervise`` turns such an end into the
space's error (an ``EncspacesError`` as it is, anything else wrapped in ``InternalError``
naming the task, the original chained), and ``guarded`` does the same for a loop callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import EncspacesError, InternalError

T = TypeVar("T", bound="asyncio.Future[Any]")
R = TypeVar("R")

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


class TaskOwner:
    """Owns every background task and timer of one space: supervised while they run, ended on close.

    ``spawn`` starts a task whose unexpected end fails the space (``supervise``); ``later`` runs
    a callback after a delay, guarded the same way. ``close`` cancels the timers and the tasks
    spawned with ``cancel_on_close`` (the others, such as a store write that must not be cut in
    half, are awaited) and returns once every one has ended. Nothing the space starts outlives it.
    (An ``asyncio.TaskGroup`` would need the whole life of the space inside one ``async with``,
    and cancels its siblings when one task fails; a space fails through ``space.error`` instead.)
    """

    def __init__(self, fail: Fail, tag: str = "") -> None:
        self._fail = fail
        self._tag = tag
        self._tasks: dict[asyncio.Task[Any], bool] = {}  # task -> cancel it on close
        self._timers: set[asyncio.TimerHandle | asyncio.Handle] = set()
        self.closed = False

    def spawn(self, coro: Coroutine[Any, Any, R], what: str, *, cancel_on_close: bool = True) -> asyncio.Task[R]:
        task = supervise(asyncio.create_task(coro, name=f"encspaces-{self._tag}"), what, self._fail)
        self._tasks[task] = cancel_on_close
        task.add_done_callback(lambda done: self._tasks.pop(done, None))
        return task

    def later(self, delay: float, callback: Callable[[], None], what: str) -> asyncio.TimerHandle | asyncio.Handle:
        """``callback`` after ``delay`` seconds (at once, on the next turn of the loop, when 0);
        ``cancel()`` the handle to drop it."""
        loop = asyncio.get_running_loop()
        run = guarded(what, callback, self._fail)
        handle: asyncio.TimerHandle | asyncio.Handle

        def fire() -> None:
            self._timers.discard(handle)
            run()

        handle = loop.call_soon(fire) if delay <= 0 else loop.call_later(delay, fire)
        self._timers.add(handle)
        return handle

    def cancel(self, handle: asyncio.TimerHandle | asyncio.Handle | None) -> None:
        """Drop a callback ``later`` scheduled (None, or one that already ran: nothing to do)."""
        if handle is not None:
            handle.cancel()
            self._timers.discard(handle)

    async def close(self) -> None:
        """Cancel the timers and the cancellable tasks, then wait until every task has ended."""
        self.closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                if self._tasks.get(task) and task is not asyncio.current_task():
                    task.cancel()
            await asyncio.gather(*(t for t in tasks if t is not asyncio.current_task()), return_exceptions=True)
            for task in tasks:
                self._tasks.pop(task, None)


__all__ = ["TaskOwner", "as_failure", "guarded", "supervise"]
