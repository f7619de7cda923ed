"""A data entry's plaintext read as its space's genesis says: a bare Yjs update, or (spaces
that bind client ids, encspaces.core.client_ids) the author's session nonce, then the update.

The space and its history views read data entries through ``read_data``, so both reject the
same entries for the same reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pycrdt

from .core.client_ids import ClientOwners, data_plaintext, split_plaintext
from .core.rejections import RejectionKind
from .state_vector import read_varuint, write_state

_MAX_CLOCK = 0xFFFF_FFFF  # Yrs counts clocks in 32 bits


@dataclass(frozen=True)
class Unusable:
    """Why a data entry's plaintext is not applied (reported as a ``RejectedEntry``)."""

    kind: RejectionKind
    reason: str


def foreign_items(update: bytes, client: int) -> tuple[int, int] | None:
    """Whether ``update`` holds items under any client id but ``client`` (its deletions aside):
    None if not, else how many other client ids, and the first of them.

    A v1 update begins with its number of clients, then the first client's number of structs
    and id, which decides the usual case (no item, or one writer) in three integers. Anything
    else is decided by Yrs, which also decodes the whole update (so garbage is an invalid
    update, not a foreign one): it cuts from an update every item a state vector covers, and
    against one where ``client`` is at the largest clock only other clients' items are left.
    (pycrdt's ``get_state`` of an update is no help: it leaves out every client whose items do
    not start at clock 0.) Raises ValueError when the bytes are not an update.
    """
    try:
        clients, pos = read_varuint(update, 0)
        if clients == 0:
            return None  # deletions only (whether they decode is for applying to say)
        if clients == 1:
            _, pos = read_varuint(update, pos)  # the client's number of structs, then its id
            if read_varuint(update, pos)[0] == client:
                return None
    except IndexError:
        pass  # (Yrs says what is wrong with it)
    try:
        rest = pycrdt.get_update(update, write_state({client: _MAX_CLOCK}))
    except BaseException as exc:  # pycrdt raises pyo3 PanicException (a BaseException) on garbage
        if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
            raise
        raise ValueError(f"not a valid document update: {exc}") from exc
    others, pos = read_varuint(rest, 0)
    if not others:
        return None  # (our client listed twice: not how Yjs writes one, but all ours)
    _, pos = read_varuint(rest, pos)
    return others, read_varuint(rest, pos)[0]


def _client_at(update: bytes) -> int | None:
    """Where a v1 update that holds one client's structs writes that client's id; None for any
    other header (no structs, several clients, or too short to tell)."""
    if len(update) < 3 or update[0] != 1:
        return None
    pos = 1
    while update[pos] & 0x80:  # the client's number of structs (a varint), then its id
        pos += 1
        if pos >= len(update) - 1:
            return None
    return pos + 1


def read_data(plaintext: bytes, bound: bool, owners: ClientOwners, author: bytes) -> bytes | Unusable:
    """The update a data entry by ``author`` carries, or why it may not be applied.

    Most entries come from a session this device already read an entry of: when the update
    holds one client's structs and writes its id in the very bytes the session's checked update
    wrote the expected id in (``ClientOwners.written``), that is the expected id, and it belongs
    to the author already; nothing else is read (~10 µs less a received entry, in a process of
    many spaces, than reading the header's integers: bench/README.md, h15-v4-cost).
    """
    if not bound:
        return plaintext
    parts = split_plaintext(plaintext)
    if parts is None:
        return Unusable("invalid_update", f"{len(plaintext)} bytes: shorter than a client nonce and an update")
    nonce, update = parts
    known = owners.written.get((author, nonce))
    if known is not None:
        at = _client_at(update)
        if at is not None and update.startswith(known[1], at) and owners.first.get(known[0]) == author:
            return update
    expected = owners.expected(author, nonce)
    try:
        foreign = foreign_items(update, expected)
    except ValueError as exc:
        return Unusable("invalid_update", str(exc))
    if foreign is not None:
        count, first = foreign
        others = f" and {count - 1} other{'s' if count > 2 else ''}" if count > 1 else ""
        return Unusable("foreign_client", f"items under Yjs client id {first}{others}, expected only {expected} "
                                          "(derived from the author's key and the entry's nonce)")
    reason = owners.claim(expected, author)
    if reason is not None:
        return Unusable("foreign_client", reason)
    at = _client_at(update)
    if at is not None:
        try:
            client, end = read_varuint(update, at)
        except IndexError:
            return update
        if client == expected:
            owners.written[author, nonce] = (expected, update[at:end])
    return update


def write_data(update: bytes, bound: bool, nonce: bytes) -> bytes:
    """A data entry's plaintext for ``update``, written under this session's ``nonce``."""
    return data_plaintext(nonce, update) if bound else update


__all__ = ["Unusable", "foreign_items", "read_data", "write_data"]
