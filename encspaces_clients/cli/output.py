"""What the commands print besides their results: notes on stderr, short ids, times, progress bars."""

from __future__ import annotations

import contextlib
import datetime
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from encspaces.core.identity import member_id

from ..terminal import printable

PROGRESS_THRESHOLD = 1 << 20  # bytes: smaller transfers are quick enough to need no bar

ProgressCallback = Callable[[int, int | None], None]


def warn(message: str) -> None:
    """A note on stderr; it may quote what members wrote (names), so no control character goes out."""
    print(printable(message, lines=True), file=sys.stderr)


def short(key: bytes | str) -> str:
    text = key if isinstance(key, str) else member_id(key)
    return text[:10]


OUT_OF_RANGE = "(time out of range)"  # as wide as a time: the columns of `log` stay


def time_text(ms: int) -> str:
    """A time in UTC. An entry's time is its author's clock: a member's own client may put any
    int64 there, past the year 9999 datetime can show, and one such entry must not stop ``log``."""
    try:
        moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    except (OverflowError, ValueError, OSError):
        return OUT_OF_RANGE
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _no_progress(done: int, total: int | None = None) -> None:
    pass


@contextlib.contextmanager
def progress_bar(label: str, total: int | None, stream: TextIO, unit: str = "bytes") -> Iterator[ProgressCallback]:
    """A progress bar on a terminal for long transfers (``unit`` bytes) or catch-ups (``unit``
    entries); yields a callback (done, total) -> None.

    The bar is drawn with rich, which comes with the ``editor`` extra (textual needs it); without
    it there is no bar, and the command does the same work.
    """
    if (unit == "bytes" and total is not None and total < PROGRESS_THRESHOLD) or not stream.isatty():
        yield _no_progress
        return
    try:
        from rich.console import Console  # only for long transfers on a terminal
        from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TransferSpeedColumn
    except ModuleNotFoundError:  # installed without the editor extra
        yield _no_progress
        return

    columns = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),)
    with Progress("[progress.description]{task.description}", BarColumn(), *columns,
                  console=Console(file=stream), transient=True) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, new_total: int | None = None) -> None:
            bar.update(task, completed=done, total=new_total if new_total is not None else total)

        yield update
