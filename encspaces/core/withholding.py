"""Heads the relay signed past what it delivered, held to a deadline: never "catching up" for ever.

An ack of our entries and a welcome carry a head the relay signed: "the log reaches seq n".
Once shown such a head, a device must receive the log up to it; a relay that never delivers
(a tail withheld, a welcome announcing a head it never serves) would otherwise keep the device
silently read-only, catching up for ever. ``WithholdingWatch`` keeps the highest such head and
counts the time spent **connected without progress**: offline time is not the relay's fault,
and a long catch-up that keeps advancing is honest (a relay that trickles entries slowly is an
availability problem, which no signature can prove). When that time passes the deadline the
result is a ``WithholdingError`` carrying the relay's signed head past ours and the newest head
we verified (``encspaces.core.evidence``).

Pure: the caller passes the time (seconds, monotonic) and the verified seq.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WithholdingError
from .evidence import Evidence, EvidenceKind, HeadStatement, Role, head_wire
from .head import SignedHead


@dataclass(frozen=True)
class HeadAhead:
    head: SignedHead
    role: Role  # Role.ACK or Role.WELCOME: how the relay presented it


class WithholdingWatch:
    """The highest relay-signed head past our verified seq, and how long we waited for it."""

    def __init__(self) -> None:
        self.ahead: HeadAhead | None = None
        self._waited = 0.0  # seconds connected without progress, banked from earlier connections
        self._since: float | None = None  # connected (and waiting) since; None while offline

    def saw(self, head: SignedHead, role: Role, verified_seq: int, now: float) -> None:
        """A checked relay-signed head: held to the deadline if it is past ``verified_seq``.

        The first ack head ahead starts the clock; a welcome's head counts from the start of
        its connection (it came with it, and may be noticed a little later); a higher head
        while waiting keeps the clock running (the relay gets no fresh start by signing more).
        """
        if head.seq <= verified_seq:
            return
        if self.ahead is None or self.ahead.head.seq <= verified_seq:
            self.ahead = HeadAhead(head, role)
            if role is not Role.WELCOME:
                self._waited = 0.0
                if self._since is not None:
                    self._since = now
        elif head.seq > self.ahead.head.seq:
            self.ahead = HeadAhead(head, role)

    def connected(self, now: float) -> None:
        """A connection opened: time counts from here (on top of earlier connections' only while a
        head is still ahead of us)."""
        if self._since is None:
            self._since = now
            if self.ahead is None:
                self._waited = 0.0

    def disconnected(self, now: float) -> None:
        if self._since is not None:
            self._waited += now - self._since
            self._since = None

    def progressed(self, verified_seq: int, now: float) -> None:
        """The verified log advanced: the clock starts again; a head now reached is done with."""
        if self.ahead is not None and self.ahead.head.seq <= verified_seq:
            self.ahead = None
        self._waited = 0.0
        if self._since is not None:
            self._since = now

    def waited(self, now: float) -> float:
        return self._waited + (now - self._since if self._since is not None else 0.0)

    def overdue(
        self, verified_seq: int, verified_head: SignedHead | None, now: float, deadline: float
    ) -> WithholdingError | None:
        """The error to fail with when the relay let the deadline pass, else None."""
        ahead = self.ahead
        if ahead is None or ahead.head.seq <= verified_seq:
            return None
        waited = self.waited(now)
        if waited <= deadline:
            return None
        statements = [HeadStatement(ahead.role, ahead.head)]
        if verified_head is not None and verified_head.seq < ahead.head.seq:
            statements.append(HeadStatement(Role.VERIFIED, verified_head))
        note = f"{waited:.0f} s connected without progress, deadline {deadline:g} s"
        proof = Evidence(EvidenceKind.WITHHOLDING, ahead.head.space, None, tuple(statements), note=note)
        return WithholdingError(
            f"the relay signed the log through seq {ahead.head.seq} (in its {ahead.role.value}) but, after "
            f"{waited:.0f} s connected without progress, delivered only through seq {verified_seq}: it withholds "
            f"seqs {verified_seq + 1}..{ahead.head.seq}",
            seq=ahead.head.seq, verified=verified_seq,
            evidence=tuple(head_wire(s.head) for s in statements), proof=proof,
        )


class SubmissionWatch:
    """Our oldest entry handed to the live connection, held to the deadline of time live until the
    verified log holds it.

    An honest relay answers every submission: it sequences it (the frame follows) or refuses it
    (a notice: the outbox backs off and sends again, and gives up after ``resubmit_limit``). A
    relay that does neither, or acks under a head not past our log, has signed nothing past
    what it delivered, so ``WithholdingWatch`` holds nothing; the device would wait for ever,
    its edits never sent to anyone and no error (a space silently stuck). Overdue once, the
    caller renews the connection (the entry is sent again: a relay that lost it honestly gets
    it anew); overdue again for the same entry, the caller fails the space.

    Pure: the caller reports, on each tick, the entry (its bytes, None when nothing of ours
    awaits the log or a resend is already scheduled), whether the session is live, and the time.
    """

    def __init__(self) -> None:
        self.entry: bytes | None = None
        self.renewed = False  # the connection was renewed once for this entry
        self._waited = 0.0  # seconds live with this entry awaiting the log
        self._last: float | None = None  # the previous tick's time, if the session was live then

    def observe(self, entry: bytes | None, live: bool, now: float) -> None:
        if entry != self.entry:
            self.entry, self._waited, self.renewed = entry, 0.0, False
        elif entry is not None and self._last is not None:
            self._waited += now - self._last  # live at the previous observation: the relay's time since
        self._last = now if live else None

    def overdue(self, deadline: float) -> bool:
        return self.entry is not None and self._waited > deadline

    def renew(self) -> None:
        """The caller renewed the connection: the entry gets a fresh deadline, once."""
        self._waited = 0.0
        self.renewed = True

    def waited(self) -> float:
        return self._waited


__all__ = ["HeadAhead", "SubmissionWatch", "WithholdingWatch"]
