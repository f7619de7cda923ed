"""When a batch of local edits leaves: at once after a pause, after a window that grows in a long burst.

Every entry has a fixed cost whatever it holds, on this device and on every reader: a
signature and its checks, sealing and opening, a store write, a frame each way, a document
update applied (~1 ms of CPU for a writer and a reader in one process; bench/README.md,
"Replay: the batch window, and where the rest goes"). Keystrokes typed by a person are tens
of milliseconds apart: each one is the first edit after a pause and leaves on the next turn of
the event loop, whatever the window. Only a burst (edits closer together than ``base``: a
program, a replayed trace, a large paste split into many transactions) shares entries, one per
window. A short burst keeps the ``base`` window; one that goes on doubles it at each batch, up
to ``longest``, so a burst of seconds makes a few dozen entries, not hundreds. The first edit
after a pause (``base`` without a batch leaving) goes at once again and the window starts over
from ``base``.

Pure state: the caller passes the event loop's time and arms its own timer.
"""

from __future__ import annotations


class BatchWindow:
    """The delay before the batch a local edit opens is turned into an entry."""

    def __init__(self, base: float, longest: float) -> None:
        self.base = base
        self.longest = max(base, longest)  # a longest below the base window only disables growth
        self.window = base  # what the next batch opened in a burst waits
        self._last_flush = float("-inf")  # when the previous batch left

    def opened(self, now: float) -> float:
        """The first edit of a new batch was made at ``now``: how long the batch collects edits (0: leave at once)."""
        if now - self._last_flush >= self.base:
            self.window = self.base  # a pause: the edit leaves at once, a later burst starts small
            return 0.0
        delay = self.window
        self.window = min(self.window * 2, self.longest)
        return delay

    def flushed(self, now: float) -> None:
        """A batch left at ``now`` (its timer, its size, ``sync``, a checkpoint or ``close``)."""
        self._last_flush = now


__all__ = ["BatchWindow"]
