"""A space that several relays sequence, on one shared store (PostgreSQL, docs/cluster.md).

Each relay keeps its loaded spaces in memory (encspaces_relay/room.py); the store decides which commit
extends a head (``RelayStore.append`` raises ``HeadMovedError`` for the one that lost, with
nothing stored). Two things bring a room back in line with the store:

- ``after_conflict``: a commit lost. Memory is ahead of the store (the batch was applied), so
  the space is reloaded from the store, what the other relay committed is delivered to this
  relay's subscribers, and the batch is sequenced again on top, as if it arrived now: the
  shared rules decide again, and entries the other relay already stored (a client that sent
  to both) are answered with their seq. After ``COMMIT_ATTEMPTS`` lost commits in a row the
  submitters get the non-fatal ``contended`` and resubmit.
- ``refresh``: outside of a commit, take in and deliver what other relays committed (the
  server calls it when a connection opens a loaded room, the bus when it may have missed
  announcements).
- ``take_announced``: another relay announced a commit on the bus (encspaces_relay/bus.py): apply its
  entries as they came if they continue the log and chain to the relay-signed head, else read
  the store.

Entries read back from the store are checked as a load checks them (contiguous seqs,
digests, chain heads); their rules were checked by the relay that sequenced them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from encspaces.core.codes import RefusalCode
from encspaces.core.entry import Entry
from encspaces.core.head import SignedHead, next_head
from encspaces.errors import EncspacesError, HeadMovedError, StoreError

from .refusals import Refusal, internal
from .store import EntryRow, replay

if TYPE_CHECKING:
    from .room import Room, Submission

log = logging.getLogger(__name__)

# Commits of one batch that other relays beat, before its submitters are told to resubmit.
COMMIT_ATTEMPTS = 3


async def after_conflict(
    room: Room, batch: list[Submission], exc: HeadMovedError, attempt: int, members_before: set[bytes]
) -> None:
    """Reload, deliver the other relay's entries, sequence ``batch`` again; answers every submission."""
    log.info("%s: %s; reloading and sequencing %d submissions again", room.label, exc, len(batch))
    room.host.metrics.lost_commits.inc()
    try:
        loaded = await room.store.load_space(room.space)
        if loaded is None:
            raise StoreError(f"{room.label} is no longer in the store")
        found = await room.store.tail(room.space, room.durable_seq)
        rows = [] if found is None else [row for row in found[0] if row.seq <= loaded.state.seq]
    except Exception as error:
        log.exception("%s: reloading after another relay's commit failed", room.label)
        room._fail(f"the relay could not reload the space ({type(error).__name__}): reconnect and resubmit")
        for submission in batch:
            room._answer(submission, internal("the relay could not sequence this submission: resubmit"))
        return
    room.state = loaded.state
    await _deliver(room, rows, loaded.signed_head, members_before)
    if attempt + 1 >= COMMIT_ATTEMPTS:
        for submission in batch:
            room._answer(submission, Refusal(RefusalCode.CONTENDED, f"other relays committed to {room.label} first "
                                                                    f"{attempt + 1} times in a row: resubmit"))
        return
    await room._commit(batch, attempt + 1)


async def refresh(room: Room) -> int:
    """Take in and deliver what other relays committed to the room's space; how many entries."""
    if not room.store.shared:
        return 0
    async with room.lock:
        if room.failed:
            return 0
        return await _take_stored(room)


async def take_announced(room: Room, first_seq: int, entries: list[bytes], head: SignedHead, relay_key: bytes) -> int:
    """Take in a commit another relay announced on the bus (encspaces_relay/bus.py); how many entries.

    Applied from the announcement itself only if it continues the room's log (``first_seq`` at
    most ``durable_seq + 1``), its head verifies under the cluster's relay key and the entries
    chain to that head; otherwise (a gap, a head-only announcement, anything odd) the store is
    read instead, which has every committed entry.
    """
    async with room.lock:
        if room.failed or head.seq <= room.durable_seq:
            return 0  # failed: reloaded by the next connection; or already known (the store, a lost commit)
        state = room.state
        start = state.seq + 1
        last = first_seq + len(entries) - 1
        if not entries or first_seq > start or last != head.seq:
            return await _take_stored(room)
        try:
            head.check(relay_key, room.space)
        except EncspacesError as exc:
            log.warning("%s: an announced head does not verify (%s); reading the store", room.label, exc)
            return await _take_stored(room)
        members_before = set(state.device_owner)
        rows: list[EntryRow] = []
        state.begin()
        try:
            for seq, raw in enumerate(entries[start - first_seq:], start):
                entry = Entry.decode(raw)
                digest = entry.digest()
                chained = next_head(state.head, seq, digest)
                state.apply(entry, seq, chained)
                rows.append(EntryRow(seq, entry.header.author, entry.header.author_seq, digest, chained, raw))
            if state.head != head.head:
                raise StoreError(f"announced entries {start}..{last} do not chain to the announced head")
        except EncspacesError as exc:
            state.rollback()
            log.warning("%s: %s; reading the store", room.label, exc)
            return await _take_stored(room)
        except BaseException:
            state.rollback()
            raise
        state.commit()
        await _deliver(room, rows, head, members_before)
        return len(rows)


async def _take_stored(room: Room) -> int:
    """Under the room's lock: read what the store has beyond ``durable_seq``, apply and deliver it."""
    found = await room.store.tail(room.space, room.durable_seq)
    if found is None or not found[0]:
        return 0
    rows, latest = found
    members_before = set(room.state.device_owner)
    where = f"{room.store.where}, {room.label}"
    room.state.begin()
    try:
        for row in rows:
            replay(room.state, row.seq, row.digest, row.head, row.raw, where)
    except BaseException:
        room.state.rollback()
        raise
    room.state.commit()
    await _deliver(room, rows, latest, members_before)
    return len(rows)


async def _deliver(room: Room, rows: list[EntryRow], latest: SignedHead, members_before: set[bytes]) -> None:
    """Entries another relay committed are in ``room.state``: make them durable here and fan them out."""
    state = room.state
    room.durable_seq = state.seq
    room.latest_head = latest if (latest.seq, latest.head) == (state.seq, state.head) else room._sign(state.seq)
    if not rows:
        return
    room.durable_grew(rows)
    if room.invitees:
        room.close_invitees()  # before the fan-out: nothing after a revocation reaches them
    for first, entries, head in await room._frames(rows):
        for frame in room.host.frames_for_entries(room.space, first, entries, head):
            room._fan_out(frame)
    removed = members_before - state.device_owner.keys()
    if removed:
        room.close_members(removed)
