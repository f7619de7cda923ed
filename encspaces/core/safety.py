"""Safety codes: a short code two members compare to rule out a forked history.

Pure: bytes in, a string out. ``code = BLAKE2b-256(frame(CTX_SAFETY_CODE) ‖ frame(space id) ‖
u64(seq) ‖ frame(h(seq)))`` (the framing of ``crypto.hash_parts``), shown as six groups of four
digits: group i is bytes 4i..4i+3 as a big-endian integer mod 10000 (README, "Safety codes").
"""

from __future__ import annotations

from . import crypto

SAFETY_GROUPS = 6


def safety_code(space: bytes, seq: int, head: bytes) -> str:
    """Six groups of four digits derived from the verified head ``head`` at ``seq`` of ``space``.

    Two members who read the same code at the same seq hold the same history up to it: a relay
    that showed them different logs (a fork) cannot make their codes agree. About 80 bits.
    """
    digest = crypto.hash_parts(crypto.CTX_SAFETY_CODE, space, seq, head)
    groups = [int.from_bytes(digest[4 * i : 4 * i + 4], "big") % 10_000 for i in range(SAFETY_GROUPS)]
    return " ".join(f"{g:04d}" for g in groups)


__all__ = ["SAFETY_GROUPS", "safety_code"]
