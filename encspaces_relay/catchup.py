"""Bring a new connection from its seq to the live stream without a gap or a duplicate.

The bulk is read from the store and sent with backpressure (``await send``) *without* the
room lock, so a long catch-up never delays commits. Once the connection has reached the
durable head, what was committed meanwhile (usually nothing, at most a batch or two) is sent
under the lock, synchronously, and the connection joins the subscribers in the same
critical section: the committer holds that lock while it
commits and fans out, so every entry reaches the connection exactly once, in order.
"""

from __future__ import annotations

from encspaces.core.entry import STRIP_PREFIX, strip_prefix
from encspaces.core.log_state import anchor_of

from .anchors import catch_up_to, send_to_anchor
from .frames import split_frames
from .peer import Peer
from .refusals import internal
from .room import Room

FIRST_STRIPPED_FRAME = 128  # entries in the first frame of a catch-up that strips bodies


async def catch_up_and_subscribe(room: Room, peer: Peer, since_seq: int, *, fast: bool = False,
                                 anchored: bool = False) -> None:
    """Send entries ``since_seq + 1 ..`` in bounded frames, then subscribe ``peer`` to the room.

    A client ahead of the relay (``since_seq`` past its log: a rollback the client detects
    from the Welcome) gets nothing to catch up and stays connected. A ``fast`` client gets the
    encrypted bodies up to the newest snapshot's seq stripped: the snapshot, sent later in the
    same catch-up, holds what they would have built. Only a snapshot that members other than
    its author attested (and nobody disputed, ``LogState.agreed_snapshot``) is started from:
    the client checks that, and anything else would leave it without the bodies it needs. A new
    device that says it can (``anchored``) starts at the snapshot's anchor when every attestation
    stated the log state there (encspaces_relay/anchors.py).
    """
    snapshot = room.state.agreed_snapshot()
    strip_through = 0
    sent = since_seq
    if fast and snapshot is not None and snapshot[0] <= room.durable_seq and since_seq < snapshot[1]:
        strip_through = snapshot[1]
        record = room.state.snapshots[snapshot[0]]
        anchor = anchor_of(record.base)
        if anchored and since_seq == 0 and anchor and record.anchor is not None \
                and record.anchored(room.state.policy.snapshot_attesters):
            prepared = await catch_up_to(room, anchor, record.anchor)
            if prepared is not None:
                await send_to_anchor(room, peer, prepared[0])
                await peer.ws.send(room.host.encode_anchor_state(room.space, anchor, prepared[1]))
                sent = anchor
    # With backpressure until caught up; if commits outpace the client this goes on while it
    # keeps reading, which costs the relay nothing but reads.
    while room.durable_seq > sent:
        sent = await _send_range(room, peer, sent + 1, room.durable_seq, wait=True, strip_through=strip_through)
    async with room.lock:
        if room.durable_seq > sent:
            await _send_range(room, peer, sent + 1, room.durable_seq, wait=False, strip_through=strip_through)
        room.subscribe(peer)


async def _send_range(room: Room, peer: Peer, first: int, last: int, *, wait: bool, strip_through: int = 0) -> int:
    """Send entries ``first..last``, each frame with a head signed at its last seq; returns ``last``.

    ``wait`` sends with backpressure; without it (under the room lock) frames are queued at
    once and a peer that cannot take them is closed as too slow.
    """
    config = room.host.config
    seq = first
    frames = 0
    while seq <= last:
        chunk_last = min(last, seq + config.max_entries_per_frame - 1)
        if seq <= strip_through:  # stripped entries: only their first bytes are read
            # Small frames first, doubling: the device verifies one while the next is read.
            chunk_last = min(chunk_last, seq + (FIRST_STRIPPED_FRAME << frames) - 1)
            raws = await _read_stripped(room, seq, min(chunk_last, strip_through))
            if seq + len(raws) - 1 == strip_through < chunk_last:  # the rest of the frame, whole
                raws += await room.store.read_entries(room.space, strip_through + 1, chunk_last,
                                                      max(1, config.max_frame - sum(len(raw) for raw in raws)))
        else:
            raws = await room.store.read_entries(room.space, seq, chunk_last, config.max_frame)
        if not raws:
            raise internal(f"the relay's store has no entry at seq {seq} (durable through {room.durable_seq})")
        for start, end in split_frames(raws, config.max_frame, config.max_entries_per_frame):
            head = room.signed_head(seq + end - 1)
            for frame in room.host.frames_for_entries(room.space, seq + start, raws[start:end], head):
                if wait:
                    await peer.ws.send(frame)
                else:
                    peer.write_now(frame)
                frames += 1
        seq += len(raws)
    return last


async def _read_stripped(room: Room, first: int, last: int) -> list[bytes]:
    """Entries ``first..last`` with their encrypted bodies dropped (at most max_entries_per_frame of them)."""
    stripped: list[bytes | None] = []
    for prefix, size in await room.store.read_prefixes(room.space, first, last, STRIP_PREFIX):
        stripped.append(strip_prefix(prefix, size))
    whole = {first + i for i, raw in enumerate(stripped) if raw is None}  # control entries: sent whole
    for seq in sorted(whole):
        (raw,) = await room.store.read_entries(room.space, seq, seq, room.host.config.max_frame)
        stripped[seq - first] = raw
    return [raw for raw in stripped if raw is not None]

