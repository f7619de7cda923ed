"""The local store's side of a space: pending writes batched into one transaction, the store
writer, checkpoints, and the redaction of forgotten keys.

Received entries wait a little (``RECEIVED_WRITE_DELAY``) so that several frames share one
transaction; anything the device must not lose is written at once and takes them along (see
``Pending.urgent`` and ``Persistence._write_loop`` for why no guarantee weakens).

A ``Persistence`` is owned by its ``Space`` and wired through the ``SpaceHost`` protocol
(encspaces/host.py), as the connection runner is (encspaces/connection.py): it reads the
verified state, the document and the options through the host and never touches the space's
state itself. It is given the space's local store and outbox, which it writes and marks stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from . import faults
from .core.encoding import pack
from .core.entry import Entry, is_pruned
from .core.outbox import Outbox
from .core.redaction import redact
from .errors import EncspacesError
from .host import SpaceHost
from .store import ANCHOR_META, HEAD_WINDOW, SESSIONS_META, LocalStore

# How long received entries (their log rows, relay heads and the outbox clean-up they allow)
# may wait in memory for more to share their transaction. One transaction per frame (a thread
# hop, a commit, the WAL pages of the log's and the heads' last leaves rewritten each time)
# cost 70-80 µs of CPU a frame, ten in one ~19 µs a frame; the store's threads were 15% of a
# device's CPU receiving 50 frames a second (bench/README.md, "The device store's writes").
# 50 ms groups 2-3 frames there and ~10 at 10 writers x 10 readers (a frame every 5 ms), and
# is what a kill of the process may take back of entries the relay holds anyway (fetched
# again on reopening); 200 ms saved little more. Not a SpaceOptions field: nothing in an
# application's use changes the trade.
RECEIVED_WRITE_DELAY = 0.05


@dataclass
class Pending:
    """What is waiting to be written to the local store, written in one transaction."""

    log: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    outbox: list[tuple[int, bytes]] = field(default_factory=list)
    outbox_done_through: int | None = None
    meta: dict[str, bytes] = field(default_factory=dict)
    checkpoint: tuple[int, bytes, bytes] | None = None
    outbox_reset: bool = False  # the outbox was re-issued: replace the stored one
    purge: bool = False  # keys were forgotten: leave no copy in the write-ahead log
    redactions: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, local form) to store
    heads: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # relay-signed heads verified
    prune_heads_below: int | None = None  # thin out stored heads below this seq (store.HEAD_WINDOW)
    # Relay-signed heads past the verified log (seq, signed, signature, role), and the seq the
    # verified log reached (those at or below it are dropped): evidence_keeper.py.
    heads_ahead: list[tuple[int, bytes, bytes, str]] = field(default_factory=list)
    heads_ahead_through: int | None = None

    def __bool__(self) -> bool:
        return bool(self.log or self.outbox or self.meta or self.outbox_done_through is not None
                    or self.checkpoint is not None or self.outbox_reset or self.purge or self.redactions
                    or self.heads or self.prune_heads_below is not None or self.heads_ahead
                    or self.heads_ahead_through is not None)

    def urgent(self) -> bool:
        """Holds something written at once: our own entries, meta (the invite secret, the session's
        nonce, evidence), a checkpoint, redactions or a purge (forgotten keys stay forgotten).

        The rest (received entries, their relay heads, the outbox clean-up they allow) is what the
        relay holds and serves again: it may wait ``RECEIVED_WRITE_DELAY``.
        """
        return bool(self.outbox or self.meta or self.checkpoint is not None or self.outbox_reset or self.purge
                    or self.redactions)


class Persistence:
    """The space's writes to its local store: one writer task, one lock, one pending batch."""

    def __init__(self, host: SpaceHost, store: LocalStore, box: Outbox) -> None:
        self._host = host
        self._store = store
        self._box = box
        self.pending = Pending()
        self._write_lock = asyncio.Lock()
        self.checkpoint_seq = 0  # the seq of the newest checkpoint taken
        self._redacting: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._write_wanted = asyncio.Event()
        self._holding = False  # the writer waits out RECEIVED_WRITE_DELAY for more received entries

    def wake(self) -> None:
        """Something was added to ``pending``: the writer writes it (and then sends the outbox).

        While the writer holds received entries, more of them do not wake it (it writes them
        all at its deadline); anything urgent does, and is written at once with them.
        """
        if self._holding and not self.pending.urgent():
            return
        self._write_wanted.set()

    def start(self) -> None:
        # The writer is never cancelled mid-write: stop() wakes it and waits (see _write_loop).
        self._writer = self._host.tasks.spawn(self._write_loop(), "the store writer", cancel_on_close=False)

    def start_redaction(self) -> None:
        self._redacting = self._host.tasks.spawn(
            self._redact_store(), "the redaction of forgotten keys in the local store", cancel_on_close=False)

    async def stop(self) -> None:
        """Wait for a redaction in progress, then let the writer finish what it holds (the host is closed)."""
        if self._redacting is not None:
            await asyncio.gather(self._redacting, return_exceptions=True)
        if self._writer is not None:
            self._write_wanted.set()  # the writer finishes what it holds, then returns
            await asyncio.gather(self._writer, return_exceptions=True)

    async def write_last(self) -> None:
        """On close, after every task ended: a checkpoint if the log moved since the last, and the last write."""
        if self._host.error is None and self._host.verifier.seq > self.checkpoint_seq:
            self.take_checkpoint()
        async with self._write_lock:
            await self._write_pending()

    async def persist(self) -> None:
        async with self._write_lock:
            await self._write_pending()

    async def _redact_store(self) -> None:
        """Blank the sealed copies of forgotten keys in the stored log (encspaces.core.redaction)."""
        async with self._write_lock:
            await self._write_pending()
            forgotten = set(self._host.verifier.forgotten)
            for seq, raw, _ in await self._store.load_log():
                if is_pruned(raw):
                    continue  # a digest: no sealed key in it
                entry = Entry.decode(raw, local=True)
                local = redact(entry, forgotten)
                if local is not None:
                    self.pending.redactions.append((seq, local))
            self.pending.purge = True
            await self._write_pending()

    def take_checkpoint(self) -> None:
        """Queue a checkpoint of the verified state and the document, consistent with each other.

        The document also holds our own edits not yet in the log; the open batch is turned into
        outbox entries first, written in the same transaction, so a restored document never
        holds an edit that the outbox would not send.
        """
        host = self._host
        if host.snapshot_gap or host.verifier.unpinned or host.verifier.anchor is not None:
            return  # the document lacks what a coming snapshot covers: resume from the stored log instead
        host.flush_batch()
        seq = host.verifier.seq
        settled = host.verifier.take_settled_anchor()
        if settled is not None:
            # A new device's start at an anchor, now covered: kept in the same transaction as the
            # rows it let through (digests alone up to it) and this checkpoint past it, so a restart
            # never replays those rows; re-verifying the store starts from it (encspaces.local).
            self.pending.meta[ANCHOR_META] = pack([settled.seq, settled.state])
        self.pending.checkpoint = (seq, host.verifier.export_checkpoint(), host.document.state())
        self.pending.prune_heads_below = seq - HEAD_WINDOW if seq > HEAD_WINDOW else None
        self.pending.heads_ahead_through = seq
        self.checkpoint_seq = seq
        self._write_wanted.set()

    async def _write_pending(self) -> None:
        """Write what accumulated, in one transaction. Callers hold ``_write_lock``."""
        if not self.pending:
            return
        pending, self.pending = self.pending, Pending()
        unpinned = self._host.verifier.unpinned_from
        if unpinned is not None and pending.log and pending.log[-1][0] >= unpinned:
            # Entries whose signatures no agreed snapshot vouched for yet, and all after them, stay
            # in memory: the store holds only what is verified (a restart replays it unchecked).
            self.pending.log = [row for row in pending.log if row[0] >= unpinned]
            pending.log = [row for row in pending.log if row[0] < unpinned]
            if not pending:
                return
        generation = self._box.generation

        def committed() -> None:
            # Run by the callback that answers the write, not after the await: a task resumes a
            # pass of the event loop after its future is answered, and on a busy loop (a device
            # receiving 200 frames a second) a pass is milliseconds of the entry's latency.
            if SESSIONS_META in pending.meta:
                self._box.session_stored = True  # this session's edits may go ahead of their writes
            if pending.outbox and generation == self._box.generation:
                self._box.stored(max(seq for seq, _ in pending.outbox), generation)
                if faults.ARMED:
                    faults.reached("outbox")
            if faults.ARMED and pending.log:
                faults.reached("logged")
            self._host.send_outbox()

        await self._store.write(
            meta=pending.meta,
            log=pending.log,
            outbox_add=pending.outbox,
            outbox_done_through=pending.outbox_done_through,
            checkpoint=pending.checkpoint,
            outbox_reset=pending.outbox_reset,
            purge=pending.purge,
            redactions=pending.redactions,
            heads=pending.heads,
            prune_heads_below=pending.prune_heads_below,
            heads_ahead=pending.heads_ahead,
            heads_ahead_through=pending.heads_ahead_through,
            then=committed,
        )

    async def _write_loop(self) -> None:
        """Group writes: whatever accumulated while the previous transaction ran goes in one, and
        received entries alone wait up to ``RECEIVED_WRITE_DELAY`` for more.

        Why holding received entries weakens nothing. Every transaction still writes everything
        pending, in order, so the store always holds the state the space was in at one earlier
        moment (never a later write without an earlier one). Our entries are urgent, and their
        transaction takes every held row along, so an entry is never stored without the log it
        was built on (an edit may leave before its write commits: core/outbox.py says why a
        crash between the two loses nothing the relay took). A
        kill of the process may now take back the last ``RECEIVED_WRITE_DELAY`` of received
        entries, their relay heads and the outbox clean-up (before, a power loss could, the
        NORMAL commits since the last fsync, and a kill only what was verified in the few ms
        before its write committed): the device reopens at an older verified head,
        as it would had it been killed that much earlier, resends what its outbox still holds
        (the relay answers an entry it holds with its seq) and fetches the rest again. Whoever
        reads the store while the space is open writes the held rows first (``persist``:
        history, time travel, evidence, redaction); ``close`` writes them too (``stop``).

        Never cancelled mid-write (that would lose what it took out of ``pending``): the
        space's ``close`` marks it closed and wakes it instead.
        """
        loop = asyncio.get_running_loop()
        while not self._host.closed:
            await self._write_wanted.wait()
            self._write_wanted.clear()
            if self.pending and not self.pending.urgent() and not self._host.closed:
                self._holding = True
                deadline = loop.call_later(RECEIVED_WRITE_DELAY, self._write_wanted.set)
                try:
                    await self._write_wanted.wait()  # the deadline, something urgent, or close
                finally:
                    deadline.cancel()
                    self._holding = False
                self._write_wanted.clear()
            try:
                async with self._write_lock:
                    await self._write_pending()
            except EncspacesError as exc:
                self._host.fail(exc)
                return
