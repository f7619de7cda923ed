"""WitnessTracker: how far the log this device verified is witnessed, and what contradicts it (pure).

A device verifies every entry itself, so witnesses add nothing to *what* it accepts; they tell it
whether *everyone* is shown the same log. The relay signs checkpoints (C2SP tlog-checkpoint:
origin, tree size, RFC 6962 root over the log's leaves, see encspaces/core/merkle.py), witnesses
cosign a checkpoint only if it extends the last one they cosigned, and this tracker compares
every checkpoint it hears of, from the relay or from a witness directly, with the tree of the
log this device verified:

- a checkpoint at a size we verified must carry our root at that size; where that root was not
  recorded (we passed that size before hearing of the checkpoint) the tracker asks for a
  consistency proof from that size to our verified size, which the relay must answer;
- a checkpoint past our verified size is the relay saying it has more: the entries must arrive
  before ``deadline`` seconds pass, or :class:`CheckpointWithheldError`;
- a relay head smaller than a checkpoint the relay signed is :class:`CheckpointRollbackError`;
- any contradiction is :class:`CheckpointForkError`; each error carries the signed statements
  (``evidence``) and an evidence file to be completed by the SDK (``proof``, see
  encspaces/core/evidence.py: for a fork against our log, the leaves are filled in from the store).

``witnessed_seq`` is the largest size N such that, under the policy in force at N, at least
``quorum`` witnesses each cosigned some checkpoint of size >= N consistent with our log. A witness
cosigns only extensions of what it cosigned before, so its newest consistent checkpoint vouches
for every prefix; quorum therefore does not need k cosignatures on one checkpoint text, which
direct polls of independent witnesses rarely produce.

Policy history is plain data (:class:`QuorumRule`: from which seq a witness set and quorum
govern). A rule starting at seq s > 1 counts only once the entry at s is covered under the rule
before it (a quorum of the old witnesses past s, or an old rule without witnesses), so a relay
cannot swap in witnesses it controls by writing a policy entry the old witnesses never saw.

State is ``O(log n)`` for the log (a Merkle frontier) plus a few checkpoints per witness;
feeding one verified entry costs one leaf hash and on average one interior hash. Time comes from
an injected clock (seconds, monotonic); nothing here sleeps or does I/O.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import (
    CheckpointForkError,
    CheckpointRollbackError,
    CheckpointWithheldError,
    EncspacesError,
    MalformedNoteError,
    MerkleArgumentError,
    MerkleProofError,
    ProtocolError,
    RelaySignatureError,
    StoreError,
)
from . import merkle
from .encoding import as_bytes, as_int, as_list, as_map, as_str, pack, unpack
from .encoding import field as map_field
from .evidence import CheckpointStatement, Evidence, EvidenceKind, HeadStatement, LeavesStatement, Role, Statement
from .head import SignedHead
from .note import CosignatureVerifier, Ed25519Verifier, SignedCheckpoint, space_origin
from .witness_policy import WitnessPolicy

DEFAULT_DEADLINE = 30.0  # seconds; the SDK passes SpaceOptions.freshness_limit
MAX_PENDING = 64  # checkpoints past our verified size kept at once (by size)
MAX_PROOF_REQUESTS = 64
_RECENT_ROOTS = 64  # roots recorded while passing checkpoint sizes, kept for late copies
RECENT_LEAVES = 4096  # digests of the newest entries, for a fork's evidence (the store may lag behind)

WitnessId = tuple[str, bytes]  # (key name, Ed25519 public key)


@dataclass(frozen=True)
class QuorumRule:
    """From ``from_seq`` on (until the next rule), checkpoints need ``quorum`` of ``witnesses``."""

    from_seq: int
    witnesses: tuple[WitnessId, ...]
    quorum: int

    def __post_init__(self) -> None:
        if self.from_seq < 1:
            raise MerkleArgumentError(f"a witness rule starts at seq >= 1, not {self.from_seq}")
        if not 0 <= self.quorum <= len(self.witnesses) or (self.witnesses and self.quorum < 1):
            raise MerkleArgumentError(f"quorum {self.quorum} of {len(self.witnesses)} witnesses")


@dataclass(frozen=True)
class ProofRequest:
    """Ask the relay for a consistency proof from size ``first`` to size ``second``."""

    first: int
    second: int


@dataclass(frozen=True)
class WitnessStatus:
    """For status lines: witnessed through ``seq`` with ``cosigners`` of ``witnesses`` (quorum ``quorum``)."""

    seq: int | None
    cosigners: int
    witnesses: int
    quorum: int
    verified: int

    def describe(self) -> str:
        """``witnessed through N (k of n)``, or ``not witnessed (no witnesses)``."""
        if self.seq is None:
            return "not witnessed (no witnesses)"
        if self.seq == 0:
            return f"not witnessed yet (quorum {self.quorum} of {self.witnesses})"
        return f"witnessed through {self.seq} ({self.cosigners} of {self.witnesses})"


@dataclass
class _Seen:
    """One checkpoint (size, root) as heard so far: every signature line merged in."""

    signed: SignedCheckpoint
    since: float

    @property
    def size(self) -> int:
        return self.signed.checkpoint.size

    def merge(self, other: SignedCheckpoint) -> None:
        self.signed = self.signed.with_signatures(other.note.signatures)


@dataclass
class _Awaiting:
    """Checkpoints below our verified size waiting for the relay's consistency proof."""

    root: bytes  # our root at ``second``
    since: float
    checkpoints: list[_Seen] = field(default_factory=list)


# SHA-256 after the leaf prefix and context (``merkle.leaf_hash`` of ``merkle.entry_leaf``):
# ``copy()`` then the digest is cheaper than hashing both again for every entry.
_ENTRY_LEAF_HASHER = hashlib.sha256(merkle.LEAF_PREFIX + merkle.LEAF_CONTEXT)


def entry_leaf_hash(entry_digest: bytes) -> bytes:
    """The Merkle leaf hash of the entry with this digest (leaf i = entry at seq i + 1)."""
    if len(entry_digest) != merkle.HASH_SIZE:
        merkle.entry_leaf(entry_digest)  # raises the MerkleArgumentError
    h = _ENTRY_LEAF_HASHER.copy()
    h.update(entry_digest)
    return h.digest()


class WitnessTracker:
    """One space's witnessing state on one device (see the module docstring)."""

    def __init__(
        self,
        space: bytes,
        relay_key: bytes | None,
        rules: Sequence[QuorumRule],
        clock: Callable[[], float],
        deadline: float = DEFAULT_DEADLINE,
        *,
        size: int = 0,
        peaks: Sequence[bytes] = (),
    ) -> None:
        self.space = space
        self.origin = space_origin(space)
        self._relay: Ed25519Verifier | None = None
        self._early: list[tuple[bytes, bool]] = []
        self.set_relay_key(relay_key)
        self.clock = clock  # monotonic seconds; the SDK sets its SpaceOptions clock
        self.deadline = deadline
        self._frontier = merkle.Frontier(size, peaks)
        self._rules: tuple[QuorumRule, ...] = ()
        self._cosigners: dict[tuple[str, bytes], CosignatureVerifier] = {}  # (name, key ID) -> verifier
        self._roots: OrderedDict[int, bytes] = OrderedDict()
        self._recent: deque[bytes] = deque(maxlen=RECENT_LEAVES)  # digests of entries verified - len + 1 ..
        # A fork found while growing the tree leaves it mid-frame: the same error (whose proof the
        # verifier completes with the frame) is raised again, never a second one with less proof.
        self.failure: CheckpointForkError | None = None
        self._pending: dict[int, _Seen] = {}
        self._awaiting: dict[tuple[int, int], _Awaiting] = {}
        self._best: dict[WitnessId, tuple[int, bytes]] = {}  # newest consistent cosigned size, its note
        self._relay_max: tuple[int, bytes] | None = None  # largest relay-signed checkpoint heard of
        self._witnessed = 0
        self._head: tuple[int, bytes] | None = None  # the relay's newest signed head at or below verified
        self.head_seq = 0  # the seq of the relay's last signed head (welcome, frame or ack)
        self.set_rules(rules)

    # --- inputs -----------------------------------------------------------------------------

    def set_relay_key(self, relay_key: bytes | None) -> None:
        """The relay key the genesis pins (unknown until the verifier read it): checkpoints heard
        of before are checked now (a relay's that fails raises; a witness's is dropped)."""
        self._relay = None if relay_key is None else Ed25519Verifier(self.origin, relay_key)
        if self._relay is None:
            return
        early, self._early = self._early, []
        for data, from_witness in early:
            try:
                self.add_checkpoint(data, from_witness=from_witness)
            except (RelaySignatureError, MalformedNoteError):
                if not from_witness:
                    raise

    def set_rules(self, rules: Sequence[QuorumRule]) -> None:
        """The policy history as the verified log states it (the SDK passes it again on change)."""
        ordered = tuple(sorted(rules, key=lambda r: r.from_seq))
        if not ordered or ordered[0].from_seq != 1:
            ordered = (QuorumRule(1, (), 0), *ordered)
        self._rules = ordered
        self._cosigners = {}
        for rule in ordered:
            for name, key in rule.witnesses:
                verifier = CosignatureVerifier(name, key)
                self._cosigners[(name, verifier.key_id)] = verifier
        self._recompute()

    def append(self, seq: int, entry_digest: bytes) -> None:
        """The verifier accepted the entry at ``seq`` (the next one): extend our tree."""
        self.extend(seq, (entry_digest,))

    def extend(self, first_seq: int, entry_digests: Iterable[bytes]) -> None:
        """The verifier accepted the entries from ``first_seq`` on (the next ones): extend our tree.

        One call for a frame's entries (thousands on a new device). A checkpoint at a size
        reached on the way is compared there; a fork raises with the tree at that size.
        """
        if self.failure is not None:
            raise self.failure
        frontier = self._frontier
        if first_seq != frontier.size + 1:
            raise MerkleArgumentError(f"witness tracker: entry at seq {first_seq}, expected seq {frontier.size + 1}")
        pending, recent = self._pending, self._recent
        for seq, entry_digest in enumerate(entry_digests, first_seq):
            frontier.append(entry_leaf_hash(entry_digest))
            recent.append(entry_digest)
            seen = pending.pop(seq, None) if pending else None
            if seen is not None:
                root = frontier.root()
                self._remember_root(seq, root)
                try:
                    self._check_root(seen, root)
                except CheckpointForkError as exc:
                    self.failure = exc
                    raise
                self._credit(seen)

    def add_checkpoint(self, data: bytes, *, from_witness: bool = False) -> list[ProofRequest]:
        """A checkpoint note from the relay or a witness: check it, compare it, count it.

        Raises MalformedNoteError / RelaySignatureError for a note that is not a relay-signed
        checkpoint of this space (the SDK ignores those from a witness: a lying witness cannot
        fail the space), CheckpointForkError / CheckpointRollbackError when it contradicts what
        the relay said or delivered. Returns the consistency proofs to ask the relay for.
        ``from_witness``: fetched from a witness (only matters for notes kept until the genesis).
        """
        if self.failure is not None:
            raise self.failure
        if self._relay is None:  # a new device, before the genesis: kept until the relay key is known
            if len(self._early) < MAX_PENDING:
                self._early.append((data, from_witness))
            return []
        signed = SignedCheckpoint.parse(data)
        cp = signed.checkpoint
        if cp.origin != self.origin:
            raise RelaySignatureError(f"checkpoint of origin {cp.origin[:80]!r}, expected {self.origin}")
        self._check_relay_signature(signed)
        seen = _Seen(signed, self.clock())
        self._check_same_size(seen)
        if self._relay_max is None or cp.size > self._relay_max[0]:
            self._relay_max = (cp.size, signed.encode())
        verified = self.verified
        if cp.size > verified:
            pending = self._pending.get(cp.size)
            if pending is not None:
                pending.merge(signed)
            elif len(self._pending) < MAX_PENDING:
                self._pending[cp.size] = seen
            else:  # keep the largest ones: they bound what the relay must deliver
                smallest = min(self._pending)
                if cp.size > smallest:
                    self._pending[cp.size] = seen
            return []
        root = self._frontier.root() if cp.size == verified else self._roots.get(cp.size)
        if cp.size == 0:
            root = merkle.EMPTY_ROOT
        if root is not None:
            self._check_root(seen, root)
            self._credit(seen)
            return []
        key = (cp.size, verified)
        waiting = self._awaiting.get(key)
        if waiting is None:
            if len(self._awaiting) >= MAX_PROOF_REQUESTS:
                return []  # enough outstanding; a later poll brings it back
            waiting = self._awaiting[key] = _Awaiting(self._frontier.root(), self.clock())
            waiting.checkpoints.append(seen)
            return [ProofRequest(cp.size, verified)]
        waiting.checkpoints.append(seen)
        return []

    def add_latest(self, data: bytes) -> list[ProofRequest]:
        """The relay's answer to "your newest checkpoint": like :meth:`add_checkpoint`, and it must
        not be smaller than a checkpoint the relay signed before (a witness may have shown us one)."""
        before = self._relay_max
        requests = self.add_checkpoint(data)
        size = SignedCheckpoint.parse(data).checkpoint.size
        if before is not None and size < before[0]:
            raise CheckpointRollbackError(
                f"the relay's newest checkpoint is of size {size}, but it signed one of size {before[0]}: "
                f"it went back to an older log (restored from an old copy?)",
                size=before[0], evidence=(before[1], data),
                proof=self._proof(EvidenceKind.ROLLBACK, [CheckpointStatement(Role.CHECKPOINT, before[1]),
                                                          CheckpointStatement(Role.LATEST, data)]),
            )
        return requests

    def add_consistency_proof(self, first: int, second: int, proof: Sequence[bytes]) -> None:
        """The relay's answer to a :class:`ProofRequest`; one that does not verify is a fork."""
        waiting = self._awaiting.pop((first, second), None)
        if waiting is None:
            return  # not asked (or answered already): nothing to learn
        for seen in waiting.checkpoints:
            try:
                merkle.verify_consistency(first, second, seen.signed.checkpoint.root, waiting.root, proof)
            except MerkleProofError as exc:
                raise CheckpointForkError(
                    f"the relay signed a checkpoint of size {first} (root {seen.signed.checkpoint.root.hex()[:16]}…) "
                    f"it cannot prove consistent with the log it delivered to us through seq {second} "
                    f"(root {waiting.root.hex()[:16]}…): {exc}",
                    size=first, evidence=self._evidence(seen), proof=self._fork_proof(seen),
                ) from exc
            self._credit(seen)

    def observe_head(self, seq: int, statement: bytes, role: Role = Role.WELCOME) -> None:
        """The relay's signed head (wire bytes) from a welcome, frame or ack (``role``).

        A welcome's head is the relay's statement of its newest log: it must not be smaller than
        a checkpoint the relay signed. Frames and acks carry the head as of their own entries,
        which may lawfully be older than a checkpoint heard of meanwhile (a catch-up in several
        frames; a checkpoint fetched from a witness before the frame that reaches it arrives):
        those are held to the checkpoint's deadline instead (``check_deadlines``).
        """
        if role is Role.WELCOME and self._relay_max is not None and seq < self._relay_max[0]:
            size, note = self._relay_max
            raise CheckpointRollbackError(
                f"the relay's signed head is at seq {seq}, but it signed a checkpoint of size {size}: "
                f"it went back to an older log (restored from an old copy?)",
                size=size, evidence=(note, statement),
                proof=self._proof(EvidenceKind.ROLLBACK, [CheckpointStatement(Role.CHECKPOINT, note),
                                                          *_head_statement(statement, role)]),
            )
        if seq <= self.verified and (self._head is None or seq >= self._head[0]):
            self._head = (seq, statement)
        self.head_seq = seq

    def check_deadlines(self) -> None:
        """Raise CheckpointWithheldError if a checkpoint past our log (or a proof) is overdue."""
        if self.failure is not None:
            raise self.failure
        now = self.clock()
        for size in sorted(self._pending):
            seen = self._pending[size]
            if now - seen.since >= self.deadline:
                raise CheckpointWithheldError(
                    f"the relay signed a checkpoint of size {size} {now - seen.since:.0f} s ago but delivered "
                    f"the log only through seq {self.verified}",
                    size=size, verified=self.verified, evidence=(seen.signed.encode(),),
                    proof=self._proof(EvidenceKind.WITHHOLDING, [
                        CheckpointStatement(Role.CHECKPOINT, seen.signed.encode()),
                        *([] if self._head is None else _head_statement(self._head[1], Role.VERIFIED))]),
                )
        for (first, second), waiting in self._awaiting.items():
            if now - waiting.since >= self.deadline:
                seen = waiting.checkpoints[0]
                raise CheckpointWithheldError(
                    f"the relay did not prove its checkpoint of size {first} consistent with the log it "
                    f"delivered through seq {second} within {self.deadline:g} s",
                    size=first, verified=self.verified, evidence=self._evidence(seen),
                )

    def restart_deadlines(self) -> list[ProofRequest]:
        """A new connection: deadlines count from now (time offline is not withholding), and
        the proofs asked on the old connection are asked again (returned)."""
        now = self.clock()
        for seen in self._pending.values():
            seen.since = now
        for waiting in self._awaiting.values():
            waiting.since = now
        return [ProofRequest(first, second) for first, second in self._awaiting]

    # --- outputs ----------------------------------------------------------------------------

    @property
    def verified(self) -> int:
        return self._frontier.size

    @property
    def root(self) -> bytes:
        """The root of the tree of the log we verified."""
        return self._frontier.root()

    @property
    def enabled(self) -> bool:
        return any(rule.quorum for rule in self._rules)

    @property
    def witnessed_seq(self) -> int | None:
        """See the module docstring; None for a space whose policy never named witnesses."""
        return self._witnessed if self.enabled else None

    @property
    def settled(self) -> bool:
        """Nothing heard of is past our log or awaiting a proof: what we verified is at least as
        new as every checkpoint the relay and the witnesses told us of."""
        return not self._pending and not self._awaiting and not self._early

    @property
    def reported_size(self) -> int:
        """The largest relay-signed checkpoint size heard of (0: none)."""
        return 0 if self._relay_max is None else self._relay_max[0]

    def next_deadline(self) -> float | None:
        """When :meth:`check_deadlines` may next raise (clock seconds), or None."""
        times = [s.since for s in self._pending.values()] + [w.since for w in self._awaiting.values()]
        return min(times) + self.deadline if times else None

    def status(self) -> WitnessStatus:
        rule = self._rule_at(max(self._witnessed, 1))
        seq = self.witnessed_seq
        count = 0
        if seq is not None:
            count = sum(1 for w in rule.witnesses if self._best.get(w, (0, b""))[0] >= max(seq, 1))
        return WitnessStatus(seq, count, len(rule.witnesses), rule.quorum, self.verified)

    def witnessed_checkpoints(self) -> list[bytes]:
        """The newest consistent cosigned checkpoint of each witness (notes, for evidence and audit)."""
        return list(dict.fromkeys(note for _, note in self._best.values()))

    # --- persistence ------------------------------------------------------------------------

    def export(self) -> bytes:
        """State for this device's local checkpoint (trusted like the rest of it)."""
        return pack({
            "v": 1,
            "size": self._frontier.size,
            "peaks": self._frontier.peaks(),
            "best": [[name, key, size, note] for (name, key), (size, note) in sorted(self._best.items())],
            "relay_max": None if self._relay_max is None else list(self._relay_max),
            "witnessed": self._witnessed,
            "pending": [s.signed.encode() for _, s in sorted(self._pending.items())],
        })

    @classmethod
    def restore(
        cls,
        blob: bytes,
        space: bytes,
        relay_key: bytes | None,
        rules: Sequence[QuorumRule],
        clock: Callable[[], float],
        deadline: float = DEFAULT_DEADLINE,
    ) -> WitnessTracker:
        """The tracker :meth:`export` wrote; checkpoints past the log start their deadline again."""
        try:
            m = as_map(unpack(blob, what="witness state"), "witness state")
            if as_int(map_field(m, "v", "witness state"), "witness state version") != 1:
                raise StoreError("witness state: unknown version")
            size = as_int(map_field(m, "size", "witness state"), "witness state size")
            peaks = [as_bytes(p, "witness state peak", merkle.HASH_SIZE)
                     for p in as_list(map_field(m, "peaks", "witness state"), "witness state peaks")]
            tracker = cls(space, relay_key, rules, clock, deadline, size=size, peaks=peaks)
            for item in as_list(map_field(m, "best", "witness state"), "witness state best"):
                name, key, best_size, note = as_list(item, "witness state best", 4)
                wid = (as_str(name, "witness name"), as_bytes(key, "witness key", 32))
                tracker._best[wid] = (as_int(best_size, "witness size"), as_bytes(note, "witness note"))
            relay_max = m.get("relay_max")
            if relay_max is not None:
                max_size, max_note = as_list(relay_max, "witness state relay checkpoint", 2)
                tracker._relay_max = (as_int(max_size, "relay checkpoint size"), as_bytes(max_note, "relay checkpoint"))
            tracker._witnessed = as_int(map_field(m, "witnessed", "witness state"), "witnessed seq")
            pending = [as_bytes(p, "pending checkpoint") for p in as_list(m.get("pending", []), "pending")]
        except (ProtocolError, MerkleArgumentError, ValueError) as exc:
            raise StoreError(f"the local witness state is corrupt: {exc}") from exc
        tracker._recompute()
        for note in pending:
            tracker.add_checkpoint(note)
        return tracker

    # --- internals --------------------------------------------------------------------------

    def _check_relay_signature(self, signed: SignedCheckpoint) -> None:
        relay = self._relay
        if relay is None:
            raise RelaySignatureError("no relay key is known for this space yet: the genesis was not verified")
        lines = [s for s in signed.note.signatures if s.name == relay.name and s.key_id == relay.key_id]
        if not lines:
            raise RelaySignatureError(
                f"checkpoint of size {signed.checkpoint.size} carries no signature of the space's relay key"
            )
        text = signed.note.text.encode()
        for line in lines:
            if not relay.verify(text, line.signature):
                raise RelaySignatureError(
                    f"checkpoint of size {signed.checkpoint.size}: the relay's signature does not verify"
                )

    def _verified_cosigners(self, signed: SignedCheckpoint) -> set[WitnessId]:
        """Witnesses of the policy whose cosignature verifies; a bad line only fails to count."""
        text = signed.note.text.encode()
        found: set[WitnessId] = set()
        for line in signed.note.signatures:
            verifier = self._cosigners.get((line.name, line.key_id))
            if verifier is not None and verifier.verify(text, line.signature):
                found.add((verifier.name, verifier.public_key))
        return found

    def _check_same_size(self, seen: _Seen) -> None:
        """Two relay-signed checkpoints of one size with two roots are a fork by themselves."""
        size = seen.size
        others = [self._pending.get(size)]
        if self._relay_max is not None and self._relay_max[0] == size:
            others.append(_Seen(SignedCheckpoint.parse(self._relay_max[1]), 0.0))
        others.extend(w for waiting in self._awaiting.values() for w in waiting.checkpoints if w.size == size)
        for other in others:
            if other is not None and other.signed.checkpoint.root != seen.signed.checkpoint.root:
                raise CheckpointForkError(
                    f"the relay signed two checkpoints of size {size}: roots "
                    f"{other.signed.checkpoint.root.hex()[:16]}… and {seen.signed.checkpoint.root.hex()[:16]}…",
                    size=size, evidence=(other.signed.encode(), seen.signed.encode()),
                    proof=self._proof(EvidenceKind.FORK, [CheckpointStatement(Role.CHECKPOINT, other.signed.encode()),
                                                          CheckpointStatement(Role.CHECKPOINT, seen.signed.encode())]),
                )

    def _check_root(self, seen: _Seen, root: bytes) -> None:
        if seen.signed.checkpoint.root != root:
            raise CheckpointForkError(
                f"the relay signed a checkpoint of size {seen.size} with root "
                f"{seen.signed.checkpoint.root.hex()[:16]}…, but the log it delivered to us has root "
                f"{root.hex()[:16]}… at that size: it shows others another history",
                size=seen.size, evidence=self._evidence(seen), proof=self._fork_proof(seen),
            )

    def _proof(self, kind: EvidenceKind, statements: Sequence[Statement]) -> Evidence:
        return Evidence(kind, self.space, None if self._relay is None else self._relay.public_key, tuple(statements))

    def _fork_proof(self, seen: _Seen) -> Evidence:
        """A checkpoint against our log: the leaves through a signed head at or past its size let
        anyone recompute the root the relay committed to. The SDK fills them in from the store;
        the newest digests come along (``tail``) for entries verified but not stored yet."""
        head = [] if self._head is None else _head_statement(self._head[1], Role.VERIFIED)
        tail_from = self.verified - len(self._recent) + 1
        return self._proof(EvidenceKind.FORK, [
            CheckpointStatement(Role.CHECKPOINT, seen.signed.encode()), *head,
            LeavesStatement(Role.VERIFIED, None, through=seen.size, tail_from=tail_from, tail=tuple(self._recent))])

    def _evidence(self, seen: _Seen) -> tuple[bytes, ...]:
        head = () if self._head is None else (self._head[1],)
        return (seen.signed.encode(), *head)

    def _remember_root(self, size: int, root: bytes) -> None:
        self._roots[size] = root
        while len(self._roots) > _RECENT_ROOTS:
            self._roots.popitem(last=False)

    def _credit(self, seen: _Seen) -> None:
        # Counted now, not on arrival: the policy may have been unknown then (a new device).
        note = seen.signed.encode()
        for wid in self._verified_cosigners(seen.signed):
            if self._best.get(wid, (-1, b""))[0] < seen.size:
                self._best[wid] = (seen.size, note)
        self._recompute()

    def _rule_at(self, seq: int) -> QuorumRule:
        found = self._rules[0]
        for rule in self._rules:
            if rule.from_seq <= seq:
                found = rule
        return found

    def _recompute(self) -> None:
        value = 0
        established = True
        rules = self._rules
        for i, rule in enumerate(rules):
            if not established:
                break
            upper = rules[i + 1].from_seq - 1 if i + 1 < len(rules) else None
            kth = _kth_largest([self._best[w][0] for w in rule.witnesses if w in self._best], rule.quorum)
            kth = min(kth, self.verified)
            if rule.quorum and kth >= rule.from_seq:
                value = max(value, kth if upper is None else min(kth, upper))
            if upper is not None:
                established = rule.quorum == 0 or kth >= upper + 1
        self._witnessed = max(self._witnessed, value)


def _head_statement(wire: bytes, role: Role) -> list[HeadStatement]:
    """A signed head in wire form as an evidence statement (none if it does not decode)."""
    try:
        return [HeadStatement(role, SignedHead.decode(unpack(wire, what="signed head")))]
    except (EncspacesError, ValueError, TypeError):
        return []


def rules_of(history: Sequence[tuple[int, WitnessPolicy]]) -> list[QuorumRule]:
    """The tracker's rules from ``LogState.witness_policies`` ((seq that set it, policy), genesis first)."""
    return [QuorumRule(max(seq, 1), tuple((w.name, w.key) for w in policy.witnesses), policy.quorum)
            for seq, policy in history]


def _kth_largest(values: Iterable[int], k: int) -> int:
    ordered = sorted(values, reverse=True)
    return ordered[k - 1] if k >= 1 and len(ordered) >= k else 0


__all__ = [
    "DEFAULT_DEADLINE",
    "ProofRequest",
    "QuorumRule",
    "WitnessId",
    "WitnessStatus",
    "WitnessTracker",
    "entry_leaf_hash",
    "rules_of",
]
