"""How many entries fit in one Entries frame.

Clients refuse any websocket message over the frame limit, so the relay must never sequence
an entry it cannot deliver, and must cut every run of entries (a catch-up, a large group
commit) into frames that each stay under the limit with their own signed head.
"""

from __future__ import annotations

from collections.abc import Sequence

# Everything in an Entries frame but the entries: the map keys, the first seq (at most a
# uint64) and the signed head (~160 bytes; up to ~420 with the longest batch seal, 8 proof
# hashes). Measured at about 200 bytes, 455 at most (tests/relay/test_relay_units.py).
FRAME_OVERHEAD = 512
# msgpack's largest bin header (bin32), paid by every entry in the array.
ENTRY_OVERHEAD = 5


def max_entry_size(max_frame: int) -> int:
    """The largest entry the relay accepts: one that fits alone in an Entries frame."""
    return max_frame - FRAME_OVERHEAD - ENTRY_OVERHEAD


def split_frames(entries: Sequence[bytes], max_frame: int, max_entries: int) -> list[tuple[int, int]]:
    """Cut ``entries`` into ``[start, end)`` index ranges that each fit in one frame.

    Every entry must be at most ``max_entry_size(max_frame)`` bytes (checked on submission).
    """
    budget = max_frame - FRAME_OVERHEAD
    ranges: list[tuple[int, int]] = []
    start = 0
    size = 0
    for i, raw in enumerate(entries):
        cost = len(raw) + ENTRY_OVERHEAD
        if cost > budget:
            raise ValueError(f"entry of {len(raw)} bytes cannot fit in a frame of {max_frame} bytes")
        if i > start and (size + cost > budget or i - start >= max_entries):
            ranges.append((start, i))
            start, size = i, 0
        size += cost
    if start < len(entries):
        ranges.append((start, len(entries)))
    return ranges
