"""The client's side of snapshots: write them when due, check and attest everyone's, use agreed ones.

Note: whenever the document is exactly the verified log (no unsent edits, nothing
undecryptable, no stripped stretch), the device notes its content hash at every seq that is a
multiple of the granularity (near the end of each frame) and at every snapshot base named in
the frame it applies; a snapshot whose base came with no data entry since is checked against
the document as it stands. That is one content hash per snapshot base, computed when the log
reaches it.
Write: at a noted multiple of the granularity, if the policy wants a snapshot and this member
may write, it captures the state then and, after a short random delay (so that several idle
members rarely all write one), posts it unless someone else's arrived first.
Check and attest: every snapshot's state must hash to the content it claims, and that
content must be the one this device noted at its base. A member that may write posts one
attestation per snapshot it could check (encspaces.core.attestation), agreeing or not. A bad
snapshot, or an attestation that states a false content, is recorded with the liar named and
the signed entries that show it.
Use: bodies the relay stripped are covered only by a snapshot whose base is at or after their
seq and that the space's threshold of members other than its author attested, with no
conflicting attestation; its state is merged in once the attestations are verified, and the
device remembers which snapshot it depends on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from typing import TYPE_CHECKING, Any

import pycrdt

from .core.attestation import TRACKED_SNAPSHOTS, AttestBody, Status, attest_tag
from .core.entry import Kind
from .core.log_state import LogState
from .core.verifier import VerifiedEntry
from .document import fully_applied
from .errors import BadSnapshotError, MissingBodiesError, ProtocolError
from .snapshot import (
    GRANULARITY,
    SnapshotPayload,
    content_hash,
    load_state,
    owners_digest,
    snapshot_due,
    snapshot_payload,
)
from .state_vector import read_state

if TYPE_CHECKING:
    from .host import SpaceHost

log = logging.getLogger(__name__)

KEEP_CONTENT = 64  # content hashes remembered (one per granularity step at most)
MAX_SNAPSHOT = 1000 * 1024  # a snapshot is one entry: it must fit under the relay's entry limit
WRITE_JITTER = 0.3  # seconds, at most, an idle member waits before writing a due snapshot


class SnapshotKeeper:
    def __init__(self, host: SpaceHost) -> None:
        self._host = host  # the space as its parts see it (encspaces/host.py); its task owner owns the delayed write
        self._me = host.identity.public.sign_key
        self._document = host.document
        # Entries after a stripped stretch wait for the snapshot that covers it: yrs can lose
        # content when one author's updates are applied out of order, and these depend on it.
        self._held: list[VerifiedEntry] = []
        self.content_at: dict[int, bytes] = {}
        # Beside each content hash, the Yjs clocks the document held there ({client: clocks}):
        # a snapshot's state must hold exactly those. Content alone does not show deleted items,
        # and a state holding a member's *future* clocks as deleted items hashes like the log's
        # but makes every device that loads it drop that member's next edits as already seen.
        self.clocks_at: dict[int, dict[int, int]] = {}
        # And, in a space that binds client ids, the digest of who first wrote under each one
        # (core/client_ids.py): a snapshot carries them for the devices that start from it.
        self.owners_at: dict[int, bytes] = {}
        self.bad: list[BadSnapshotError] = []
        self.stripped_through = 0  # newest seq whose body the relay did not send
        self.covered_through = 0  # the seq whose state the snapshot we merged holds
        self.used: tuple[int, bytes] | None = None  # (seq, author) of the snapshot we depend on
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        # Attest only entries that arrive from the relay, not those replayed from our own store
        # at startup (the outbox, restored after them, may already hold our attestation).
        self.attesting = False
        # What the document holds, to know at which seqs it is exactly the log (see ``_note_upto``).
        self._idle = False  # no local edit outside an entry, nothing stripped, in this batch
        self._wanted: set[int] = set()  # seqs whose content this batch should note
        self._waiting: set[int] = set()  # data entries not yet in the document (no key yet)
        self._high = 0  # the newest seq of a data entry the document holds
        # The document's content hash while it stays as a merged snapshot made it: that
        # snapshot's checked content (see ``_covered``); None once anything else changes it.
        self._merged_content: bytes | None = None
        self._own_seen = 0  # our newest author_seq seen in the log so far in this batch
        self._own_through = 0  # our newest data author_seq the document holds but the log did not yet
        self._left = 0  # entries of this batch not yet applied
        self._batch_last = 0
        self._mine: dict[int, tuple[bytes, bool]] = {}  # snapshot seq -> (our content at its base, our verdict)
        self._claims: dict[int, tuple[bytes, bytes]] = {}  # snapshot seq -> (claimed content, entry bytes)
        # May cover the stripped stretch: the entry, its payload, and its state as the check loaded it.
        self._candidates: dict[int, tuple[VerifiedEntry, SnapshotPayload, pycrdt.Doc[Any]]] = {}
        self._attested: set[int] = set()

    @property
    def in_gap(self) -> bool:
        """Bodies were stripped that no snapshot has covered yet: the document is incomplete."""
        return self.stripped_through > self.covered_through

    @property
    def bad_seqs(self) -> tuple[int, ...]:
        return tuple(b.seq for b in self.bad if not b.attester)

    # --- entries as they are verified -------------------------------------------------------

    def begin_batch(self, results: list[VerifiedEntry], idle: bool, own_through: int) -> None:
        """Before a batch is applied in order (late entries, opened now, come last).

        ``idle``: no local edit outside an entry; ``own_through``: the newest author_seq of our
        own data entries not yet verified (0: none), which the document already holds.
        """
        verifier = self._host.verifier
        # One pass over the batch (a new device's catch-up: thousands of entries).
        me, snapshot = self._me, Kind.SNAPSHOT
        mine = 0
        fresh: list[int] = []
        late: set[int] = set()
        bases: set[int] = set()
        for r in results:
            header = r.entry.header
            if r.late:
                late.add(r.seq)
            else:
                fresh.append(r.seq)
                if header.author == me:
                    mine += 1
            if header.kind is snapshot:
                bases.add(header.parent_seq)
        self._own_seen = verifier.state.author_seqs.get(me, 0) - mine
        self._own_through = own_through
        self._idle = idle
        self._waiting = {r.seq for r in verifier.awaiting_key} | late
        self._batch_last = fresh[-1] if fresh else 0
        self._left = len(results)
        self._merged_content = None  # local edits since the last batch may have changed the document
        grid = {seq for seq in fresh if seq % GRANULARITY == 0 and seq > self._batch_last - 2 * GRANULARITY}
        self._wanted = grid | bases

    def _note_upto(self, limit: int) -> None:
        """Note the content at every wanted seq below ``limit`` where the document is exactly the log.

        Called before the entry at ``limit`` changes the document: it then holds every data
        entry at or before ``_high`` and none after, so it is the log at every seq from
        ``_high`` up to ``limit - 1``, provided nothing below is still waiting for its key,
        none of our own edits is still outside the log, and nothing was stripped.
        """
        if not self._wanted or not self._idle or self.in_gap or self._own_seen < self._own_through:
            return
        floor = min(self._waiting, default=limit)
        due = sorted(b for b in self._wanted if self._high <= b < limit and b < floor)
        if not due:
            return
        content = self._merged_content or content_hash(self._document.doc)
        clocks = read_state(self._document.doc.get_state())
        verifier = self._host.verifier
        owners = owners_digest(verifier.client_owners.first) if verifier.state.client_ids_bound else None
        for base in due:
            self._wanted.discard(base)
            self.content_at[base] = content
            self.clocks_at[base] = clocks
            if owners is not None:
                self.owners_at[base] = owners
        for old in sorted(self.content_at)[:-KEEP_CONTENT]:
            del self.content_at[old]
            self.clocks_at.pop(old, None)
            self.owners_at.pop(old, None)
        grid = [b for b in due if b % GRANULARITY == 0]
        if grid:
            self._maybe_write(grid[-1], content, self._host.verifier.state)

    def anchored(self, seq: int) -> None:
        """The verifier installed the relay's log state at the anchor ``seq`` (a new device): the
        document holds nothing of the log up to there until a snapshot covers it."""
        self.stripped_through = max(self.stripped_through, seq)

    def on_entry(self, result: VerifiedEntry) -> bool:
        """Handle stripped bodies, snapshots and attestations; False for anything the space applies itself."""
        if result.stripped:  # (only in a catch-up: the verifier refuses one in the live stream)
            self.stripped_through = max(self.stripped_through, result.seq)
            return True
        if result.kind is Kind.ATTEST:
            if not result.late:
                self._on_attestation(result)
            return True
        if result.kind is Kind.DATA and result.plaintext is not None:
            # The document is about to change; or, for an edit of ours, changed when we made it.
            # So this is noted before our entry counts as seen: until then our own edits still
            # outside the log (this one included) block noting any seq before it.
            self._note_upto(result.seq)
            self._high = max(self._high, result.seq)
            self._merged_content = None
            self._waiting.discard(result.seq)
        if result.author == self._me and not result.late:
            self._own_seen = max(self._own_seen, result.entry.header.author_seq)
        if result.kind is not Kind.SNAPSHOT:
            if self.stripped_through > self.covered_through and result.plaintext is not None:
                self._held.append(result)
                return True
            return False
        if result.plaintext is not None:
            self._on_snapshot(result, result.plaintext)
        return True

    def after_entry(self, result: VerifiedEntry, state: LogState) -> None:
        """After each entry of a batch: at its end, note what is due up to the head."""
        self._left -= 1
        if self._left == 0:
            self._note_upto(state.seq + 1)

    def _on_snapshot(self, result: VerifiedEntry, plaintext: bytes) -> None:
        header = result.entry.header
        base, seq = header.parent_seq, result.seq
        payload: SnapshotPayload | None = None
        loaded: pycrdt.Doc[Any] | None = None
        problem = ""
        try:
            payload = SnapshotPayload.decode(plaintext)
            loaded = load_state(payload.state, self._document.client_id)
            if content_hash(loaded) != payload.content:
                problem = f"its state does not hash to the content it claims for seq {base}"
            elif not fully_applied(payload.state, loaded.get_state(), loaded):
                problem = "its state holds edits that do not apply (their dependencies are missing)"
        except (ProtocolError, ValueError, BaseException) as exc:  # pycrdt panics are BaseExceptions
            if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
                raise
            problem = f"its state does not load ({exc})"
        self._note_upto(seq)
        if payload is not None and payload.owners is None and self._host.verifier.state.client_ids_bound:
            unbound = "it names no first writers of Yjs client ids, which this space binds to their authors"
        else:
            unbound = ""
        own = self.content_at.get(base)
        evidence = (result.entry.raw,)
        if payload is not None:
            self._claims[seq] = (payload.content, result.entry.raw)
        if own is not None:
            if not problem and payload is not None and payload.content != own:
                problem = f"its content differs from the document this device held at seq {base}"
            clocks = self.clocks_at.get(base)
            if not problem and loaded is not None and clocks is not None and read_state(loaded.get_state()) != clocks:
                problem = f"its state holds other edits (Yjs clocks) than the document this device held at seq {base}"
            owners = self.owners_at.get(base)
            if not problem and payload is not None and payload.owners is not None and owners is not None \
                    and owners_digest(payload.owners) != owners:
                problem = f"its first writers of Yjs client ids differ from the log's at seq {base}"
            problem = problem or unbound
            self._mine[seq] = (own, not problem)
            self._attest(seq, header.epoch, header.author, own, agrees=not problem)
        for table in (self._mine, self._claims):
            for old in sorted(table)[:-TRACKED_SNAPSHOTS]:
                del table[old]
        problem = problem or unbound
        if problem:
            self._record_bad(BadSnapshotError(seq, header.author, problem, evidence=evidence))
            return
        if payload is not None and loaded is not None and self.in_gap and base >= self.stripped_through:
            self._candidates[seq] = (result, payload, loaded)
            self._try_merge()

    def _attest(self, seq: int, epoch: int, author: bytes, own: bytes, *, agrees: bool) -> None:
        """Post our one attestation of the snapshot at ``seq`` (members who may write)."""
        verifier = self._host.verifier
        state = verifier.state
        role = state.role_of(self._me)
        record = state.snapshots.get(seq)
        key = verifier.epoch_keys.get(epoch)
        if not self.attesting or role is None or not role.can_write or state.same_person(author, self._me) \
                or key is None or record is None or seq in self._attested \
                or any(state.same_person(a.member, self._me) for a in record.attestations):
            return
        self._attested.add(seq)
        tag = attest_tag(key, state.space, seq, record.base, own)
        # With the log state at the snapshot's anchor as our log has it (the rules check it): a new
        # device may then start there.
        body = AttestBody(seq, tag, agrees, record.anchor)
        self._host.queue_entry(Kind.ATTEST, body.encode(), (state.seq, state.head))

    def _on_attestation(self, result: VerifiedEntry) -> None:
        """Judge an attestation against what we know of the content at the snapshot's base."""
        verifier = self._host.verifier
        body = AttestBody.decode(result.entry.body)
        record = verifier.state.snapshots.get(body.snapshot)
        key = None if record is None else verifier.epoch_keys.get(record.epoch)
        if record is None or key is None:
            return
        claim = self._claims.get(body.snapshot)
        mine = self._mine.get(body.snapshot)

        def tag(content: bytes) -> bytes:
            return attest_tag(key, verifier.state.space, body.snapshot, record.base, content)

        evidence = (claim[1], result.entry.raw) if claim is not None else (result.entry.raw,)
        problem = ""
        if mine is not None:
            own, verdict = mine
            if body.tag != tag(own):
                problem = f"it states a content at seq {record.base} other than the log's, which this device replayed"
            elif body.agrees != verdict:
                problem = f"its verdict ({'agrees' if body.agrees else 'disagrees'}) is wrong: checked against " \
                          f"the log at seq {record.base}, the snapshot is {'bad' if body.agrees else 'good'}"
        elif claim is not None and body.agrees and body.tag != tag(claim[0]):
            problem = "it agrees with the snapshot but states another content than the snapshot claims"
        if problem:
            self._record_bad(BadSnapshotError(body.snapshot, result.author, problem, attester=True, evidence=evidence))
        if self.used is not None and self.used[0] == body.snapshot and not body.agrees:
            log.warning("the snapshot at seq %d this device started from is now disputed by %s: this device "
                        "cannot tell who is right without the full log", body.snapshot, result.entry.author_id)
        self._try_merge()

    def _try_merge(self) -> None:
        """Start from the newest candidate that is agreed and whose attestations state its content."""
        if not self.in_gap:
            self._candidates.clear()
            return
        verifier = self._host.verifier
        state = verifier.state
        for seq in sorted(self._candidates, reverse=True):
            result, payload, loaded = self._candidates[seq]
            base = result.entry.header.parent_seq
            record = state.snapshots.get(seq)
            key = verifier.epoch_keys.get(result.entry.header.epoch)
            if base < self.stripped_through or base <= self.covered_through or record is None or key is None \
                    or record.status(state.policy.snapshot_attesters) is not Status.AGREED:
                continue
            expected = attest_tag(key, state.space, seq, base, payload.content)
            if any(a.tag != expected for a in record.attestations):
                continue  # they agree on another content than it claims: not started from
            try:
                # A new device's empty document becomes the one the check loaded (no second load).
                adopted = self._document.adopt(loaded, result.entry.author_id)
                if not adopted:
                    self._document.apply_remote(payload.state, result.entry.author_id)
                if payload.owners is not None:  # before the entries after it claim any (client_ids.py)
                    first = verifier.client_owners.first
                    for client, author in payload.owners.items():
                        first.setdefault(client, author)
            except ValueError as exc:
                self._record_bad(BadSnapshotError(seq, result.entry.header.author, str(exc),
                                                  evidence=(result.entry.raw,)))
                continue
            self._candidates.clear()
            self._covered(base, payload.content if adopted else None)
            self.used = (seq, result.entry.header.author)
            log.info("started from the snapshot at seq %d (state at seq %d), attested by %d members",
                     seq, base, len(record.attestations))
            held, self._held = self._held, []
            for entry in held:
                self._host.apply_entry(entry)
            return

    def _covered(self, base: int, content: bytes | None) -> None:
        """The document now holds the log through ``base``: a snapshot's state was merged in.

        It is the log at ``base`` from here (until a data entry after it changes it), not at
        any seq of the stretch before: noting it at a wanted seq below ``base`` would state a
        content this device never held there. ``content``: when the snapshot's checked state
        became the document as it was (``Document.adopt``), its content hash, which
        ``_on_snapshot`` computed from that very state; noting it again costs no second hash
        (about 0.5 ms for the B4 document: bench/README.md, "Cold open: the device's bookkeeping, second pass").
        """
        self.covered_through = base
        self._high = max(self._high, base)
        if content is not None and not self._held:  # (held entries are applied right after)
            self._merged_content = content

    def _record_bad(self, error: BadSnapshotError) -> None:
        if any(b.seq == error.seq and b.author == error.author for b in self.bad):
            return
        log.error("%s", error)
        self.bad.append(error)

    def check_complete(self) -> None:
        """Once caught up: every stripped body must be covered by an agreed snapshot the relay sent."""
        if self.stripped_through > self.covered_through:
            self._host.fail(MissingBodiesError(
                f"the relay sent entries up to seq {self.stripped_through} without their bodies, and no "
                f"snapshot that covers them with the attestations the policy asks for (we hold state "
                f"through seq {self.covered_through})"))

    # --- writing a snapshot when due ---------------------------------------------------------

    def _maybe_write(self, base: int, content: bytes, state: LogState) -> None:
        role = state.role_of(self._me)
        if role is None or not role.can_write or not snapshot_due(state, base):
            return
        verifier = self._host.verifier
        payload = snapshot_payload(self._document.state(), content, state.client_ids_bound,
                                   verifier.client_owners.first)
        if len(payload) > MAX_SNAPSHOT:
            log.warning("the document (%d bytes) is too large for a snapshot entry; no snapshot", len(payload))
            return
        head = state.heads[base]
        self._host.tasks.cancel(self._timer)
        write = functools.partial(self._write, state, base, head, payload)
        self._timer = self._host.tasks.later(random.uniform(0, WRITE_JITTER), write, "the snapshot keeper")

    def _write(self, state: LogState, base: int, head: bytes, payload: bytes) -> None:
        self._timer = None
        if state.snapshot is not None and state.snapshot[1] >= base:
            return  # another member's snapshot got there first
        self._host.queue_entry(Kind.SNAPSHOT, payload, (base, head))

    def cancel(self) -> None:
        self._host.tasks.cancel(self._timer)
