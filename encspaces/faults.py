"""Crash points for tests: kill -9 this process at a named step of the write pipeline.

Set ``ENCSPACES_CRASH_AT=<step>`` (or ``<step>:<n>`` for the n-th time the step is reached)
before the process starts. When it is unset, ``ARMED`` is False and every call site is a
single test of a constant (``if faults.ARMED: faults.reached(...)``), so production pays
nothing. Steps (encspaces/space.py): ``edit`` (a local edit entered the batch), ``built``
(an entry was signed), ``outbox`` (the outbox write committed), ``sent`` (a submission was
handed to the socket), ``acked`` (the relay acknowledged it), ``logged`` (the verified log
holding it committed). And, outside the write pipeline (not in ``STEPS``): ``downloaded``
(encspaces/files.py: a downloaded chunk was written to the ``.part`` file) and ``anchored``
(encspaces/space.py: a new device installed the log state at an anchor, nothing stored yet).
"""

from __future__ import annotations

import os
import signal

ENV = "ENCSPACES_CRASH_AT"
STEPS = ("edit", "built", "outbox", "sent", "acked", "logged")

_spec = os.environ.get(ENV, "")
_step, _, _count = _spec.partition(":")
ARMED: bool = bool(_step)
_remaining = int(_count or "1")


def reached(step: str) -> None:
    """Kill this process with SIGKILL the n-th time ``step`` is reached, if armed for it."""
    global _remaining
    if step != _step:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
