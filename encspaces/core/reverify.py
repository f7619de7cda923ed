"""Re-verifying this device's own copy of a log from genesis (``encspaces verify``, ``log``).

Pure: stored rows (seq, raw entry, head) and epoch keys in, a report out; no store, no
socket. Every rule runs as when the entries first arrived (``LogVerifier.reverify_stored``),
except the relay's signatures over heads, which the local store does not keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EncspacesError, StoreError
from . import crypto
from .identity import Identity
from .membership import Member
from .verifier import LogVerifier, VerifiedEntry


@dataclass
class Reverification:
    """What re-verifying a stored log from genesis found: how far it got and, if it stopped, why."""

    seq: int  # the last seq that verified (0: none)
    head: bytes  # the head at ``seq``
    results: list[VerifiedEntry] = field(default_factory=list)  # in order, with late openings
    members: dict[bytes, Member] = field(default_factory=dict)  # membership at ``seq``, by signing key
    error: EncspacesError | None = None  # why verification stopped at ``seq + 1``; None: all verified

    @property
    def entries(self) -> list[VerifiedEntry]:
        """One result per verified entry, in log order (without the late openings of earlier entries)."""
        return [r for r in self.results if not r.late]


def reverify_log(space: bytes, identity: Identity, rows: list[tuple[int, bytes, bytes]],
                 keys: dict[int, bytes] | None = None) -> Reverification:
    """Verify stored rows (seq, raw entry, head) from genesis, one entry at a time (so a failure
    names its seq, and every stored head is checked against the chain); stops at the first failure,
    which the report holds as ``error`` (nothing is raised for a failure of the log itself).

    ``keys`` are epoch keys this device already holds (from its checkpoint): a member who joined
    with an invite got them through the invite's secret, which is not kept, and needs them to
    open what was written before.
    """
    verifier = LogVerifier(space, identity)
    verifier.epoch_keys.update(keys or {})
    report = Reverification(0, crypto.ZERO_HASH)
    try:
        for seq, raw, head in rows:
            if seq != verifier.seq + 1:
                raise StoreError(f"the local log has no entry at seq {verifier.seq + 1} (the next is at seq {seq})")
            report.results.extend(verifier.reverify_stored(seq, raw, head))
    except EncspacesError as exc:
        report.error = exc
    report.seq, report.head = verifier.seq, verifier.head
    report.members = dict(verifier.state.members)
    return report


__all__ = ["Reverification", "reverify_log"]
