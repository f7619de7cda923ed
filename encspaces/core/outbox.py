"""The write pipeline's bookkeeping as plain state: what is numbered, stored, sent, and what to do next.

No event loop, no store, no CRDT: the SDK (encspaces/write_pipeline.py) feeds it what happened
(an entry was queued, a store write committed, the log verified our entries, the relay refused
one, the epoch moved) and does what the returned decisions say. The rules it keeps:

- Numbering: our entries carry author_seq 1, 2, 3... without a gap; an entry too large for the
  relay takes no number. Dropping entries (a conflict, a withdrawal) numbers the later ones again.
- Write before send, except edits: an entry is submitted once the stored outbox holds it
  (``durable_through``; a store write that began before a renumbering, ``generation``, proves
  nothing). A data entry goes at once, beside the write that stores it, once this session's
  Yjs nonce is durable (``session_stored``) in a space that binds client ids: a crash may then
  leave the relay holding an author_seq this device numbers again, and the catch-up finds it,
  signed by our key under a nonce of ours, so the device applies it as its own edit and numbers
  its unsent entries after it (``displaced``), where another machine's entry says
  ``DeviceKeyInUseError``. Admin entries keep waiting: they are few, and whoever waits on one
  is told it was submitted.
- Freshness (the removal window): nothing is sent while the view of the log is older than the
  limit; the connection is refreshed instead, once per connection.
- Re-issue: when the epoch moves under our unsent entries they are issued again under the new
  one (``rekey.reissue_all``); so are the entries after a dropped one. Entries after our own
  new epoch (a rotation, a removal) are not sent before the log holds it: written under the
  epoch it ends, the relay would refuse them, and the change in the same submission with them.
- Refusals that do not close the connection are retried after a doubling backoff; after
  ``resubmit_limit`` of them in a row with neither the epoch nor our verified entries moving,
  the caller fails the space.
- Policy (``Upkeep``): which epoch keys to forget, which expired invites to revoke, and whether
  a rotation is due, each asked for once.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ..errors import EntryTooLargeError
from .codes import RefusalCode
from .entry import Entry, Kind, build_entry
from .identity import Identity
from .key_policy import retired_epochs, rotation_due
from .log_state import LogState
from .membership import Role
from .rekey import reissue_all

# (old raw, new raw or None when dropped): how queued entries were renamed, for whoever waits on them.
Rename = tuple[bytes, bytes | None]


@dataclass(frozen=True)
class Submission:
    """Send these entries now, in order (the caller cuts them into frames)."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Refresh:
    """The view of the log is too old to send under: reconnect for a freshly signed head first."""


@dataclass(frozen=True)
class Conflict:
    """The relay refused ``entry`` as moot (another admin's change): it was dropped, later ones renumbered."""

    entry: Entry
    renames: tuple[Rename, ...]


@dataclass(frozen=True)
class Backoff:
    """Send the outbox again after ``backoff_delay(attempt, ...)`` seconds (then call ``resend``)."""

    attempt: int


@dataclass(frozen=True)
class GiveUp:
    """``refusals`` refusals in a row without progress: the relay is refusing forever; fail the space."""

    refusals: int
    epoch: int
    author_seq: int


class Withdrawal(enum.Enum):
    """What became of an admin action the caller stopped waiting for."""

    TOOK_EFFECT = "it took effect as the time ran out: check space.members/invites"
    NOTHING_SENT = "nothing of it was sent: it will not take effect"
    SUBMITTED = "it was submitted; it may still take effect: check space.members/invites"
    WITHDRAWN = "withdrawn before it reached the relay: it will not take effect"
    WITHDRAWN_PARTLY = ("withdrawn before it reached the relay: it will not take effect "
                        "(what it had already put in the log stays)")


def backoff_delay(attempt: int, minimum: float, maximum: float, jitter: float) -> float:
    """Seconds before resending after the ``attempt``-th refusal: doubling, capped, times 0.5 + jitter (in [0, 1))."""
    return float(min(minimum * 2.0 ** (attempt - 1), maximum) * (0.5 + jitter))


class Outbox:
    """Our signed entries not yet in the verified log, and what may be done with them."""

    def __init__(self, identity: Identity, space: bytes, max_entry: int) -> None:
        self.identity = identity
        self.space = space
        self.me = identity.public.sign_key
        self.max_entry = max_entry  # the largest entry the relay accepts, in bytes
        self.entries: list[Entry] = []
        self.last_author_seq = 0  # newest author_seq we created
        self.sent_through = 0  # author_seq sent on the current connection
        self.submitted_through = 0  # newest author_seq ever handed to a connection (never lowered)
        self.durable_through = 0  # every entry up to this author_seq is in the stored outbox
        self.session_stored = False  # this session's nonce is durable: data entries may go ahead of their write
        self.generation = 0  # bumped when entries are numbered again
        self.refusals = 0  # refusals in a row without progress
        self.refusal_mark: tuple[int, int] = (0, 0)  # (epoch, our verified author_seq) they were counted at
        self.backoff_pending = False  # a resend is scheduled
        self.refresh_asked = False  # a fresher view was asked for on this connection

    # --- numbering ------------------------------------------------------------------------------

    def build(
        self, kind: Kind, payload: bytes, state: LogState, keys: dict[int, bytes],
        parent: tuple[int, bytes] | None = None, time_ms: int | None = None,
    ) -> Entry:
        """Sign ``payload`` as our next entry and queue it; its parent is the verified head unless given.

        Raises ``EntryTooLargeError`` (taking no number) when the relay would refuse its size.
        """
        epoch = state.epoch
        parent_seq, parent_hash = parent or (state.seq, state.head)
        entry = build_entry(
            self.identity, space=self.space, author_seq=self.last_author_seq + 1, epoch=epoch, kind=kind,
            parent_seq=parent_seq, parent_hash=parent_hash, payload=payload,
            epoch_key=keys.get(epoch) if kind.is_encrypted else None, time_ms=time_ms,
        )
        if len(entry.raw) > self.max_entry:
            raise EntryTooLargeError(
                f"a {kind.value} entry of {len(entry.raw)} bytes is over the relay's limit of {self.max_entry}"
            )
        self.last_author_seq += 1
        self.entries.append(entry)
        return entry

    def restored(self, entries: Sequence[Entry], verified_mine: int) -> None:
        """The outbox as the store held it (every entry durable); entries already in the log are skipped."""
        self.last_author_seq = max(self.last_author_seq, verified_mine)
        for entry in entries:
            if entry.header.author_seq <= verified_mine:
                continue
            self.entries.append(entry)
            self.last_author_seq = max(self.last_author_seq, entry.header.author_seq)
        self.durable_through = self.last_author_seq

    def stored(self, through: int, generation: int) -> None:
        """A store write holding our entries through ``through`` committed; it began at ``generation``."""
        if generation == self.generation:
            self.durable_through = max(self.durable_through, through)

    # --- sending --------------------------------------------------------------------------------

    def connection_started(self, verified_mine: int) -> None:
        """A new connection: everything after what the log holds is sent on it again."""
        self.sent_through = verified_mine
        self.refresh_asked = False

    def to_send(
        self, now_ms: int, fresh_ms: int, freshness_limit_ms: int, bound: bool = False,
    ) -> Submission | Refresh | None:
        """What to hand a live connection now, if the view is fresh: in order, the entries not yet sent
        on it that are durable, or are data entries that may go ahead of their write (``bound``: the
        space binds client ids, so a data entry names the session that wrote it)."""
        if now_ms - fresh_ms > freshness_limit_ms:
            # Our view may miss a removal the relay is withholding: send nothing under it.
            if not self.refresh_asked and any(e.header.author_seq > self.sent_through for e in self.entries):
                self.refresh_asked = True
                return Refresh()
            return None
        ahead = bound and self.session_stored
        ready: list[Entry] = []
        for entry in self.entries:
            author_seq = entry.header.author_seq
            if author_seq > self.sent_through:
                if author_seq > self.durable_through and not (ahead and entry.header.kind is Kind.DATA):
                    break  # (in order: nothing after an entry that must wait)
                ready.append(entry)
            if entry.header.kind.starts_epoch:
                # What follows our own new epoch was written under the one it ends: the relay would
                # refuse it, and the submission with it (all or nothing). It is issued again once the
                # log holds the change (needs_reissue), or numbered again if the change is refused.
                break
        if not ready:
            return None
        self.sent_through = ready[-1].header.author_seq
        self.submitted_through = max(self.submitted_through, self.sent_through)
        return Submission(tuple(ready))

    def awaiting_log(self) -> Entry | None:
        """Our oldest entry handed to a connection (this one or one before) and not yet in the
        verified log; None when there is none, or while a resend after a refusal is scheduled
        (the relay answered)."""
        if self.backoff_pending or not self.entries or self.entries[0].header.author_seq > self.submitted_through:
            return None
        return self.entries[0]

    # --- the verified log ---------------------------------------------------------------------

    def verified(self, verified_mine: int) -> int | None:
        """The log holds our entries through ``verified_mine``: returns through which the stored
        outbox is done (None: nothing left it)."""
        self.last_author_seq = max(self.last_author_seq, verified_mine)
        if self.entries and self.entries[0].header.author_seq <= verified_mine:
            self.entries = [e for e in self.entries if e.header.author_seq > verified_mine]
            return verified_mine
        return None

    def needs_reissue(self, epoch: int) -> bool:
        """Our first unsent entry is under an epoch that ended: everything must be issued again."""
        return bool(self.entries) and self.entries[0].header.epoch != epoch

    def reissue_all(self, state: LogState, keys: dict[int, bytes], time_ms: int | None = None) -> list[Rename]:
        """Issue every queued entry again under the current epoch, numbered after what the log holds."""
        old = self.entries
        self._renumber_from(state.author_seqs.get(self.me, 0), [])
        return self._requeue(old, state, keys, time_ms)

    def displaced(
        self, in_log: Collection[bytes], state: LogState, keys: dict[int, bytes], time_ms: int | None = None,
    ) -> list[Rename]:
        """The log holds entries by our key that this outbox does not (another machine with our key,
        or an edit of ours that left before a crash took its write) at author_seqs we had numbered:
        what of ours is in the log stays done, the rest is issued again numbered after the log."""
        old = [e for e in self.entries if e.raw not in in_log]
        self._renumber_from(state.author_seqs.get(self.me, 0), [])
        return self._requeue(old, state, keys, time_ms)

    def drop(
        self, drop: Collection[bytes], state: LogState, keys: dict[int, bytes], time_ms: int | None = None,
    ) -> list[Rename]:
        """Take entries ``drop`` (none of them in the log) out and number the ones after them again.

        What precedes the first dropped entry stays as it is.
        """
        first = min(e.header.author_seq for e in self.entries if e.raw in drop)
        keep = [e for e in self.entries if e.header.author_seq < first]
        later = [e for e in self.entries if e.header.author_seq > first and e.raw not in drop]
        self._renumber_from(first - 1, keep)
        return [(raw, None) for raw in drop] + self._requeue(later, state, keys, time_ms)

    def _renumber_from(self, last: int, keep: list[Entry]) -> None:
        self.entries = keep
        self.last_author_seq = last
        self.sent_through = min(self.sent_through, last)
        self.durable_through = min(self.durable_through, last)
        self.generation += 1

    def _requeue(
        self, entries: Sequence[Entry], state: LogState, keys: dict[int, bytes], time_ms: int | None,
    ) -> list[Rename]:
        renames: list[Rename] = []
        for old, again in reissue_all(entries, state, keys):
            new = None if again is None else self.build(*again, state, keys, time_ms=time_ms).raw
            renames.append((old.raw, new))
        return renames

    # --- withdrawal and refusals --------------------------------------------------------------

    def withdraw(
        self, raws: Collection[bytes], state: LogState, keys: dict[int, bytes], time_ms: int | None = None,
    ) -> tuple[Withdrawal, list[Rename]]:
        """Take an action's entries ``raws`` out unless one of them was already submitted."""
        queued = [e for e in self.entries if e.raw in raws]
        if not queued:
            return (Withdrawal.TOOK_EFFECT if raws else Withdrawal.NOTHING_SENT), []
        if any(e.header.author_seq <= self.submitted_through for e in queued):
            return Withdrawal.SUBMITTED, []
        renames = self.drop({e.raw for e in queued}, state, keys, time_ms)
        return (Withdrawal.WITHDRAWN_PARTLY if len(queued) < len(raws) else Withdrawal.WITHDRAWN), renames

    def refused(
        self, code: str, ref: int | None, state: LogState, keys: dict[int, bytes], resubmit_limit: int,
        time_ms: int | None = None,
    ) -> Conflict | Backoff | GiveUp | None:
        """The relay refused our entry ``ref`` without closing: what to do (None: wait, a resend or
        a re-issue is already on its way)."""
        entry = next((e for e in self.entries if e.header.author_seq == ref), None)
        if code == RefusalCode.CONFLICT and entry is not None:
            # What precedes it was in earlier submissions, which the relay took: keep it as is.
            return Conflict(entry, tuple(self.drop({entry.raw}, state, keys, time_ms)))
        mark = (state.epoch, state.author_seqs.get(self.me, 0))
        if mark != self.refusal_mark:
            self.refusal_mark, self.refusals = mark, 0
        if self.backoff_pending:
            return None  # a refusal of the round already counted: the scheduled resend covers it
        self.refusals += 1
        if self.refusals >= resubmit_limit:
            return GiveUp(self.refusals, mark[0], mark[1])
        if self.entries and self.entries[0].header.epoch == state.epoch:
            self.backoff_pending = True
            return Backoff(self.refusals)
        return None  # the rotation that ended our epoch is on its way; re-issuing will resend

    def resend(self, verified_mine: int) -> None:
        """The backoff ran out: send everything after what the log holds again."""
        self.backoff_pending = False
        self.sent_through = verified_mine


@dataclass(frozen=True)
class UpkeepPlan:
    """What the time- and size-based policy asks for now."""

    forget: frozenset[int] = frozenset()  # epochs whose keys to forget (retention)
    revoke: tuple[bytes, ...] = ()  # expired open invites to revoke (admins, while connected)
    rotate: bool = False  # queue a rotation (admins)


@dataclass
class Upkeep:
    """Asks for each revocation and each epoch's rotation once."""

    revoking: set[bytes] = field(default_factory=set)
    rotation_queued_for: int = 0

    def plan(self, state: LogState, held: set[int], me: bytes, connected: bool, now_ms: int) -> UpkeepPlan:
        if state.seq == 0:
            return UpkeepPlan()
        forget = frozenset(retired_epochs(state, held, now_ms))
        admin = state.role_of(me) is Role.ADMIN
        revoke: list[bytes] = []
        if admin and connected:
            # An expired invite can no longer be used, but would still receive every new key.
            for key, invite in state.invites.items():
                if invite.open and invite.expired_at(now_ms) and key not in self.revoking:
                    self.revoking.add(key)
                    revoke.append(key)
        rotate = admin and self.rotation_queued_for != state.epoch and rotation_due(state, now_ms)
        if rotate:
            self.rotation_queued_for = state.epoch
        return UpkeepPlan(forget, tuple(revoke), rotate)


__all__ = [
    "Backoff", "Conflict", "GiveUp", "Outbox", "Refresh", "Rename", "Submission", "Upkeep", "UpkeepPlan",
    "Withdrawal", "backoff_delay",
]
