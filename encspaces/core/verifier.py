"""LogVerifier: frames from an untrusted relay in, verified entries or a precise error out.

Pure: no sockets, no clock, no event loop. The checks run in the order docs/PROTOCOL.md
gives, and a frame is applied entirely or not at all. A broken rule of the log means the
relay misbehaved and raises; a correctly signed entry from a member whose ciphertext does not
open is that member's fault: it is recorded in ``skipped``, and every client reports it the same
way (the space as a ``RejectedEntry`` naming its seq and author, see encspaces/core/rejections.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import nacl.public

from ..errors import (
    AnchorStateError,
    AuthorSeqGapError,
    AuthorSignatureError,
    BodyDigestError,
    ChainError,
    CheckpointForkError,
    ForkError,
    KeyConfirmationError,
    MalformedEntryError,
    MalformedFrameError,
    MissingBodiesError,
    ProtocolError,
    RelaySignatureError,
    ReorderError,
    RollbackError,
    RuleError,
    SpaceIdError,
    StoreError,
)
from . import crypto
from .attestation import AttestBody, Status
from .client_ids import ClientOwners, decode_owners, encode_owners
from .encoding import as_bytes, as_int, as_list, as_map, field, pack, unpack
from .entry import Entry, Kind, frozen_instance, is_pruned, open_body
from .evidence import Evidence, EvidenceKind, HeadStatement, LeavesStatement, LinkStatement, Role, fork_proof, head_wire
from .head import SignedHead, next_head
from .identity import Identity, member_id
from .invites import InviteBody, InviteSecret
from .log_state import ANCHOR_GRID, GENESIS_SEQ, LogState, anchor_of
from .membership import AddDeviceBody, AddMemberBody, GenesisBody, RekeyBody
from .messages import Entries, Welcome
from .witnessing import WitnessTracker, rules_of

_HEADS_REMEMBERED = 8  # relay-signed heads whose signature verified, not verified again


@dataclass(frozen=True)
class VerifiedEntry:
    """An entry that passed every rule of the log, with its plaintext when it opened."""

    seq: int
    entry: Entry
    head: bytes
    plaintext: bytes | None
    problem: str | None  # why a data entry was skipped, or None
    awaiting_key: bool = False  # no key for its epoch yet; may open once one arrives
    late: bool = False  # an earlier entry opened now that its epoch key arrived
    stripped: bool = False  # the relay sent it without its body: a later snapshot covers it

    @property
    def author(self) -> bytes:
        return self.entry.header.author

    @property
    def kind(self) -> Kind:
        return self.entry.header.kind


@dataclass
class Anchor:
    """A new device's start at an anchor (docs/PROTOCOL.md section 14, "Anchors").

    ``SPARSE`` while the relay sends control entries whole and every other entry as its
    digest up to the anchor; then ``PENDING`` with the log state the relay sent installed, until
    an agreed snapshot whose attestations state ``digest`` (its payload too) covers it.
    """

    SPARSE = "sparse"
    PENDING = "pending"

    stage: str
    seq: int = 0
    digest: bytes = b""
    state: bytes = b""  # the installed state as the relay sent it (kept by the store once covered)

    def covered_by(self, state: LogState) -> bool:
        """An agreed snapshot of ``state`` whose anchor is ours and whose every attester stated
        (and the rules checked) the digest of the state this device installed there."""
        threshold = state.policy.snapshot_attesters
        return any(anchor_of(record.base) == self.seq and record.anchor == self.digest
                   and record.anchored(threshold) for record in state.snapshots.values())


class LogVerifier:
    """Holds the verified state of one space's log on one device."""

    def __init__(self, space: bytes, identity: Identity, relay_key_hint: bytes | None = None) -> None:
        self.space = space
        self.identity = identity
        self.state = LogState(space)
        self.epoch_keys: dict[int, bytes] = {}
        self.skipped: list[VerifiedEntry] = []  # signed by a member but would not open
        self.awaiting_key: list[VerifiedEntry] = []  # no key for the epoch yet (joined later)
        # Who first wrote under each Yjs client id in the data entries this device applied (the
        # space fills it, client_ids.py); kept in checkpoints, so a reopened device still knows.
        self.client_owners = ClientOwners()
        self.relay_key_hint = relay_key_hint
        self.latest_head: SignedHead | None = None
        self.invite_secrets: dict[bytes, InviteSecret] = {}  # invite key -> secret, while joining
        self.removed_at: int | None = None  # the seq of the entry that removed us, unless we came back
        self.person = identity.person_key  # our person (learned from the log when a device of it adds us)
        self.forgotten: set[int] = set()  # epochs whose keys retention made us delete
        # Key confirmation: each epoch's key commitment, from the entry that started the epoch.
        self.key_commits: dict[int, bytes] = {}
        self._new_commits: dict[int, bytes] = {}  # from the frame being verified (all or nothing)
        # A key sealed to us that does not match its commitment (or does not open): the admin who
        # sealed it lied. We cannot read that epoch; the space fails with this (see Space).
        self.key_failure: KeyConfirmationError | None = None
        # Freshness (the removal window): the relay time of the newest relay-signed head at or
        # below our verified seq, i.e. "as of then, nothing existed that we have not verified".
        # Heads past our seq (an ack, a welcome) count once the log we verified reaches them, and
        # must then carry the hash our chain has there (else the relay signed two histories).
        self.fresh_ms = 0
        self._heads_ahead: list[tuple[SignedHead, Role]] = []
        # The newest relay-signed head at or below our seq that matched our chain: our side of the
        # evidence when the relay is caught contradicting itself (encspaces.core.evidence).
        self.verified_head: SignedHead | None = None
        self.welcome_head: SignedHead | None = None  # the last welcome's head: the relay's newest, to reach
        # The Merkle tree of the verified log and what witnesses and checkpoints say of it
        # (encspaces/core/witnessing.py); its clock is the SDK's to set. ``tree_missing``: a
        # checkpoint written before the tree was kept: the owner rebuilds it from its store.
        self.witness = WitnessTracker(space, None, (), _no_clock)
        self.tree_missing = False
        self._witness_policies: object = None
        # Stripped entries from the relay whose author signature is not checked (yet): seq -> entry,
        # in log order. They are settled by an agreed snapshot whose base is at or after them (its
        # signed parent hash, and its attesters', commit to their exact bytes), else checked one by
        # one when catch-up ends (``settle_unpinned``): PROTOCOL.md section 14, "Signatures of stripped entries".
        self.unpinned: dict[int, Entry] = {}
        # A new device that starts at an anchor (``Anchor``), until an agreed snapshot covers it;
        # and the (seq, digest, head) of the entries the relay sent as digests, for the store.
        self.anchor: Anchor | None = None
        self.pruned: list[tuple[int, bytes, bytes]] = []
        # The anchor once covered, until the store keeps it with the rows it lets through
        # (``take_settled_anchor``); the store holds them back until then.
        self.settled_anchor: Anchor | None = None
        # This device's own entry with an author_seq, exactly as it signed it, while it still holds
        # it (the SDK's outbox); None otherwise. A relay-sent entry with these very bytes is ours:
        # its author signature is not verified again (see ``_verify_entry``).
        self.own_entry: Callable[[int], bytes | None] = _held_nothing
        self._me = identity.public.sign_key
        self._heads_checked: list[tuple[bytes, bytes, bytes]] = []  # (relay key, signed bytes, signature)

    @property
    def seq(self) -> int:
        return self.state.seq

    @property
    def head(self) -> bytes:
        return self.state.head

    @property
    def relay_key(self) -> bytes | None:
        return self.state.relay_key or self.relay_key_hint

    # --- the welcome: rollback and fork on (re)connect --------------------------------------

    def check_welcome(self, welcome: Welcome) -> None:
        """Compare the relay's current head, and its head at our seq, with what we verified."""
        self._check_signed(welcome.head)
        self._compare_with_chain(welcome.head, Role.WELCOME)
        self.check_not_rolled_back(welcome.head, Role.WELCOME)
        if welcome.head.seq < GENESIS_SEQ:  # the space id is the genesis's hash: no space is empty
            raise MalformedFrameError(
                f"welcome: the relay's head is at seq {welcome.head.seq}, but a space's log always holds its "
                f"genesis at seq {GENESIS_SEQ}"
            )
        self._note_fresh(welcome.head, Role.WELCOME)
        self._note_verified(welcome.head)
        self.welcome_head = welcome.head
        self.witness.observe_head(welcome.head.seq, pack(welcome.head.encode()), Role.WELCOME)
        if welcome.anchor is not None:
            if welcome.anchor.seq != self.seq:
                raise MalformedFrameError(
                    f"welcome: the anchor is the relay's head at seq {welcome.anchor.seq}, expected our seq {self.seq}"
                )
            self._check_signed(welcome.anchor)
            self._compare_with_chain(welcome.anchor, Role.ANCHOR)
            self._note_verified(welcome.anchor)
        elif self.seq > 0 and welcome.head.seq >= self.seq:
            raise MalformedFrameError(
                f"welcome: the relay is at seq {welcome.head.seq} but sent no signed head for our seq {self.seq}"
            )
        self.latest_head = welcome.head

    def _check_signed(self, signed: SignedHead) -> None:
        key = self.relay_key
        if key is None:
            raise RelaySignatureError("no relay key is known for this space yet")
        checked = (key, signed.signed_bytes, signed.signature)
        if checked in self._heads_checked:
            return  # these exact bytes verified already (an author gets each head in its ack and its frame)
        signed.check(key, self.space)
        self._heads_checked = [*self._heads_checked[-(_HEADS_REMEMBERED - 1):], checked]

    def _compare_with_chain(self, signed: SignedHead, role: Role = Role.FRAME) -> None:
        """A signed head at a seq we verified must carry the hash our own chain has there."""
        if signed.seq <= self.seq and signed.head != self.state.heads[signed.seq]:
            evidence, proof = self.fork_evidence(signed, role)
            raise ForkError(
                f"the relay signed head {signed.head.hex()[:16]}… at seq {signed.seq}, "
                f"we verified {self.state.heads[signed.seq].hex()[:16]}…",
                evidence=evidence, proof=proof,
            )

    def fork_evidence(self, signed: SignedHead, role: Role) -> tuple[tuple[bytes, ...], Evidence]:
        """``evidence`` and ``proof`` of a ForkError at ``signed.seq`` (``evidence.fork_proof``)."""
        return fork_proof(signed, role, self.relay_key, self.state.heads[signed.seq], self.verified_head)

    def evidence(self, kind: EvidenceKind, statements: list[HeadStatement | LinkStatement]) -> Evidence:
        """Evidence of ``kind`` about this space (its genesis and the reporter are added by the SDK)."""
        return Evidence(kind, self.space, self.relay_key, tuple(statements))

    def note_signed_head(self, signed: SignedHead) -> None:
        """A head the relay signed outside a frame (an acknowledgement): check it like a frame's."""
        self._check_signed(signed)
        self._compare_with_chain(signed, Role.ACK)
        self.check_not_rolled_back(signed, Role.ACK)
        self._note_fresh(signed, Role.ACK)
        self._note_verified(signed)
        self.witness.observe_head(signed.seq, pack(signed.encode()), Role.ACK)

    def hold_ahead(self, signed: SignedHead, role: Role) -> None:
        """A head the relay signed past our seq in an earlier run (in an ``role`` message), that
        the device's store kept: check its signature and hold it again, as when it arrived, so
        a log that contradicts it is still a ForkError with both heads as evidence. One at or
        below our seq is ignored: the frame that reached it was checked against it."""
        self._check_signed(signed)
        if signed.seq > self.seq:
            self._hold(signed, role)

    def _note_verified(self, signed: SignedHead) -> None:
        """Keep the newest checked head at or below our seq (it matched our chain: checked before)."""
        if signed.seq <= self.seq and (self.verified_head is None or signed.seq >= self.verified_head.seq):
            self.verified_head = signed

    def _note_fresh(self, signed: SignedHead, role: Role = Role.FRAME) -> None:
        """Count a checked relay-signed head towards freshness, now or once we verified through it."""
        if signed.seq > self.seq:
            self._hold(signed, role)
            return
        self.fresh_ms = max(self.fresh_ms, signed.time_ms)
        if self._heads_ahead:
            ahead = self._heads_ahead
            self._heads_ahead = [(h, role) for h, role in ahead if h.seq > self.seq]
            for h, _ in ahead:
                if h.seq <= self.seq:
                    self.fresh_ms = max(self.fresh_ms, h.time_ms)

    def _hold(self, signed: SignedHead, role: Role) -> None:
        """Hold a checked head past our seq until the log reaches it. Another head the relay
        signed at the same seq with another hash is a fork already, and the two are its proof."""
        for held, held_role in self._heads_ahead:
            if held.seq != signed.seq:
                continue
            if held.head != signed.head:
                raise ForkError(
                    f"the relay signed two heads at seq {signed.seq}, past our log: {held.head.hex()[:16]}… "
                    f"(in its {held_role.value}) and {signed.head.hex()[:16]}… (in its {role.value}): "
                    "it signed two histories",
                    evidence=(head_wire(held), head_wire(signed)),
                    proof=self.evidence(EvidenceKind.FORK,
                                        [HeadStatement(held_role, held), HeadStatement(role, signed)]),
                )
            return  # (the same head again)
        self._heads_ahead = [*self._heads_ahead[-63:], (signed, role)]

    def check_not_rolled_back(self, current: SignedHead, role: Role = Role.FRAME) -> None:
        if current.seq < self.seq:
            ours = self.verified_head
            statements: list[HeadStatement | LinkStatement] = [HeadStatement(role, current)]
            if ours is not None and ours.seq > current.seq:
                statements.insert(0, HeadStatement(Role.VERIFIED, ours))
            raise RollbackError(
                f"the relay's log ends at seq {current.seq}, but it already signed seq {self.seq} "
                f"(head {self.head.hex()[:16]}…) to us",
                evidence=tuple(head_wire(s.head) for s in statements if isinstance(s, HeadStatement)),
                proof=self.evidence(EvidenceKind.ROLLBACK, statements),
            )

    def replay_stored(self, rows: list[tuple[int, bytes, bytes]]) -> list[VerifiedEntry]:
        """Continue state from this device's own store of entries it verified before.

        Signatures are not checked again (the store is as trusted as this device), but the
        chain is: a store that does not chain is corrupt, and we say so rather than build on it.
        """
        results: list[VerifiedEntry] = []
        new_keys: dict[int, bytes] = {}
        self._new_commits = {}
        for seq, raw, head in rows:
            if is_pruned(raw):
                raise StoreError(f"the local store holds seq {seq} as a digest alone (this device started at an "
                                 "anchor) and no checkpoint past it to resume from")
            entry = Entry.decode(raw, local=True)
            if seq != self.seq + 1 or next_head(self.head, seq, entry.digest()) != head:
                raise StoreError(f"the local store does not chain at seq {seq}: it is corrupt")
            self.state.apply(entry, seq, head)
            results.append(self._open(entry, seq, head, new_keys))
        if results:
            self._grow_tree(results[0].seq, [r.entry.digest() for r in results])
        return self._finish(results, new_keys)

    # --- local checkpoints ------------------------------------------------------------------

    def export_checkpoint(self) -> bytes:
        """The verified state (not the heads) for this device's store; holds epoch keys."""
        return pack({
            "state": self.state.export(),
            "keys": [[epoch, key] for epoch, key in self.epoch_keys.items()],
            "awaiting": [r.seq for r in self.awaiting_key],
            "forgotten": sorted(self.forgotten),
            "commits": [[epoch, commit] for epoch, commit in sorted(self.key_commits.items())],
            "client_owners": encode_owners(self.client_owners.first),
            **({} if self.tree_missing else {"witness": self.witness.export()}),
        })

    @classmethod
    def from_checkpoint(
        cls, space: bytes, identity: Identity, blob: bytes, heads: list[bytes]
    ) -> tuple[LogVerifier, list[int]]:
        """A verifier resumed at the checkpoint, and the seqs of entries still awaiting a key."""
        try:
            m = as_map(unpack(blob, what="checkpoint"), "checkpoint")
            verifier = cls(space, identity)
            verifier.state = LogState.restore(space, as_bytes(field(m, "state", "checkpoint"), "state"), heads)
            for item in as_list(field(m, "keys", "checkpoint"), "checkpoint keys"):
                epoch, key = as_list(item, "checkpoint key", 2)
                verifier.epoch_keys[as_int(epoch, "checkpoint epoch", minimum=1)] = as_bytes(key, "epoch key", 32)
            awaiting = [as_int(seq, "awaiting seq") for seq in as_list(field(m, "awaiting", "checkpoint"), "awaiting")]
            verifier.forgotten = {as_int(e, "forgotten epoch") for e in as_list(m.get("forgotten", []), "forgotten")}
            for item in as_list(m.get("commits", []), "checkpoint key commitments"):
                epoch, commit = as_list(item, "checkpoint key commitment", 2)
                verifier.key_commits[as_int(epoch, "commitment epoch", minimum=1)] = as_bytes(
                    commit, "key commitment", crypto.HASH_SIZE)
            verifier.client_owners.first.update(decode_owners(m.get("client_owners", []), "checkpoint client owners"))
            witness = m.get("witness")
            if witness is None:
                verifier.tree_missing = verifier.seq > 0
            else:
                verifier.witness = WitnessTracker.restore(
                    as_bytes(witness, "witness state"), space, verifier.state.relay_key,
                    rules_of(verifier.state.witness_policies), _no_clock)
                verifier._witness_policies = verifier.state.witness_policies
        except (ProtocolError, ValueError) as exc:
            raise StoreError(f"the local checkpoint is corrupt: {exc}") from exc
        return verifier, awaiting

    def resume_awaiting(self, entries: list[tuple[int, bytes, bytes]]) -> None:
        """Put back entries (seq, raw, head) that were waiting for their epoch key at the checkpoint."""
        for seq, raw, head in entries:
            entry = Entry.decode(raw, local=True)
            self.awaiting_key.append(VerifiedEntry(seq, entry, head, None, "awaiting key", awaiting_key=True))

    # --- frames -----------------------------------------------------------------------------

    def verify_frame(self, frame: Entries, *, live: bool = False) -> list[VerifiedEntry]:
        """Verify a frame and advance; on any error nothing of the frame is applied.

        ``live``: the session caught up; bodies may be left out only of a catch-up (an agreed
        snapshot covers them), so a stripped entry now is a ``MissingBodiesError``, raised
        before anything of the frame is applied (its signature would not even be checked).
        """
        return self._verify(frame, relay_signed=True, live=live)

    def reverify_stored(self, seq: int, raw: bytes, head: bytes) -> list[VerifiedEntry]:
        """Verify one entry of this device's own store again, from genesis on, by every rule but one.

        The relay's signatures over heads are not stored, so that check alone is skipped; the
        space id, author signatures, the chain to the stored head, membership, order, parents,
        epochs and decryption all run as when the entry first arrived.
        """
        return self._verify(Entries(seq, [raw], SignedHead(self.space, seq, head, 0, b"", b"")), relay_signed=False)

    def _verify(self, frame: Entries, *, relay_signed: bool, live: bool = False) -> list[VerifiedEntry]:
        if not frame.entries:
            raise MalformedFrameError(f"frame at seq {frame.first_seq} holds no entries")
        if self.sparse or (self.seq == 0 and any(is_pruned(raw) for raw in frame.entries)):
            return self._verify_sparse(frame, relay_signed=relay_signed, live=live)
        # Only this device's own store may hold redacted entries (sealed keys blanked).
        local = not relay_signed
        entries = self._decode_all(frame, local)
        if self.seq == 0:
            self._bootstrap(frame, entries)
        if relay_signed:
            self._check_signed(frame.head)
        self._check_span(frame)
        digests = [entry.digest() for entry in entries]
        heads = self._check_chain(frame, digests)
        if live:
            for i, entry in enumerate(entries):
                if entry.stripped:
                    raise MissingBodiesError(
                        f"the relay sent the entry at seq {frame.first_seq + i} without its body in the live "
                        "stream: bodies may only be left out of a catch-up that an agreed snapshot covers")
        self.state.begin()
        new_keys: dict[int, bytes] = {}
        self._new_commits = {}
        # Only what the relay sends may wait for a snapshot to vouch for it; our own store's
        # entries (reverify_stored) are checked in full.
        deferred: dict[int, Entry] | None = {} if relay_signed else None
        try:
            results = [
                self._verify_entry(entry, frame.first_seq + i, heads[i], entries, i, new_keys, deferred)
                for i, entry in enumerate(entries)
            ]
            if relay_signed and self._heads_ahead:
                self._check_heads_ahead(frame, digests, heads)
        except RuleError as exc:
            self.state.rollback()
            anchor = self.anchor
            if anchor is None or isinstance(exc, (AuthorSignatureError, BodyDigestError, MalformedEntryError)):
                raise
            # The log's members checked every entry against the log's own state: one that breaks a
            # rule of the state the relay sent for the anchor shows that state is not the log's.
            raise AnchorStateError(f"the log state the relay sent for seq {anchor.seq} is not the log's: an "
                                   f"entry after it breaks a rule there ({exc})") from exc
        except BaseException:
            self.state.rollback()
            raise
        self.state.commit()
        self._note_head(frame, relay_signed)
        if deferred:
            self.unpinned.update(deferred)
        if self.unpinned:
            self._pin()
        if self.anchor is not None and self.anchor.stage == Anchor.PENDING and self.anchor.covered_by(self.state):
            self.settled_anchor, self.anchor = self.anchor, None
        return self._conclude(frame, digests, results, new_keys, relay_signed)

    def _note_head(self, frame: Entries, relay_signed: bool) -> None:
        """A frame's entries are in the state: its signed head is the newest we verified."""
        self.latest_head = frame.head
        if relay_signed:
            self._note_fresh(frame.head)
            self.verified_head = frame.head

    def _conclude(self, frame: Entries, digests: list[bytes], results: list[VerifiedEntry],
                  new_keys: dict[int, bytes], relay_signed: bool) -> list[VerifiedEntry]:
        """The keys a frame brought, its entries in the Merkle tree, its head shown to the witness watch."""
        finished = self._finish(results, new_keys)
        self._grow_tree(frame.first_seq, digests, frame.head if relay_signed else None)
        if relay_signed:
            self.witness.observe_head(frame.head.seq, pack(frame.head.encode()), Role.FRAME)
        return finished

    # --- a new device's start at an anchor -----------------------------------------------------

    def _verify_sparse(self, frame: Entries, *, relay_signed: bool, live: bool) -> list[VerifiedEntry]:
        """A frame of the stretch up to an anchor: control entries whole, every other entry as its digest.

        Control entries are checked as always (signature, every rule but the author_seq one,
        which the data entries between them move), from the genesis on, so membership, roles,
        devices and keys are the log's, not the relay's word. The digests only chain: what the
        entries they stand for did to the counters comes with the state the relay sends for the
        anchor (``install_anchor``), which nothing is built on until the snapshot covers it.
        """
        first = frame.first_seq
        if live:
            raise MissingBodiesError(f"the relay sent entries from seq {first} as digests in the live stream: "
                                     "only a new device's catch-up to an anchor may leave entries out")
        items: list[Entry | bytes] = []
        for i, raw in enumerate(frame.entries):
            if is_pruned(raw):
                items.append(raw)
                continue
            try:
                entry = Entry.decode(raw, local=not relay_signed)
            except MalformedEntryError as exc:
                raise MalformedEntryError(f"seq {first + i}: {exc}") from exc
            if entry.stripped or entry.header.kind.is_encrypted or entry.header.kind is Kind.ATTEST:
                raise MalformedFrameError(
                    f"seq {first + i}: a {entry.header.kind.value} entry in the stretch before an anchor, where the "
                    "relay sends control entries whole and every other entry as its digest")
            items.append(entry)
        if self.seq == 0:
            genesis = items[0]
            if not isinstance(genesis, Entry):
                raise ChainError(f"the relay sent seq {first} as a digest: a new device needs the genesis entry whole")
            self._bootstrap(frame, [genesis])
            self.expect_anchor()
        if relay_signed:
            self._check_signed(frame.head)
        self._check_span(frame)
        digests = [item if isinstance(item, bytes) else item.digest() for item in items]
        heads = self._check_chain(frame, digests)
        self.state.begin()
        new_keys: dict[int, bytes] = {}
        self._new_commits = {}
        results: list[VerifiedEntry] = []
        try:
            for i, item in enumerate(items):
                seq = first + i
                if isinstance(item, bytes):
                    self.state.apply_pruned(seq, heads[i])
                    continue
                item.check_signature(seq)
                self.state.check(item, seq)
                self.state.apply(item, seq, heads[i])
                results.append(self._open(item, seq, heads[i], new_keys))
            if relay_signed and self._heads_ahead:
                self._check_heads_ahead(frame, digests, heads)
        except BaseException:
            self.state.rollback()
            raise
        self.state.commit()
        self.pruned.extend((first + i, item, heads[i]) for i, item in enumerate(items) if isinstance(item, bytes))
        self._note_head(frame, relay_signed)
        return self._conclude(frame, digests, results, new_keys, relay_signed)

    def expect_anchor(self) -> None:
        """Start a catch-up to an anchor (before the genesis too: a store whose log starts with one)."""
        self.anchor = Anchor(Anchor.SPARSE)
        self.state.sparse = True

    @property
    def sparse(self) -> bool:
        """Catching up to an anchor: entries before it come as digests, then the log state there."""
        return self.anchor is not None and self.anchor.stage == Anchor.SPARSE

    def install_anchor(self, seq: int, exported: bytes) -> None:
        """The relay's log state at the anchor ``seq``, which the sparse stretch just reached.

        Checked at once against what this device can check: the control entries it verified
        (every membership field must be theirs), its own author_seqs (never ahead of the
        state's), and the state's own digest at ``seq``. The rest (the counters data entries
        move) is the relay's word until an agreed snapshot's attestations state the same digest
        (checked after each frame, ``Anchor.covered_by``); until then nothing is stored.
        """
        if not self.sparse:
            raise MalformedFrameError(f"the relay sent a log state for seq {seq} to a device that is not "
                                      "catching up to an anchor")
        if seq != self.seq or seq % ANCHOR_GRID:
            raise AnchorStateError(f"the relay sent the log state at seq {seq}, but its entries as digests reach "
                                   f"seq {self.seq} (an anchor is a multiple of {ANCHOR_GRID})")
        try:
            restored = LogState.restore(self.space, exported, list(self.state.heads))
        except (ProtocolError, ValueError) as exc:
            raise AnchorStateError(f"the log state the relay sent for seq {seq} does not decode: {exc}") from exc
        if restored.seq != seq:
            raise AnchorStateError(f"the log state the relay sent for seq {seq} is at seq {restored.seq}")
        mine, theirs = self.state.membership_digest(), restored.membership_digest()
        if mine != theirs:
            raise AnchorStateError(
                f"the log state the relay sent for seq {seq} names other members, devices, roles, epochs, "
                f"invites or policies than the control entries from genesis decide: its digest "
                f"{theirs.hex()[:16]}…, the log's {mine.hex()[:16]}…")
        for author, author_seq in self.state.author_seqs.items():
            if restored.author_seqs.get(author, 0) < author_seq:
                raise AnchorStateError(
                    f"the log state the relay sent for seq {seq} has author {member_id(author)} at author_seq "
                    f"{restored.author_seqs.get(author, 0)}, but its control entries reach author_seq {author_seq}")
        digest = restored.state_digest()
        stated = restored.anchors.get(seq)
        if stated != digest:
            raise AnchorStateError(
                f"the log state the relay sent for seq {seq} hashes to {digest.hex()[:16]}…, but it states "
                f"{'no digest' if stated is None else stated.hex()[:16] + '…'} for that seq")
        self.state = restored
        self.anchor = Anchor(Anchor.PENDING, seq, digest, exported)

    def _check_attested_anchor(self, entry: Entry, seq: int) -> None:
        """An attestation that states another log state at our anchor than the one the relay sent us:
        the relay's state is not the log's (the rules would only say the attestation is wrong)."""
        anchor = self.anchor
        try:
            body = AttestBody.decode(entry.body)
        except ProtocolError:
            return  # malformed: the rules say so
        record = self.state.snapshots.get(body.snapshot)
        if anchor is None or record is None or body.anchor is None or anchor_of(record.base) != anchor.seq \
                or body.anchor == anchor.digest:
            return
        raise AnchorStateError(
            f"{entry.describe()} at seq {seq} states the log state at seq {anchor.seq} as {body.anchor.hex()[:16]}…, "
            f"but the state the relay sent this device for that seq hashes to {anchor.digest.hex()[:16]}…: "
            "the relay's state is not the log's")

    def take_settled_anchor(self) -> Anchor | None:
        """The anchor an agreed snapshot just covered (once): the store keeps it beside the rows it lets
        through, as what re-verifying the store starts from."""
        settled, self.settled_anchor = self.settled_anchor, None
        return settled

    def _grow_tree(self, first: int, digests: list[bytes], head: SignedHead | None = None) -> None:
        """Extend the Merkle tree by entries just verified (a checkpoint at their size is compared
        there and may raise CheckpointForkError: the relay showed someone another log). The
        frame's entries are not stored when that fails the space: their digests and the frame's
        signed ``head`` go into the error's proof, whose leaves the store completes."""
        if self.tree_missing:
            return
        if self.state.witness_policies is not self._witness_policies:
            self._witness_policies = self.state.witness_policies
            self.witness.set_relay_key(self.state.relay_key)
            self.witness.set_rules(rules_of(self.state.witness_policies))
        try:
            self.witness.extend(first, digests)
        except CheckpointForkError as exc:
            leaves = exc.proof.leaves if exc.proof is not None else None
            if exc.proof is not None and leaves is not None and head is not None and digests:
                # the whole frame (from ``first``), up to its signed head
                kept = leaves.tail[: max(0, first - leaves.tail_from)] if leaves.tail_from <= first else ()
                tail = LeavesStatement(leaves.role, None, through=leaves.through,
                                       tail_from=first - len(kept),
                                       tail=(*kept, *digests))
                exc.proof = exc.proof.replace(statements=(
                    *(s for s in exc.proof.statements if s is not leaves), HeadStatement(Role.FRAME, head), tail))
            raise

    def rebuild_tree(self, digests: list[bytes]) -> None:
        """The tree of a checkpoint that predates it, from the digests of entries 1..checkpoint seq."""
        tracker = WitnessTracker(self.space, self.state.relay_key, rules_of(self.state.witness_policies),
                                 self.witness.clock, self.witness.deadline)
        tracker.extend(1, digests)
        self.witness = tracker
        self._witness_policies = self.state.witness_policies
        self.tree_missing = False

    def rebuild_anchors(self, rows: list[tuple[int, bytes, bytes]]) -> None:
        """The anchors of a checkpoint that predates them, from this device's stored entries
        1..checkpoint seq replayed with the rules' ``apply`` (each was verified when stored): the
        ring is part of every later state digest, so it must be the one every member holds."""
        replay = LogState(self.space)
        for seq, raw, head in rows:
            if seq != replay.seq + 1 or is_pruned(raw):
                raise StoreError(f"the local store cannot rebuild the anchors of its checkpoint: no entry at seq "
                                 f"{replay.seq + 1}")
            replay.apply(Entry.decode(raw, local=True), seq, head)
        if replay.seq != self.state.seq or replay.head != self.state.head:
            raise StoreError(f"the local store's log ends at seq {replay.seq}, its checkpoint at seq {self.state.seq}")
        self.state.anchors = dict(replay.anchors)
        self.state.snapshots = {
            seq: dataclasses.replace(record, anchor=replay.snapshots[seq].anchor if seq in replay.snapshots else None)
            for seq, record in self.state.snapshots.items()}
        self.state.anchors_missing = False

    # --- stripped entries: vouched for by an agreed snapshot --------------------------------

    @property
    def unpinned_from(self) -> int | None:
        """The first seq whose signature is neither checked nor vouched for (the whole log while a
        start at an anchor is not covered); None when there is none."""
        if self.anchor is not None or self.settled_anchor is not None:
            return 1
        return next(iter(self.unpinned), None)

    def _pin(self) -> None:
        """Settle every unpinned entry at or before the base of an agreed snapshot we checked.

        The snapshot's author signed ``(base, h(base))`` as the entry's parent, and we checked
        that hash against our chain: ``h(base)`` commits to every digest through ``base``, and a
        digest to the exact header, body hash and signature. So these are the entries the
        snapshot's author verified, and each attester's signed parent (at or after the
        snapshot) commits to them again. Agreement is the trust a new device already places in
        the snapshot's content; a snapshot whose own entry came stripped vouches for nothing.
        """
        threshold = self.state.policy.snapshot_attesters
        through = max((record.base for seq, record in self.state.snapshots.items()
                       if seq not in self.unpinned and record.status(threshold) is Status.AGREED), default=0)
        if through and next(iter(self.unpinned)) <= through:
            if next(reversed(self.unpinned)) <= through:  # (in log order) all of them, as on a fast join
                self.unpinned = {}
            else:
                self.unpinned = {seq: entry for seq, entry in self.unpinned.items() if seq > through}

    def settle_unpinned(self) -> None:
        """Catch-up ended: check the signature of every stripped entry no agreed snapshot vouched for.

        A relay that strips bodies no agreed snapshot covers is caught anyway (the SDK's
        ``MissingBodiesError``); checking here names a forged entry precisely.
        """
        while self.unpinned:
            seq, entry = next(iter(self.unpinned.items()))
            entry.check_signature(seq)
            del self.unpinned[seq]

    def _finish(self, results: list[VerifiedEntry], new_keys: dict[int, bytes]) -> list[VerifiedEntry]:
        """Keep new keys; record skipped entries; open entries that waited for a key we now hold.

        A member added with history learns the epoch keys in the add entry, after the
        entries they open: those come back at the end of ``results`` marked ``late``.
        """
        self.epoch_keys.update(new_keys)
        self.key_commits.update(self._new_commits)
        self._new_commits = {}
        waiting = self.awaiting_key + [r for r in results if r.awaiting_key]
        self.skipped.extend(r for r in results if r.problem is not None and not r.awaiting_key)
        self.awaiting_key = []
        for r in waiting:
            key = self.epoch_keys.get(r.entry.header.epoch)
            if key is None:
                self.awaiting_key.append(r)
                continue
            opened = self._decrypt(r.entry, r.seq, r.head, key)
            late = VerifiedEntry(r.seq, r.entry, r.head, opened.plaintext, opened.problem, late=True)
            results.append(late)
            if late.problem is not None:
                self.skipped.append(late)
        return results

    @staticmethod
    def _decode_all(frame: Entries, local: bool) -> list[Entry]:
        """The frame's entries parsed; a malformed one raises MalformedEntryError naming its seq.

        One ``try`` around the whole frame (thousands of entries on a new device), not one per entry.
        """
        entries: list[Entry] = []
        decode, append = Entry.decode, entries.append
        try:
            for raw in frame.entries:
                append(decode(raw, local=local))
        except MalformedEntryError as exc:
            seq = frame.first_seq + len(entries)
            if is_pruned(frame.entries[len(entries)]):
                raise MissingBodiesError(f"the relay sent the entry at seq {seq} as its digest alone, outside a new "
                                         "device's catch-up to an anchor") from exc
            raise MalformedEntryError(f"seq {seq}: {exc}") from exc
        return entries

    def _bootstrap(self, frame: Entries, entries: list[Entry]) -> None:
        """A fresh device learns the relay key from the genesis, which the space id pins."""
        if frame.first_seq != GENESIS_SEQ:
            raise ChainError(f"a new device needs the log from seq 1, the relay sent from seq {frame.first_seq}")
        genesis = entries[0]
        if genesis.header.kind is not Kind.GENESIS:
            raise SpaceIdError(f"seq 1 holds a {genesis.header.kind.value} entry, expected the genesis entry")
        self.state.check(genesis, GENESIS_SEQ)  # hash against the space id
        pinned = GenesisBody.decode(genesis.body).relay_key
        if self.relay_key_hint is not None and pinned != self.relay_key_hint:
            raise SpaceIdError(
                f"the space's genesis pins relay key {member_id(pinned)}, "
                f"but this relay presents {member_id(self.relay_key_hint)}"
            )
        self.relay_key_hint = pinned

    def _check_span(self, frame: Entries) -> None:
        expected = self.seq + 1
        last = frame.first_seq + len(frame.entries) - 1
        self._compare_with_chain(frame.head)
        self.check_not_rolled_back(frame.head)
        if frame.first_seq < expected:
            raise ChainError(
                f"frame starts at seq {frame.first_seq}, but we verified through seq {self.seq}: "
                f"expected seq {expected} (entries repeated)"
            )
        if frame.first_seq > expected:
            raise ChainError(
                f"frame starts at seq {frame.first_seq}, expected seq {expected}: "
                f"seqs {expected}..{frame.first_seq - 1} are missing"
            )
        if frame.head.seq != last:
            raise ChainError(
                f"frame carries seqs {frame.first_seq}..{last} but its signed head is at seq {frame.head.seq}"
            )

    def _check_chain(self, frame: Entries, digests: list[bytes]) -> list[bytes]:
        heads = []
        h = self.head
        for i, digest in enumerate(digests):
            h = next_head(h, frame.first_seq + i, digest)
            heads.append(h)
        if h != frame.head.head:
            raise ChainError(
                f"entries {frame.first_seq}..{frame.head.seq} do not chain from our head at seq {self.seq} "
                f"to the signed head: computed {h.hex()[:16]}…, signed {frame.head.head.hex()[:16]}…"
            )
        return heads

    def _check_heads_ahead(self, frame: Entries, digests: list[bytes], heads: list[bytes]) -> None:
        """A head the relay signed past our seq (in an ack or a welcome) that this frame reaches
        must be the frame's chain there: the relay signed both, so another hash is a fork, and
        the two heads with the frame's digests between them are its proof. Checked once every
        entry passed (an entry's own error, e.g. a tampered signature, names the lie more
        precisely), before anything of the frame is committed: the frame is the other history."""
        first = frame.first_seq
        for held, role in self._heads_ahead:
            if not first <= held.seq <= frame.head.seq or heads[held.seq - first] == held.head:
                continue
            at = held.seq - first
            statements: list[HeadStatement | LinkStatement] = [HeadStatement(role, held),
                                                               HeadStatement(Role.FRAME, frame.head)]
            if held.seq < frame.head.seq:
                statements.append(LinkStatement(Role.FRAME, held.seq, heads[at],
                                                tuple(digests[at + 1:])))
            raise ForkError(
                f"the relay signed head {held.head.hex()[:16]}… at seq {held.seq} (in its {role.value}), and now "
                f"sends a log whose head there is {heads[at].hex()[:16]}…: it signed two histories",
                evidence=(head_wire(held), head_wire(frame.head)),
                proof=self.evidence(EvidenceKind.FORK, statements),
            )

    def _verify_entry(
        self, entry: Entry, seq: int, head: bytes, entries: list[Entry], index: int, new_keys: dict[int, bytes],
        deferred: dict[int, Entry] | None,
    ) -> VerifiedEntry:
        """Check one entry of a frame whose chain and head were checked, apply it, open it.

        The author's signature is checked, except in two cases. A stripped entry the relay sent
        waits for an agreed snapshot (``deferred``, ``_pin``). And our own entry, when the relay
        sends back the very bytes this device signed and still holds (``own_entry``, the SDK's
        outbox): the check would verify a signature this device just made with its own key
        over exactly these header and body-hash bytes, and hash exactly this body, so it cannot
        fail (Ed25519 is deterministic; the outbox is this device's own memory or store, which
        ``replay_stored`` already trusts). A byte that differs (a tampered header, body or
        signature, a stripped body, another machine using our key) is not "ours": the full
        check runs and raises as for anyone's entry. Nothing else is skipped: the chain, the
        relay's head signature and every ``LogState`` rule still hold the entry to its place.
        docs/PROTOCOL.md, "Our own entries".
        """
        if deferred is not None and entry.stripped:
            deferred[seq] = entry  # no body to trust it for: a later agreed snapshot vouches for it
        elif not (deferred is not None and entry.header.author == self._me
                  and self.own_entry(entry.header.author_seq) == entry.raw):
            entry.check_signature(seq)  # (unless the relay sent back our own entry, byte for byte)
        if self.anchor is not None and entry.header.kind is Kind.ATTEST:
            self._check_attested_anchor(entry, seq)
        try:
            self.state.check(entry, seq)
        except AuthorSeqGapError as exc:
            expected = self.state.author_seqs.get(entry.header.author, 0) + 1
            for later_index, later in enumerate(entries[index + 1 :]):
                if later.header.author == entry.header.author and later.header.author_seq == expected:
                    raise ReorderError(
                        f"{entry.describe()} at seq {seq} comes before author_seq {expected} "
                        f"at seq {seq + 1 + later_index}: the relay reordered the author's entries"
                    ) from exc
            raise
        self.state.apply(entry, seq, head)
        return self._open(entry, seq, head, new_keys)

    def _open(self, entry: Entry, seq: int, head: bytes, new_keys: dict[int, bytes]) -> VerifiedEntry:
        """Learn keys sealed to us from control entries; decrypt data entries."""
        if entry.stripped:  # an encrypted kind (control entries are never stripped): nothing to open
            return frozen_instance(VerifiedEntry, {"seq": seq, "entry": entry, "head": head, "plaintext": None,
                                           "problem": None, "awaiting_key": False, "late": False, "stripped": True})
        kind = entry.header.kind
        me = self.identity.public.sign_key
        if kind is Kind.GENESIS:
            genesis = GenesisBody.decode(entry.body)
            self._new_commits[1] = genesis.commit
            if entry.header.author == me:
                self._learn_key(self.identity.box_private, genesis.sealed_key, 1, new_keys, entry, seq)
        elif kind is Kind.ADD_MEMBER:
            body = AddMemberBody.decode(entry.body)
            if body.device == me:
                self.removed_at = None  # (again) a member from here on
                for epoch, sealed in body.sealed_keys:
                    self._learn_key(self.identity.box_private, sealed, epoch, new_keys, entry, seq)
        elif kind is Kind.ADD_DEVICE:
            device = AddDeviceBody.decode(entry.body)
            if device.cert.device == me:
                self.removed_at = None  # our person's device added us
                self.person = device.cert.person
                for epoch, sealed in device.sealed_keys:
                    self._learn_key(self.identity.box_private, sealed, epoch, new_keys, entry, seq)
        elif kind.starts_epoch:
            rekey = RekeyBody.decode(entry.body, kind.value)
            self._new_commits[rekey.epoch] = rekey.commit
            if rekey.device == me or (rekey.member is not None and rekey.member == self.person):
                self.removed_at = seq
            for recipient, sealed in rekey.grants:
                private = self._box_for(recipient)
                if private is not None:
                    self._learn_key(private, sealed, rekey.epoch, new_keys, entry, seq)
        elif kind is Kind.JOIN and entry.header.author == me:
            self.removed_at = None  # joined (again) with an invite
        elif kind is Kind.INVITE:
            invite = InviteBody.decode(entry.body)
            private = self._box_for(invite.invite)
            if private is not None:
                for epoch, sealed in invite.sealed_keys:
                    self._learn_key(private, sealed, epoch, new_keys, entry, seq)
        if kind.is_control:
            return VerifiedEntry(seq, entry, head, None, None)
        epoch = entry.header.epoch
        key = new_keys.get(epoch) or self.epoch_keys.get(epoch)
        if key is None:
            return VerifiedEntry(seq, entry, head, None, f"this device holds no key for epoch {epoch}",
                                 awaiting_key=True)
        return self._decrypt(entry, seq, head, key)

    @staticmethod
    def _decrypt(entry: Entry, seq: int, head: bytes, key: bytes) -> VerifiedEntry:
        plaintext = open_body(entry, key)
        if plaintext is None:
            return VerifiedEntry(
                seq, entry, head, None,
                f"ciphertext by {entry.author_id} does not open under epoch {entry.header.epoch}"
            )
        # Every data entry a device receives ends here: built without the dataclass's ``__init__``.
        return frozen_instance(VerifiedEntry, {"seq": seq, "entry": entry, "head": head, "plaintext": plaintext,
                                               "problem": None, "awaiting_key": False, "late": False,
                                               "stripped": False})

    def _box_for(self, recipient: bytes) -> nacl.public.PrivateKey | None:
        """Our X25519 key for a grant's recipient: our identity, or an invite we hold the secret of."""
        if recipient == self.identity.public.sign_key:
            return self.identity.box_private
        invite = self.invite_secrets.get(recipient)
        return invite.box_private if invite is not None else None

    def _learn_key(
        self, private: nacl.public.PrivateKey, sealed: bytes, epoch: int, new_keys: dict[int, bytes],
        entry: Entry, seq: int,
    ) -> None:
        """Unseal an epoch key given to us and confirm it against the epoch's public commitment.

        Every epoch key has a commitment in the signed entry that started the epoch (genesis,
        rotate, remove_member), so a key handed on later (add_member, invite) is checked too.
        A key that does not open or does not match is the sealing admin's lie: it is not taken,
        and ``key_failure`` names the entry (the first such lie is kept).
        """
        if epoch in self.forgotten or (entry.redacted and not sealed):
            return  # outside retention: never take it back (our store blanked its sealed copies)
        key = crypto.open_sealed(private, sealed)
        expected = self._new_commits.get(epoch) or self.key_commits.get(epoch)
        if key is None or len(key) != crypto.KEY_SIZE:
            problem = "the key sealed to this device does not open"
        elif expected is not None and crypto.key_commitment(b"" if epoch == 1 else self.space, epoch,
                                                            key) != expected:
            problem = f"the key sealed to this device does not match the commitment {expected.hex()[:16]}…"
        else:
            new_keys[epoch] = key
            return
        if self.key_failure is None:
            self.key_failure = KeyConfirmationError(seq, entry.header.author, epoch, problem, entry.raw)

    def forget_keys(self, epochs: set[int]) -> None:
        """Drop epoch keys for good (retention): entries under them stay unreadable here."""
        for epoch in epochs:
            self.epoch_keys.pop(epoch, None)
        self.forgotten |= epochs


def _held_nothing(author_seq: int) -> bytes | None:
    """No entry of ours is held (until the owner says which it holds)."""
    return None


def _no_clock() -> float:
    """Until the owner sets a clock: no time passes, so no deadline expires."""
    return 0.0
