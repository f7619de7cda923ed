"""The space's evidence against its relay: signed heads kept, deadlines held, proofs written.

The asyncio half of ``encspaces.core.evidence`` and ``encspaces.core.withholding`` (the pure
halves). An ``EvidenceKeeper`` is owned by its ``Space`` and wired through the ``SpaceHost``
protocol (encspaces/host.py), with the local store and the space's ``Persistence``:

- every relay-signed head this device verifies (one per frame) is written to the store beside
  the log (``store.relay_heads``, thinned as ``store.HEAD_WINDOW`` says), so ``encspaces
  verify`` re-checks the relay's signatures and a fork at an old seq can still be proven;
- heads the relay signed past what it delivered (acks, the welcome) are held to
  ``SpaceOptions.withholding_deadline`` (``WithholdingError``), and kept in the store
  (``store.heads_ahead``) until the verified log passes them, so that a log contradicting one
  is a ``ForkError`` with both heads as evidence even after a restart; so are our own entries handed
  to the relay and neither sequenced nor refused (the connection is renewed once, then
  ``SubmissionWithheldError``);
- when the space fails with an error of the fork, rollback or withholding family, its
  ``proof`` is completed from the store (the genesis, the chain link between the two heads)
  (or, for a checkpoint against our log, the leaves from the genesis to a signed head past
  the checkpoint's size, at most ``MAX_LEAVES``) and written, signed by this device, to the
  store's meta (``store.EVIDENCE_META``), for ``encspaces evidence`` to export.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .core.entry import stored_digest
from .core.evidence import MAX_LEAVES, Evidence, HeadStatement, LeavesStatement, LinkStatement, Role, check
from .core.head import SignedHead
from .core.log_state import space_id_of
from .core.withholding import SubmissionWatch, WithholdingWatch
from .errors import EncspacesError, ForkError, RollbackError, SubmissionWithheldError, WithholdingError
from .store import EVIDENCE_META, LocalStore

if TYPE_CHECKING:
    from .host import SpaceHost
    from .persistence import Persistence

log = logging.getLogger(__name__)

ProvenError = ForkError | RollbackError | WithholdingError


class EvidenceKeeper:
    """Created by the Space; every method is a hook the space calls at the matching moment."""

    def __init__(self, host: SpaceHost, store: LocalStore, persistence: Persistence) -> None:
        self._host = host
        self._store = store
        self._persistence = persistence
        self._clock = host.options.clock
        self.watch = WithholdingWatch()
        self.submissions = SubmissionWatch()
        self._stored_seq = 0  # the newest seq whose signed head is stored (or queued to be)
        self._welcome: SignedHead | None = None  # the last welcome's head, once held to the deadline
        self._ahead_stored: set[int] = set()  # seqs of the heads past our log stored (or queued to be)
        self.recorded: Evidence | None = None  # the evidence written for the space's failure

    # --- restoring ----------------------------------------------------------------------------

    async def restore(self) -> None:
        """After the verified state is restored: our side of any later evidence is the newest stored head."""
        verifier = self._host.verifier
        rows = await self._store.load_relay_heads()
        usable = [r for r in rows if r[0] <= verifier.seq]
        if usable:
            seq, signed, signature = usable[-1]
            head = SignedHead.decode([signed, signature])
            if head.head == verifier.state.heads[seq]:
                verifier.verified_head = head
            self._stored_seq = seq
        for seq, signed, signature, role in await self._store.load_heads_ahead():
            if seq <= verifier.seq:
                continue  # the log reached it (and was checked against it) before the restart
            try:
                verifier.hold_ahead(SignedHead.decode([signed, signature]), Role(role))
            except (EncspacesError, ValueError) as exc:  # this device's own store: only evidence is lost
                log.warning("a stored relay head at seq %d past our log (seq %d) is unusable: %s",
                            seq, verifier.seq, exc)
            self._ahead_stored.add(seq)

    # --- the connection's events ----------------------------------------------------------------

    def connected(self) -> None:
        self.watch.connected(self._clock.monotonic())

    def disconnected(self) -> None:
        self.watch.disconnected(self._clock.monotonic())

    def verified(self) -> None:
        """After a verified frame: progress, and its signed head is kept."""
        verifier = self._host.verifier
        self._note_welcome()
        self.watch.progressed(verifier.seq, self._clock.monotonic())
        head = verifier.verified_head
        if head is not None and head.seq > self._stored_seq:
            self._persistence.pending.heads.append((head.seq, head.signed_bytes, head.signature))
            self._stored_seq = head.seq

    def acked(self, head: SignedHead | None) -> None:
        if head is not None:
            self.watch.saw(head, Role.ACK, self._host.verifier.seq, self._clock.monotonic())
            self._keep_ahead(head, Role.ACK)

    def _keep_ahead(self, head: SignedHead, role: Role) -> None:
        """Store a head the verifier holds past our seq (``LogVerifier.hold_ahead`` after a restart).

        With the received entries' write (not fsynced, ``persistence.Pending.urgent``): a crash
        within that delay loses the held head, as it loses the entries the relay holds anyway.
        """
        verifier = self._host.verifier
        if head.seq <= verifier.seq or head.seq in self._ahead_stored:
            return
        self._ahead_stored = {seq for seq in self._ahead_stored if seq > verifier.seq} | {head.seq}
        self._persistence.pending.heads_ahead.append((head.seq, head.signed_bytes, head.signature, role.value))
        self._persistence.wake()

    def tick(self) -> None:
        """Periodically (the space's maintenance ticker): fail the space if the relay let the deadline pass."""
        verifier = self._host.verifier
        self._note_welcome()
        if self._host.error is not None or self._host.closed:
            return
        now, deadline = self._clock.monotonic(), self._host.options.withholding_deadline
        error = self.watch.overdue(verifier.seq, verifier.verified_head, now, deadline)
        if error is not None:
            self._host.fail(error)
            return
        self._check_submissions(now, deadline)

    def sent(self) -> None:
        """Entries of ours were handed to the live connection: the oldest one's deadline counts from now."""
        self._check_submissions(self._clock.monotonic(), self._host.options.withholding_deadline)

    def _check_submissions(self, now: float, deadline: float) -> None:
        """Our oldest entry handed to the relay must reach the verified log (core.withholding.SubmissionWatch)."""
        oldest = self._host.awaiting_log
        watch = self.submissions
        watch.observe(None if oldest is None else oldest.raw, self._host.live_session() is not None, now)
        if oldest is None or not watch.overdue(deadline):
            return
        author_seq, seq = oldest.header.author_seq, self._host.verifier.seq
        if not watch.renewed:
            log.warning("our entry author_seq %d is not in the log after %.0f s live: reconnecting to send it again",
                        author_seq, watch.waited())
            watch.renew()
            self._host.send(b"")  # the send loop reconnects; the new connection sends the outbox again
            return
        self._host.fail(SubmissionWithheldError(
            f"the relay neither sequenced nor refused our entry author_seq {author_seq}: after {deadline:g} s live, "
            f"and again after reconnecting and sending it anew, our verified log (seq {seq}) does not hold it",
            author_seq=author_seq, verified=seq))

    def closing(self) -> None:
        """The space closes: a welcome head still past our log is stored with the last write (it is
        otherwise noted at the next tick or verified frame, which may not come)."""
        welcome = self._host.verifier.welcome_head
        if welcome is not None:
            self._keep_ahead(welcome, Role.WELCOME)

    def _note_welcome(self) -> None:
        welcome = self._host.verifier.welcome_head
        if welcome is not None and welcome is not self._welcome:
            self._welcome = welcome
            self.watch.saw(welcome, Role.WELCOME, self._host.verifier.seq, self._clock.monotonic())
            self._keep_ahead(welcome, Role.WELCOME)

    # --- failing with evidence ------------------------------------------------------------------

    def failed(self, exc: EncspacesError) -> None:
        """The space failed with ``exc``: complete and store its proof, if it has one."""
        if isinstance(exc, (ForkError, RollbackError, WithholdingError)) and exc.proof is not None:
            self._host.tasks.spawn(self._record(exc), "the recording of the evidence", cancel_on_close=False)

    async def _record(self, exc: ProvenError) -> None:
        proof = exc.proof
        assert proof is not None
        verifier = self._host.verifier
        await self._persistence.persist()  # the verified log and heads are in the store to read from
        try:
            proof = await self._complete(proof)
        except EncspacesError as error:
            log.warning("the evidence of %s could not be completed from the local store: %s", type(exc).__name__, error)
            return
        proof = proof.replace(relay_key=proof.relay_key or verifier.relay_key, detected_ms=self._clock.now_ms())
        exc.proof = proof
        if not proof.complete:
            log.warning("the evidence of %s is incomplete (no stored head to link the fork to): not written",
                        type(exc).__name__)
            return
        data = proof.encode(self._host.identity)
        try:
            check(data)  # never keep a file that would not convince anyone
        except EncspacesError as error:
            log.warning("the evidence of %s does not prove it (%s): not written", type(exc).__name__, error)
            return
        self.recorded = proof
        self._persistence.pending.meta[EVIDENCE_META] = data
        await self._persistence.persist()

    async def _complete(self, proof: Evidence) -> Evidence:
        """Add the genesis, and the chain link's digests from the stored log (from the stored head
        nearest above the fork's seq, so the link stays short)."""
        genesis = proof.genesis
        if genesis is None:
            rows = await self._store.load_entries([1])
            if rows and space_id_of(rows[0][1]) == proof.space:  # a redacted genesis no longer hashes to it
                genesis = rows[0][1]
        proof = await self._fill_leaves(proof.replace(genesis=genesis))
        link = proof.link
        if link is None or link.digests is not None:
            return proof
        verifier = self._host.verifier
        candidates = [r for r in await self._store.load_relay_heads(link.seq) if r[0] <= verifier.seq]
        if not candidates:
            return proof
        seq, signed, signature = candidates[0]
        ours = SignedHead.decode([signed, signature])
        if seq == link.seq:  # a stored head at the fork's own seq: the two heads say it all
            statements = [s for s in proof.statements if not isinstance(s, LinkStatement)
                          and not (isinstance(s, HeadStatement) and s.role is Role.VERIFIED)]
            return proof.replace(statements=(*statements, HeadStatement(Role.VERIFIED, ours)))
        rows = await self._store.load_log(link.seq, seq)
        digests = tuple(stored_digest(raw) for _, raw, _ in rows)
        if len(digests) != seq - link.seq:
            return proof
        statements = [s for s in proof.statements if not isinstance(s, LinkStatement)
                      and not (isinstance(s, HeadStatement) and s.role is Role.VERIFIED)]
        return proof.replace(statements=(*statements, HeadStatement(Role.VERIFIED, ours),
                                         LinkStatement(Role.VERIFIED, link.seq, link.head, digests)))

    async def _fill_leaves(self, proof: Evidence) -> Evidence:
        """The digests of the log from seq 1 up to a relay-signed head at or past the checkpoint's
        size (the nearest one: the file stays small): from the store, then (entries verified but
        not stored yet when the space failed) the digests the proof carries in ``tail``."""
        leaves = proof.leaves
        if leaves is None or leaves.digests is not None:
            return proof
        verifier = self._host.verifier
        tail_end = leaves.tail_from - 1 + len(leaves.tail)
        heads = [s.head for s in proof.heads]
        if verifier.verified_head is not None:
            heads.append(verifier.verified_head)
        heads += [SignedHead.decode([signed, signature])
                  for _, signed, signature in await self._store.load_relay_heads(leaves.through)]
        usable = sorted((h for h in heads if leaves.through <= h.seq <= max(tail_end, verifier.seq)),
                        key=lambda h: h.seq)
        if not usable:
            return proof
        anchor = usable[0]
        if anchor.seq > MAX_LEAVES:
            log.warning("the log is too long (%d entries) to prove the fork by its leaves", anchor.seq)
            return proof
        rows = await self._store.load_log(0, anchor.seq)
        if [seq for seq, _, _ in rows] != list(range(1, len(rows) + 1)):
            return proof
        digests = [stored_digest(raw) for _, raw, _ in rows]
        if len(digests) < anchor.seq and leaves.tail_from <= len(digests) + 1 and tail_end >= anchor.seq:
            digests += leaves.tail[len(digests) + 1 - leaves.tail_from : anchor.seq + 1 - leaves.tail_from]
        if len(digests) != anchor.seq:
            return proof
        statements = [s for s in proof.statements if s is not leaves]
        if not any(isinstance(s, HeadStatement) and s.head == anchor for s in statements):
            statements.append(HeadStatement(Role.VERIFIED, anchor))
        return proof.replace(statements=(*statements, LeavesStatement(leaves.role, tuple(digests))))


__all__ = ["EvidenceKeeper"]
