"""Re-verifying this device's own copy of a log from genesis (``encspaces verify``, ``log``).

Pure: stored rows (seq, raw entry, head) and epoch keys in, a report out; no store, no
socket. Every rule runs as when the entries first arrived (``LogVerifier.reverify_stored``);
the relay's signatures are re-checked over the signed heads the store kept (one per frame in
the newest seqs, thinned further back: see ``encspaces.store``), each against the relay key the
genesis pins and the chain at its seq. The newest cosigned checkpoint notes the device kept
(one per witness, in its local checkpoint) are re-checked too: the relay's signature under the
space's origin, the cosignatures of the witnesses the log's policies name, and the root against
the Merkle root of the stored log at the checkpoint's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import EncspacesError, ProtocolError, StoreError
from . import crypto, merkle
from .entry import stored_digest
from .head import SignedHead
from .identity import Identity
from .membership import Member
from .note import Ed25519Verifier, SignedCheckpoint, space_origin
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
    # Cosigned checkpoints re-checked: (size, the policy witnesses whose cosignature verifies).
    checkpoints_checked: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)

    @property
    def entries(self) -> list[VerifiedEntry]:
        """One result per verified entry, in log order (without the late openings of earlier entries)."""
        return [r for r in self.results if not r.late]


def reverify_log(space: bytes, identity: Identity, rows: list[tuple[int, bytes, bytes]],
                 keys: dict[int, bytes] | None = None,
                 relay_heads: Sequence[tuple[int, bytes, bytes]] = (),
                 checkpoints: Sequence[bytes] = (), anchor: tuple[int, bytes] | None = None) -> Reverification:
    """Verify stored rows (seq, raw entry, head) from genesis, one entry at a time (so a failure
    names its seq, and every stored head is checked against the chain); stops at the first failure,
    which the report holds as ``error`` (nothing is raised for a failure of the log itself).

    ``keys`` are epoch keys this device already holds (from its checkpoint): a member who joined
    with an invite got them through the invite's secret, which is not kept, and needs them to
    open what was written before. ``anchor`` is the (seq, log state) a device that started at an
    anchor kept: its rows up to there are control entries and digests, checked as in that
    catch-up, and the state must be the one an agreed snapshot in the log covers.
    """
    verifier = LogVerifier(space, identity)
    verifier.epoch_keys.update(keys or {})
    report = Reverification(0, crypto.ZERO_HASH)
    try:
        if anchor is not None:
            verifier.expect_anchor()
        for seq, raw, head in rows:
            if seq != verifier.seq + 1:
                raise StoreError(f"the local log has no entry at seq {verifier.seq + 1} (the next is at seq {seq})")
            report.results.extend(verifier.reverify_stored(seq, raw, head))
            if anchor is not None and seq == anchor[0]:
                verifier.install_anchor(*anchor)
        if verifier.anchor is not None:
            at = "" if anchor is None else f" at seq {anchor[0]}"
            raise StoreError(f"this device started at the anchor{at}, but no agreed snapshot in its stored log "
                             "covers the log state it kept there")
        report.heads_checked = _check_heads(verifier, relay_heads)
        report.checkpoints_checked = _check_checkpoints(verifier, rows, checkpoints)
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


def _check_checkpoints(verifier: LogVerifier, rows: Sequence[tuple[int, bytes, bytes]],
                       notes: Sequence[bytes]) -> list[tuple[int, tuple[str, ...]]]:
    """Every kept checkpoint note: the relay's signature (key name = the space's origin, the key
    the genesis pins), at least one cosignature of a witness the log's policies name, and its
    root = the stored log's Merkle root at its size. The device kept only notes that passed all
    three: one that fails now means the store was altered."""
    if not notes:
        return []
    key = verifier.relay_key
    if key is None:
        raise StoreError("the local log has no genesis pinning the relay key")
    origin = space_origin(verifier.space)
    relay = Ed25519Verifier(origin, key)
    witnesses = {(w.name, w.verifier().key_id): w.verifier()
                 for _, policy in verifier.state.witness_policies for w in policy.witnesses}
    parsed: list[SignedCheckpoint] = []
    for data in notes:
        try:
            parsed.append(SignedCheckpoint.parse(data))
        except EncspacesError as exc:
            raise StoreError(f"a kept checkpoint note does not parse: {exc}") from exc
    sizes = {s.checkpoint.size for s in parsed}
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    frontier = merkle.Frontier()
    for seq, raw, _ in rows:
        if seq > verifier.seq or seq > max(sizes):
            break
        frontier.append(merkle.leaf_hash(merkle.entry_leaf(stored_digest(raw))))
        if seq in sizes:
            roots[seq] = frontier.root()
    checked: list[tuple[int, tuple[str, ...]]] = []
    for signed in parsed:
        cp = signed.checkpoint
        if cp.size > verifier.seq:
            continue  # beyond what re-verified (the report's error says why)
        text = signed.note.text.encode()
        lines = [s for s in signed.note.signatures if s.name == relay.name and s.key_id == relay.key_id]
        if cp.origin != origin or not lines or not all(relay.verify(text, s.signature) for s in lines):
            raise StoreError(f"the kept checkpoint of size {cp.size} is not signed by the space's relay key: "
                             "the local store was altered")
        cosigners = tuple(dict.fromkeys(
            w.name for s in signed.note.signatures
            if (w := witnesses.get((s.name, s.key_id))) is not None and w.verify(text, s.signature)))
        if not cosigners:
            raise StoreError(f"the kept checkpoint of size {cp.size} carries no cosignature of a witness the "
                             "space's policy names: the local store was altered")
        if roots.get(cp.size) != cp.root:
            raise StoreError(f"the kept checkpoint of size {cp.size} has root {cp.root.hex()[:16]}…, not the stored "
                             "log's root at that size: the local store was altered")
        checked.append((cp.size, cosigners))
    return checked


__all__ = ["Reverification", "reverify_log"]
