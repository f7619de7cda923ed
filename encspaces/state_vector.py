"""Yjs state vectors (each client's clock) and the lib0 variable-length integers they and the
delete sets of Yjs updates (v1) are written in, for what pycrdt does not read for us."""

from __future__ import annotations


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    """A lib0 variable-length unsigned integer at ``pos``, and the position after it."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _put_varuint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def read_state(state: bytes) -> dict[int, int]:
    """A state vector (as ``pycrdt.Doc.get_state`` writes it): each client's clock."""
    clocks: dict[int, int] = {}
    count, pos = read_varuint(state, 0)
    for _ in range(count):
        client, pos = read_varuint(state, pos)
        clocks[client], pos = read_varuint(state, pos)
    return clocks


def write_state(clocks: dict[int, int]) -> bytes:
    """The state vector holding ``clocks``."""
    out = bytearray()
    _put_varuint(out, len(clocks))
    for client, clock in clocks.items():
        _put_varuint(out, client)
        _put_varuint(out, clock)
    return bytes(out)


def read_deletions(data: bytes, pos: int) -> tuple[list[tuple[int, int, int]], int]:
    """A delete set at ``pos`` (the end of a v1 update): its ranges as (client, clock, length),
    and the position after it."""
    ranges: list[tuple[int, int, int]] = []
    clients, pos = read_varuint(data, pos)
    for _ in range(clients):
        client, pos = read_varuint(data, pos)
        count, pos = read_varuint(data, pos)
        for _ in range(count):
            clock, pos = read_varuint(data, pos)
            length, pos = read_varuint(data, pos)
            ranges.append((client, clock, length))
    return ranges, pos


__all__ = ["read_deletions", "read_state", "read_varuint", "write_state"]
