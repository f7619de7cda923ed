"""The cyclic garbage collector's settings for the relay daemon.

A relay holds a large, slowly changing heap (every loaded room, every connection: ~350 tracked
objects per space of three members) and allocates many short-lived objects per message. With
CPython's defaults (a young collection every 700 allocations) objects that live a few
milliseconds, a frame waiting for its group commit or a message in a connection's queue, are
promoted and make the oldest generation grow by more than a quarter every few seconds: then
the collector walks the whole heap. At 1,000 spaces that stopped every room for 0.3-0.9 s,
twice in 15 s of typing (bench/README.md, "The relay's garbage collector"). With a young
generation of 20,000 objects, what a message allocates dies before it is ever examined, the
oldest generation grows only with the rooms and connections themselves, and the objects of
start-up (imports, configuration) are set aside for good (``gc.freeze``).
"""

from __future__ import annotations

import gc

YOUNG = 20_000  # tracked allocations between young collections (CPython's default: 700)
MIDDLE = 10  # young collections between middle ones (the default)
OLD = 10  # middle collections between considering a full one (the default)


def tune_collector() -> None:
    """For the daemon's process only, once its modules are imported: the library leaves an
    embedding application's collector alone."""
    gc.collect()
    gc.freeze()  # start-up's objects: never garbage, never walked again
    gc.set_threshold(YOUNG, MIDDLE, OLD)
