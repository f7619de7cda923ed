"""A new device's catch-up to an anchor: the log before it as digests, then the log state there.

A device that starts from an agreed snapshot needs the log's rules state (members, keys,
counters) at the snapshot's base, not every older entry. Control entries decide membership, so
they are sent whole and the device checks each from the genesis on; every other entry up to the
snapshot's *anchor* (the last multiple of ``ANCHOR_GRID`` at or before its base) is sent as its
32-byte digest, which is all the chain and the Merkle tree need; then the ``LogState.export`` at
the anchor, whose digest the snapshot's attesters stated and the rules checked
(docs/PROTOCOL.md section 14, "Anchors"). The stretch from the anchor to the base follows as
stripped entries, as in any fast catch-up.

The relay rebuilds that state from its store once per anchor (the room keeps the newest), from
each entry's first bytes (bodies of control entries whole) with the rules' ``apply`` (every
entry was checked when it was sequenced), going on from the anchor it kept before (so each new
anchor costs the entries since the last; only the first after the room loads reads the whole
log), and keeps the catch-up's items beside it: every new device that starts there is then sent
them without a read or a decode.
"""

from __future__ import annotations

import logging

from encspaces.core.entry import STRIP_PREFIX, Entry, Kind, strip_prefix
from encspaces.core.log_state import LogState

from .frames import split_frames
from .peer import Peer
from .room import Room

log = logging.getLogger(__name__)

_CHUNK = 1024  # entries read from the store at a time
FIRST_FRAME = 128  # entries in the first frame: the device checks one while the next is read (then doubling)


async def catch_up_to(room: Room, anchor: int, digest: bytes) -> tuple[list[bytes], bytes] | None:
    """The items of seqs 1..``anchor`` (control entries but attestations whole, every other entry as
    its digest) and ``LogState.export`` there, if the log's state there hashes to ``digest`` (else
    None, logged: the caller sends a plain fast catch-up)."""
    cached = room.anchor_catch_up
    if cached is not None and cached[0] == anchor:
        return cached[1], cached[2]
    if cached is not None and cached[0] < anchor:
        # From the last anchor on: each new anchor costs the entries since the one before it.
        # (A copy: a device may still be sent the cached list.)
        done, items = cached[0], list(cached[1])
        state = LogState.restore(room.space, cached[2], room.state.heads[: done + 1])
    else:
        done, items, state = 0, [], LogState(room.space)
    seq = done + 1
    while seq <= anchor:
        last = min(anchor, seq + _CHUNK - 1)
        entries = await _read_headers(room, seq, last)
        if not entries:  # (the store lost entries the log holds: never loop on it)
            log.error("%s: the store holds no entry at seq %d, below the anchor at seq %d", room.label, seq, anchor)
            return None
        for entry in entries:
            state.apply(entry, seq, room.state.heads[seq])
            kind = entry.header.kind
            items.append(entry.digest() if kind.is_encrypted or kind is Kind.ATTEST else entry.raw)
            seq += 1
    if state.anchors.get(anchor) != digest:
        log.error("%s: the log state rebuilt at seq %d does not hash to the digest the log keeps there; "
                  "no new device starts at that anchor", room.label, anchor)
        return None
    exported = state.export()
    room.anchor_catch_up = (anchor, items, exported)
    return items, exported


async def send_to_anchor(room: Room, peer: Peer, items: list[bytes]) -> None:
    """Send ``items`` (seqs 1.., from ``catch_up_to``) in frames each under a head signed at its last
    seq, the first small so the device checks one while the next is on its way."""
    config = room.host.config
    seq, frames = 1, 0
    while seq <= len(items):
        chunk = items[seq - 1 : seq - 1 + min(config.max_entries_per_frame, FIRST_FRAME << frames)]
        for start, end in split_frames(chunk, config.max_frame, config.max_entries_per_frame):
            head = room.signed_head(seq + end - 1)
            for frame in room.host.frames_for_entries(room.space, seq + start, chunk[start:end], head):
                await peer.ws.send(frame)
            frames += 1
        seq += len(chunk)


async def _read_headers(room: Room, first: int, last: int) -> list[Entry]:
    """Entries ``first..last`` parsed, encrypted ones without their bodies (only their first bytes read)."""
    raws: list[bytes | None] = []
    for prefix, size in await room.store.read_prefixes(room.space, first, last, STRIP_PREFIX):
        raws.append(strip_prefix(prefix, size))
    for i, raw in enumerate(raws):
        if raw is None:  # a control entry longer than the prefix: read whole
            (raws[i],) = await room.store.read_entries(room.space, first + i, first + i, room.host.config.max_frame)
    return [Entry.decode(raw) for raw in raws if raw is not None]
