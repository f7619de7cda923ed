"""The client's side of snapshots: write them when due, check everyone's, use one when needed.

Write: when a frame that crosses a multiple of the granularity leaves this device idle (no
unsent edits, nothing undecryptable), it notes the document's content hash at the frame's
last seq (live frames are the same for every live member, so their notes line up); if the policy
wants a snapshot and this member may write, it captures the state then and, after a short
random delay (so that several idle members rarely all write one), posts it unless someone
else's arrived first.
Check: every snapshot's state must hash to the content it claims, and to the content this
device noted at that seq if it did. A bad one is recorded with its author, and gossiped in
presence so that a device that started from it learns at once.
Use: bodies the relay stripped are covered only by a snapshot at or after their seq; its
state is merged in, and the device remembers which snapshot it depends on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable

from .document import Document
from .entry import Kind
from .errors import BadSnapshotError, EncspacesError, MissingBodiesError, ProtocolError
from .log_state import LogState
from .membership import Role
from .snapshot import GRANULARITY, SnapshotPayload, content_hash, snapshot_due, state_content_hash
from .supervision import guarded
from .verifier import VerifiedEntry

log = logging.getLogger(__name__)

KEEP_CONTENT = 64  # content hashes remembered (one per granularity step at most)
MAX_SNAPSHOT = 1000 * 1024  # a snapshot is one entry: it must fit under the relay's entry limit
WRITE_JITTER = 0.3  # seconds, at most, an idle member waits before writing a due snapshot

# queue(kind, payload, parent_seq, parent_hash)
Queue = Callable[[Kind, bytes, int, bytes], None]


class SnapshotKeeper:
    def __init__(
        self, me: bytes, document: Document, queue: Queue, fail: Callable[[EncspacesError], None],
        apply: Callable[[VerifiedEntry], None],
    ) -> None:
        self._me = me
        self._document = document
        self._queue = queue
        self._fail = fail
        self._apply = apply
        # Entries after a stripped stretch wait for the snapshot that covers it: yrs can lose
        # content when one author's updates are applied out of order, and these depend on it.
        self._held: list[VerifiedEntry] = []
        self.content_at: dict[int, bytes] = {}
        self.bad: list[BadSnapshotError] = []
        self.stripped_through = 0  # newest seq whose body the relay did not send
        self.covered_through = 0  # the seq whose state the snapshot we merged holds
        self.used: tuple[int, bytes] | None = None  # (seq, author) of the snapshot we depend on
        self._timer: asyncio.TimerHandle | None = None
        self._live = False  # caught up: from here on every body must be there

    @property
    def in_gap(self) -> bool:
        """Bodies were stripped that no snapshot has covered yet: the document is incomplete."""
        return self.stripped_through > self.covered_through

    @property
    def bad_seqs(self) -> tuple[int, ...]:
        return tuple(b.seq for b in self.bad)

    # --- entries as they are verified -------------------------------------------------------

    def on_entry(self, result: VerifiedEntry) -> bool:
        """Handle stripped bodies and snapshots; False for anything the space applies itself."""
        if result.stripped:
            if self._live:
                self._fail(MissingBodiesError(
                    f"the relay sent the entry at seq {result.seq} without its body in the live stream: "
                    "bodies may only be left out of a catch-up that a snapshot covers"))
                return True
            self.stripped_through = max(self.stripped_through, result.seq)
            return True
        if result.kind is not Kind.SNAPSHOT:
            if self.stripped_through > self.covered_through and result.plaintext is not None:
                self._held.append(result)
                return True
            return False
        if result.plaintext is not None:
            self._on_snapshot(result, result.plaintext)
        return True

    def _on_snapshot(self, result: VerifiedEntry, plaintext: bytes) -> None:
        header = result.entry.header
        base = header.parent_seq
        try:
            payload = SnapshotPayload.decode(plaintext)
            found = state_content_hash(payload.state)
        except (ProtocolError, ValueError, BaseException) as exc:  # pycrdt panics are BaseExceptions
            if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
                raise
            self._record_bad(BadSnapshotError(result.seq, header.author, f"its state does not load ({exc})"))
            return
        noted = self.content_at.get(base)
        if found != payload.content:
            self._record_bad(BadSnapshotError(result.seq, header.author,
                                              f"its state does not hash to the content it claims for seq {base}"))
            return
        if noted is not None and noted != payload.content:
            self._record_bad(BadSnapshotError(result.seq, header.author,
                                              f"its content differs from the document this device held at seq {base}"))
            return
        if self.stripped_through and base >= self.stripped_through and base > self.covered_through:
            try:
                self._document.apply_remote(payload.state, result.entry.author_id)
            except ValueError as exc:
                self._record_bad(BadSnapshotError(result.seq, header.author, str(exc)))
                return
            self.covered_through = base
            self.used = (result.seq, header.author)
            log.info("started from the snapshot at seq %d (state at seq %d)", result.seq, base)
            held, self._held = self._held, []
            for entry in held:
                self._apply(entry)

    def _record_bad(self, error: BadSnapshotError) -> None:
        log.error("%s", error)
        self.bad.append(error)
        if self.used is not None and self.used[0] == error.seq:
            self._fail(error)

    def peer_says_bad(self, seqs: tuple[int, ...], reporter: str) -> None:
        """A member reported snapshots as bad: if we started from one, we must stop trusting our state."""
        if self.used is not None and self.used[0] in seqs and not any(b.seq == self.used[0] for b in self.bad):
            error = BadSnapshotError(self.used[0], self.used[1], f"member {reporter} checked it against the "
                                     "document they held at that seq: reopen this space without it")
            self.bad.append(error)
            self._fail(error)

    def went_offline(self) -> None:
        self._live = False  # the next catch-up may leave out bodies a snapshot covers

    def check_complete(self) -> None:
        """Once caught up: every stripped body must be covered by a snapshot the relay sent."""
        self._live = True
        if self.stripped_through > self.covered_through:
            self._fail(MissingBodiesError(
                f"the relay sent entries up to seq {self.stripped_through} without their bodies, and no "
                f"snapshot that covers them (we hold state through seq {self.covered_through})"))

    # --- after each frame: note content, maybe write a snapshot -----------------------------

    def after_frame(self, first_seq: int, last_seq: int, state: LogState, idle: bool) -> None:
        crossed = (first_seq - 1) // GRANULARITY != last_seq // GRANULARITY
        if not crossed or not idle or self.stripped_through > self.covered_through:
            return
        content = content_hash(self._document.doc)
        self.content_at[last_seq] = content
        for old in sorted(self.content_at)[:-KEEP_CONTENT]:
            del self.content_at[old]
        role = state.role_of(self._me)
        if role is None or role is Role.READER or not snapshot_due(state, last_seq):
            return
        payload = SnapshotPayload(self._document.state(), content).encode()
        if len(payload) > MAX_SNAPSHOT:
            log.warning("the document (%d bytes) is too large for a snapshot entry; no snapshot", len(payload))
            return
        head = state.heads[last_seq]
        if self._timer is not None:
            self._timer.cancel()
        write = guarded("the snapshot keeper", functools.partial(self._write, state, last_seq, head, payload),
                        self._fail)
        self._timer = asyncio.get_running_loop().call_later(random.uniform(0, WRITE_JITTER), write)

    def _write(self, state: LogState, base: int, head: bytes, payload: bytes) -> None:
        self._timer = None
        if state.snapshot is not None and state.snapshot[1] >= base:
            return  # another member's snapshot got there first
        self._queue(Kind.SNAPSHOT, payload, base, head)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
