"""Safety codes (encspaces.core.safety): the formula README "Safety codes" documents, pinned."""

from __future__ import annotations

import hashlib
import struct

from encspaces.core.safety import safety_code

SPACE = bytes(range(32))
HEAD = b"\x11" * 32


def _readme_formula(space: bytes, seq: int, head: bytes) -> str:
    """BLAKE2b-256(frame("encspaces/v1/safety-code") ‖ frame(space) ‖ u64(seq) ‖ frame(head)), where
    frame is a big-endian u32 length then the bytes; six groups: bytes 4i..4i+3, big-endian, mod 10000."""
    def frame(part: bytes) -> bytes:
        return struct.pack(">I", len(part)) + part

    digest = hashlib.blake2b(frame(b"encspaces/v1/safety-code") + frame(space) + struct.pack(">Q", seq) + frame(head),
                             digest_size=32).digest()
    return " ".join(f"{int.from_bytes(digest[4 * i : 4 * i + 4], 'big') % 10_000:04d}" for i in range(6))


def test_the_code_is_the_documented_formula() -> None:
    for seq in (1, 4, 2**40):
        assert safety_code(SPACE, seq, HEAD) == _readme_formula(SPACE, seq, HEAD)


def test_a_known_code_never_changes() -> None:
    # Members compare codes across versions: a change here makes honest members see a fork.
    assert safety_code(SPACE, 4, HEAD) == "3873 1129 4949 8776 5330 6950"
    assert safety_code(SPACE, 5, HEAD) == "7423 1690 5609 0069 1708 4549"


def test_any_input_changes_the_code() -> None:
    base = safety_code(SPACE, 4, HEAD)
    assert safety_code(SPACE[::-1], 4, HEAD) != base
    assert safety_code(SPACE, 4, b"\x12" + HEAD[1:]) != base
