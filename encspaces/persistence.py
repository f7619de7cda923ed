"""The local store's side of a space: pending writes batched into one transaction, the store
writer, checkpoints, and the redaction of forgotten keys.

A ``Persistence`` is owned by its ``Space`` and wired through the ``SpaceHost`` protocol
(encspaces/host.py), as the connection runner is (encspaces/connection.py): it reads the
verified state, the document and the options through the host and never touches the space's
state itself. It is given the space's local store and outbox, which it writes and marks stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from . import faults
from .core.entry import Entry
from .core.outbox import Outbox
from .core.redaction import redact
from .errors import EncspacesError
from .host import SpaceHost
from .store import HEAD_WINDOW, LocalStore


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

    def __bool__(self) -> bool:
        return bool(self.log or self.outbox or self.meta or self.outbox_done_through is not None
                    or self.checkpoint is not None or self.outbox_reset or self.purge or self.redactions
                    or self.heads or self.prune_heads_below is not None)


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

    def wake(self) -> None:
        """Something was added to ``pending``: the writer writes it (and then sends the outbox)."""
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
        if host.snapshot_gap or host.verifier.unpinned:
            return  # the document lacks what a coming snapshot covers: resume from the stored log instead
        host.flush_batch()
        seq = host.verifier.seq
        self.pending.checkpoint = (seq, host.verifier.export_checkpoint(), host.document.state())
        self.pending.prune_heads_below = seq - HEAD_WINDOW if seq > HEAD_WINDOW else None
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
        )
        if pending.outbox and generation == self._box.generation:
            self._box.stored(max(seq for seq, _ in pending.outbox), generation)
            if faults.ARMED:
                faults.reached("outbox")
        if faults.ARMED and pending.log:
            faults.reached("logged")
        self._host.send_outbox()

    async def _write_loop(self) -> None:
        """Group writes: whatever accumulated while the previous transaction ran goes in one.

        Never cancelled mid-write (that would lose what it took out of ``pending``): the
        space's ``close`` marks it closed and wakes it instead.
        """
        while not self._host.closed:
            await self._write_wanted.wait()
            self._write_wanted.clear()
            try:
                async with self._write_lock:
                    await self._write_pending()
            except EncspacesError as exc:
                self._host.fail(exc)
                return
