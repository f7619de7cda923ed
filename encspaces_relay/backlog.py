"""Admission control for submissions: the relay takes in no more than it can commit.

A connection's session reads a Submit, verifies every entry's signature (~80 µs each) and
queues it for its space's committer. A commit needs several passes of the event loop (queue,
the store's writer thread, its completion, the fan-out), and every pass also reads and
verifies the next message of every connection with data waiting. With thousands of busy
connections, the passes grow long, the verified backlog grows with them, and commits starve:
the relay stalls (1,000 spaces × 3 members, bench/README.md "Admission control").

So the relay holds a budget of entries verified but not yet answered (committed or refused),
in all spaces together. A session takes its share *before* verifying a Submit, and the
committer gives it back when it answers the submission. While the budget is spent, sessions
wait in line (first come, first served) without reading their connection: websockets stops
reading the socket after a few messages, TCP pushes back on the writers, and the event loop's
passes are left to the commits that free the budget.

No deadlock: the budget is given back by the committers, which never wait for a session.
A waiting connection cannot answer pings (its pong is behind its unread messages), so the
keepalive does not count a pong missed while the connection waited here (``waited_since``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Hashable

from .metrics import RelayMetrics


class Backlog:
    """A first-come, first-served budget of ``limit`` entries verified and not yet answered."""

    def __init__(self, limit: int, metrics: RelayMetrics | None = None) -> None:
        if limit < 1:
            raise ValueError("the backlog limit must be at least 1")
        self.limit = limit
        self.pending = 0
        self._metrics = metrics
        self._line: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        # Connections that waited here: inf while waiting, else when their last wait ended.
        self._waited: dict[Hashable, float] = {}

    @property
    def waiting(self) -> int:
        """Sessions waiting in line (a level for /metrics)."""
        return len(self._line)

    def try_take(self, entries: int) -> int | None:
        """Room for a submission of ``entries`` entries if there is some now and nobody waits in
        line: its weight to ``give`` back; else None (and nothing taken)."""
        weight = self._weight(entries)
        if self._line or self.pending + weight > self.limit:
            return None
        self.pending += weight
        return weight

    async def take(self, entries: int, who: Hashable) -> int:
        """Wait for room for a submission of ``entries`` entries; the weight to ``give`` back.

        A submission larger than the whole budget takes all of it (it waits for an empty backlog).
        """
        taken = self.try_take(entries)
        if taken is not None:
            return taken
        weight = self._weight(entries)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        place = (weight, turn)
        self._line.append(place)
        self._waited[who] = math.inf
        started = time.monotonic()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give(weight)  # given its share just as it was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._line.remove(place)
                self._admit()  # those behind it may fit now
            raise
        finally:
            ended = time.monotonic()
            self._waited[who] = ended
            if self._metrics is not None:
                self._metrics.backlog_waits.observe(ended - started)
        return weight

    def _weight(self, entries: int) -> int:
        return min(max(entries, 1), self.limit)

    def give(self, weight: int) -> None:
        """A submission taken in with ``take`` was answered: its share goes to those in line."""
        self.pending -= weight
        self._admit()

    def _admit(self) -> None:
        while self._line:
            weight, turn = self._line[0]
            if turn.done():  # its session was cancelled while waiting (and removes nothing)
                self._line.popleft()
                continue
            if self.pending + weight > self.limit:
                return
            self._line.popleft()
            self.pending += weight
            turn.set_result(None)

    def waited_since(self, who: Hashable, since: float) -> bool:
        """Whether ``who`` waited in line at any time after ``since`` (``time.monotonic()``)."""
        return self._waited.get(who, -math.inf) >= since

    def forget(self, who: Hashable) -> None:
        """The connection is gone."""
        self._waited.pop(who, None)
