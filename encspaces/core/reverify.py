"""Re-verifying this device's own copy of a log from genesis (``encspaces verify``, ``log``).

Pure: stored rows (seq, raw entry, head) and epoch keys in, a report out; no store, no
socket. Every rule runs as when the entries first arrived (``LogVerifier.reverify_stored``);
the relay's signatures are re-checked over the signed heads the store kept (one per frame in
the newest seqs, thinned further back: see ``encspaces.store``), each against the relay key the
genesis pins and the chain at its seq.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import EncspacesError, ProtocolError, StoreError
from . import crypto
from .head import SignedHead
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
    heads_checked: int = 0  # relay-signed heads whose signature and hash were re-checked

    @property
    def entries(self) -> list[VerifiedEntry]:
        """One result per verified entry, in log order (without the late openings of earlier entries)."""
        return [r for r in self.results if not r.late]


def reverify_log(space: bytes, identity: Identity, rows: list[tuple[int, bytes, bytes]],
                 keys: dict[int, bytes] | None = None,
                 relay_heads: Sequence[tuple[int, bytes, bytes]] = ()) -> Reverification:
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
        report.heads_checked = _check_heads(verifier, relay_heads)
    except EncspacesError as exc:
        report.error = exc
    report.seq, report.head = verifier.seq, verifier.head
    report.members = dict(verifier.state.members)
    return report


def _check_heads(verifier: LogVerifier, relay_heads: Sequence[tuple[int, bytes, bytes]]) -> int:
    """Every stored relay-signed head: signed by the relay key the genesis pins, for this space,
    and carrying our chain's hash at its seq. A head that fails was not what this device checked
    when it stored it: the store was altered."""
    key = verifier.relay_key
    checked = 0
    for seq, signed, signature in relay_heads:
        if seq > verifier.seq:
            continue  # beyond what re-verified (the report's error says why)
        try:
            head = SignedHead.decode([signed, signature])
        except ProtocolError as exc:
            raise StoreError(f"the stored relay head at seq {seq} does not decode: {exc}") from exc
        if key is None:
            raise StoreError("the local log has no genesis pinning the relay key")
        head.check(key, verifier.space)
        if head.seq != seq or head.head != verifier.state.heads[seq]:
            raise StoreError(f"the stored relay head at seq {seq} does not match the stored chain there: "
                             "the local store was altered")
        checked += 1
    return checked


__all__ = ["Reverification", "reverify_log"]
