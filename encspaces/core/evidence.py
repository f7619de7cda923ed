"""Evidence of relay misbehaviour: a self-contained file that anyone can check offline.

A fork, a rollback or a withholding is detected by one device, but the relay's lie should be
provable to others: members, an operator, a court. The relay signs every head it shows
(``head.py``), so the statements that contradict each other are already signed by it; this
module packs them, with what is needed to check them (the genesis, which binds the relay key
to the space id, and the chain link between two heads), into one versioned file, and checks
such a file with nothing but the file.

Format (docs/PROTOCOL.md section 19), msgpack throughout::

    file      = [ body: bin, reporter_signature: bin(64) | nil ]
    body      = { "v": 1, "kind": "fork" | "rollback" | "withholding", "space": bin(32),
                  "relay": bin(32), "genesis": bin | nil, "statements": [statement, ...],
                  "detected_ms": int, "reporter": bin(32) | nil, "note": str }
    statement = [ type: str, role: str, data ]
        "head":       data = [signed_bytes, signature]   (a signed head, wire form, exact bytes)
        "link":       data = [seq, h(seq), [digest(seq + 1), ..., digest(t)]]
        "checkpoint": data = bin (a C2SP checkpoint note with every signature line, exact bytes)
        "leaves":     data = [digest(1), ..., digest(m)]  (the entries from the genesis on, by digest)

A checker ignores statement types it does not know (so later versions of the SDK can add
statements without breaking older checkers), and refuses unknown versions and kinds.

A checkpoint statement counts only with the relay's signature under the key name = the space's
origin (``note.space_origin``); its cosignatures are checked against the witnesses of the policy
the genesis names, and the finding says which witnesses cosigned (lines of unknown keys, and
lines that do not verify, do not count). A leaves statement lets a checker recompute both the
chain h(1..m) and the Merkle roots of the log's prefixes, so a relay-signed head whose chain the
leaves reach binds the relay to a root, and a checkpoint of another root at a size below it is
a fork.
The reporter's signature (``CTX_EVIDENCE``) makes the reporter's own statements (when it saw
what, how long it waited) attributable; the relay's lie does not rest on it.

Pure: bytes in, a ``Finding`` or an ``EvidenceError`` out.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from ..errors import EncspacesError, EvidenceError, ProtocolError
from . import crypto
from .encoding import as_bytes, as_int, as_list, as_map, as_str, pack, unpack
from .entry import Entry, Kind
from .head import SignedHead, next_head
from .identity import Identity, member_id
from .log_state import space_id_of
from .membership import GenesisBody
from .merkle import Frontier, entry_leaf, leaf_hash
from .note import CosignatureVerifier, Ed25519Verifier, SignedCheckpoint, space_origin

EVIDENCE_VERSION = 1
CTX_EVIDENCE = b"encspaces/v1/evidence"
MAX_LEAVES = 1 << 20  # digests in a leaves statement (a log longer than that is not proven by recomputing)
MAX_EVIDENCE = 40 << 20  # bytes of a whole file: a leaves statement of MAX_LEAVES digests fits
MAX_STATEMENTS = 64
MAX_LINK = 16384  # digests in one chain link (the store keeps a head at least every few thousand seqs)


class EvidenceKind(enum.StrEnum):
    FORK = "fork"  # the relay signed two different heads for one seq
    ROLLBACK = "rollback"  # after signing seq n, the relay presented a shorter log as its newest
    WITHHOLDING = "withholding"  # the relay signed a seq and did not deliver up to it in time


class Role(enum.StrEnum):
    """Where the reporter got a statement (what the relay presented it as)."""

    VERIFIED = "verified"  # a head of a frame this device verified: its own chain
    WELCOME = "welcome"  # the relay's newest head, as its welcome presented it
    ANCHOR = "anchor"  # the welcome's head at the device's seq
    FRAME = "frame"  # the head of a frame (not verified: it failed)
    ACK = "ack"  # the head of an acknowledgement of this device's entries
    PRESENCE = "presence"  # a head a peer showed in presence (signed by the relay for that peer)
    CHECKPOINT = "checkpoint"  # a relay-signed (and maybe cosigned) checkpoint
    LATEST = "latest"  # the relay's answer to "your newest checkpoint"


@dataclass(frozen=True)
class HeadStatement:
    role: Role
    head: SignedHead


@dataclass(frozen=True)
class LinkStatement:
    """The chain from ``head`` = h(``seq``) through the entries after it (by digest): with it, a
    signed head at seq ``seq + len(digests)`` proves that the relay committed to h(seq) = ``head``.
    ``digests`` None: not filled in yet (the SDK adds them from the local store)."""

    role: Role
    seq: int
    head: bytes
    digests: tuple[bytes, ...] | None

    def end(self) -> bytes:
        h = self.head
        for i, digest in enumerate(self.digests or ()):
            h = next_head(h, self.seq + 1 + i, digest)
        return h


@dataclass(frozen=True)
class CheckpointStatement:
    """A checkpoint note as received (``note``: exact bytes, every signature line)."""

    role: Role
    note: bytes

    @property
    def signed(self) -> SignedCheckpoint:
        return SignedCheckpoint.parse(self.note)


@dataclass(frozen=True)
class LeavesStatement:
    """The digests of the entries at seq 1..m, from which a checker recomputes h(1..m) and the
    Merkle roots of every prefix. ``digests`` None: not filled in yet; the SDK fills it from the
    local store up to a stored signed head at or past ``through``, or, when the fork was seen in
    a frame not stored yet, from the store up to ``tail_from - 1`` and then ``tail`` (that
    frame's entries, whose relay-signed head is in the evidence)."""

    role: Role
    digests: tuple[bytes, ...] | None
    through: int = 0
    tail_from: int = 0
    tail: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class OtherStatement:
    """A statement of a type this version does not interpret (e.g. a cosigned checkpoint)."""

    type: str
    role: str
    data: Any


Statement = HeadStatement | LinkStatement | CheckpointStatement | LeavesStatement | OtherStatement


@dataclass(frozen=True)
class Evidence:
    kind: EvidenceKind
    space: bytes
    relay_key: bytes | None
    statements: tuple[Statement, ...]
    genesis: bytes | None = None
    detected_ms: int = 0
    note: str = ""
    reporter: bytes | None = None

    @property
    def heads(self) -> list[HeadStatement]:
        return [s for s in self.statements if isinstance(s, HeadStatement)]

    @property
    def link(self) -> LinkStatement | None:
        return next((s for s in self.statements if isinstance(s, LinkStatement)), None)

    @property
    def leaves(self) -> LeavesStatement | None:
        return next((s for s in self.statements if isinstance(s, LeavesStatement)), None)

    @property
    def checkpoints(self) -> list[CheckpointStatement]:
        return [s for s in self.statements if isinstance(s, CheckpointStatement)]

    @property
    def complete(self) -> bool:
        """Everything a checker needs is here (the relay key, and a filled-in link and leaves if any)."""
        link, leaves = self.link, self.leaves
        return (self.relay_key is not None and (link is None or link.digests is not None)
                and (leaves is None or leaves.digests is not None))

    def replace(self, **changes: Any) -> Evidence:
        return dataclasses.replace(self, **changes)

    def encode(self, reporter: Identity | None = None) -> bytes:
        """The evidence file; signed by ``reporter`` (who then is named in it) if given."""
        if self.relay_key is None:
            raise EvidenceError("evidence without the relay's key cannot be checked by anyone")
        statements: list[list[Any]] = []
        for s in self.statements:
            if isinstance(s, HeadStatement):
                statements.append(["head", s.role.value, s.head.encode()])
            elif isinstance(s, LinkStatement):
                if s.digests is None:
                    raise EvidenceError(f"the chain link from seq {s.seq} is not filled in")
                statements.append(["link", s.role.value, [s.seq, s.head, list(s.digests)]])
            elif isinstance(s, CheckpointStatement):
                statements.append(["checkpoint", s.role.value, s.note])
            elif isinstance(s, LeavesStatement):
                if s.digests is None:
                    raise EvidenceError(f"the leaves through seq {s.through} are not filled in")
                statements.append(["leaves", s.role.value, list(s.digests)])
            else:
                statements.append([s.type, s.role, s.data])
        who = reporter.public.sign_key if reporter is not None else self.reporter
        body = pack({
            "v": EVIDENCE_VERSION, "kind": self.kind.value, "space": self.space, "relay": self.relay_key,
            "genesis": self.genesis, "statements": statements, "detected_ms": self.detected_ms,
            "reporter": who, "note": self.note,
        })
        signature = reporter.sign(CTX_EVIDENCE, body) if reporter is not None else None
        return pack([body, signature])


def head_wire(head: SignedHead) -> bytes:
    """A signed head as one byte string (msgpack ``[signed_bytes, signature]``), for ``.evidence``."""
    return pack(head.encode())


def fork_proof(
    signed: SignedHead, role: Role, relay_key: bytes | None, ours_at_seq: bytes, verified: SignedHead | None
) -> tuple[tuple[bytes, ...], Evidence]:
    """``evidence`` and ``proof`` of a ForkError: ``signed`` contradicts our chain, whose hash at its
    seq is ``ours_at_seq``. Our side is ``verified``, the newest head we verified; the chain link
    from the fork's seq up to it needs the digests of the entries between, which only the store
    holds: it is left to be filled in (``LinkStatement.digests`` None) unless the heads share a seq.
    """
    seq = signed.seq
    statements: list[Statement] = [HeadStatement(role, signed)]
    if verified is not None and verified.seq >= seq:
        statements.append(HeadStatement(Role.VERIFIED, verified))
        if verified.seq > seq:
            statements.append(LinkStatement(Role.VERIFIED, seq, ours_at_seq, None))
    wire = tuple(head_wire(s.head) for s in statements if isinstance(s, HeadStatement))
    return wire, Evidence(EvidenceKind.FORK, signed.space, relay_key, tuple(statements))


def decode(data: bytes) -> Evidence:
    """Parse (not check) an evidence file; raises ``EvidenceError`` when it is malformed."""
    try:
        return _decode(data)
    except ProtocolError as exc:
        raise EvidenceError(f"not an evidence file: {exc}") from exc


def _decode(data: bytes) -> Evidence:
    body, signature = as_list(unpack(data, max_size=MAX_EVIDENCE, what="evidence"), "evidence", 2)
    body = as_bytes(body, "evidence body", max_size=MAX_EVIDENCE)
    m = as_map(unpack(body, max_size=MAX_EVIDENCE, what="evidence body"), "evidence body")
    version = as_int(m.get("v"), "evidence version")
    if version != EVIDENCE_VERSION:
        raise EvidenceError(f"evidence version {version}; this checker reads version {EVIDENCE_VERSION}")
    kind_text = as_str(m.get("kind"), "evidence kind")
    try:
        kind = EvidenceKind(kind_text)
    except ValueError:
        raise EvidenceError(f"unknown kind of evidence {kind_text!r}") from None
    space = as_bytes(m.get("space"), "evidence space", crypto.HASH_SIZE)
    relay = as_bytes(m.get("relay"), "evidence relay key", crypto.PUBLIC_KEY_SIZE)
    genesis = m.get("genesis")
    reporter = m.get("reporter")
    if reporter is not None:
        reporter = as_bytes(reporter, "evidence reporter", crypto.PUBLIC_KEY_SIZE)
    if signature is not None:  # checked before anything signed is interpreted
        signature = as_bytes(signature, "evidence signature", crypto.SIGNATURE_SIZE)
        if reporter is None:
            raise EvidenceError("the evidence is signed but names no reporter")
        if not crypto.verify(reporter, CTX_EVIDENCE, body, signature):
            raise EvidenceError(f"the reporter's signature ({member_id(reporter)}) does not verify")
    elif reporter is not None:
        raise EvidenceError("the evidence names a reporter but carries no signature of theirs")
    items = as_list(m.get("statements"), "evidence statements")
    if len(items) > MAX_STATEMENTS:
        raise EvidenceError(f"{len(items)} statements, at most {MAX_STATEMENTS}")
    statements: list[Statement] = []
    for i, item in enumerate(items, start=1):
        kind_of, role, value = as_list(item, f"statement {i}", 3)
        kind_of, role = as_str(kind_of, f"statement {i} type"), as_str(role, f"statement {i} role")
        if kind_of == "head":
            statements.append(HeadStatement(_role(role, i), SignedHead.decode(value)))
        elif kind_of == "link":
            seq, head, digests = as_list(value, f"statement {i} link", 3)
            digests = as_list(digests, f"statement {i} digests")
            if len(digests) > MAX_LINK:
                raise EvidenceError(f"statement {i}: a link of {len(digests)} digests, at most {MAX_LINK}")
            statements.append(LinkStatement(
                _role(role, i), as_int(seq, f"statement {i} seq"),
                as_bytes(head, f"statement {i} head", crypto.HASH_SIZE),
                tuple(as_bytes(d, f"statement {i} digest", crypto.HASH_SIZE) for d in digests)))
        elif kind_of == "checkpoint":
            data = as_bytes(value, f"statement {i} checkpoint", max_size=MAX_EVIDENCE)
            try:
                SignedCheckpoint.parse(data)
            except EncspacesError as exc:
                raise EvidenceError(f"statement {i}: not a checkpoint note: {exc}") from exc
            statements.append(CheckpointStatement(_role(role, i), data))
        elif kind_of == "leaves":
            leaves = as_list(value, f"statement {i} leaves")
            if len(leaves) > MAX_LEAVES:
                raise EvidenceError(f"statement {i}: {len(leaves)} leaves, at most {MAX_LEAVES}")
            statements.append(LeavesStatement(
                _role(role, i), tuple(as_bytes(d, f"statement {i} leaf", crypto.HASH_SIZE) for d in leaves)))
        else:
            statements.append(OtherStatement(kind_of, role, value))
    return Evidence(
        kind=kind, space=space, relay_key=relay, statements=tuple(statements),
        genesis=None if genesis is None else as_bytes(genesis, "evidence genesis", max_size=MAX_EVIDENCE),
        detected_ms=as_int(m.get("detected_ms", 0), "evidence detected_ms"),
        note=as_str(m.get("note", ""), "evidence note", max_len=4096),
        reporter=reporter,
    )


def _role(text: str, i: int) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise EvidenceError(f"statement {i}: unknown role {text!r}") from None


@dataclass(frozen=True)
class Finding:
    """What a checked evidence file proves, in words and in numbers."""

    kind: EvidenceKind
    space: bytes
    relay_key: bytes
    proves: str  # what the relay's signatures alone establish
    reported: str  # what rests on the reporter's word (signed by them if ``reporter``)
    seq: int  # the seq the misbehaviour is at
    bound: bool  # the genesis binds the relay key to the space id
    reporter: bytes | None
    ignored: tuple[str, ...]  # statement types this checker does not interpret
    cosigners: tuple[str, ...] = ()  # witnesses of the genesis policy that cosigned a checkpoint of the evidence


def check(data: bytes) -> Finding:
    """Verify an evidence file offline; raises ``EvidenceError`` unless it proves its kind.

    Checked: the file's form and version; the reporter's signature if any; the genesis hashes
    to the space id and pins the relay key (then no one can claim another key signed); every
    signed head verifies under that key for that space; every checkpoint carries the relay's
    signature under the space's origin (cosignatures count for the genesis policy's witnesses);
    and the statements prove the kind.
    """
    evidence = decode(data)
    relay = evidence.relay_key
    assert relay is not None
    bound = False
    witnesses: list[tuple[str, CosignatureVerifier]] = []
    if evidence.genesis is not None:
        try:
            genesis = Entry.decode(evidence.genesis)
            body = GenesisBody.decode(genesis.body) if genesis.header.kind is Kind.GENESIS else None
        except EncspacesError as exc:
            raise EvidenceError(f"the genesis does not decode: {exc}") from exc
        if body is None:
            raise EvidenceError("the genesis is not a genesis entry")
        pinned = body.relay_key
        if space_id_of(evidence.genesis) != evidence.space:
            raise EvidenceError("the genesis does not hash to the space id: it is another space's")
        if pinned != relay:
            raise EvidenceError(f"the space's genesis pins relay key {member_id(pinned)}, "
                                f"the evidence names {member_id(relay)}")
        bound = True
        witnesses = [(w.name, w.verifier()) for w in body.witnesses.witnesses]
    cosigned: dict[CheckpointStatement, tuple[str, ...]] = {}
    for i, statement in enumerate(evidence.statements, start=1):
        if isinstance(statement, HeadStatement):
            try:
                statement.head.check(relay, evidence.space)
            except EncspacesError as exc:
                raise EvidenceError(f"statement {i} ({statement.role.value} head): {exc}") from exc
        elif isinstance(statement, CheckpointStatement):
            cosigned[statement] = _check_checkpoint(statement, i, evidence.space, relay, witnesses)
    finding = {EvidenceKind.FORK: _fork, EvidenceKind.ROLLBACK: _rollback,
               EvidenceKind.WITHHOLDING: _withholding}[evidence.kind](evidence, cosigned)
    ignored = tuple(s.type for s in evidence.statements if isinstance(s, OtherStatement))
    cosigners = tuple(dict.fromkeys(name for names in cosigned.values() for name in names))
    return Finding(evidence.kind, evidence.space, relay, finding[0], finding[1], finding[2], bound,
                   evidence.reporter, ignored, cosigners)


def _check_checkpoint(statement: CheckpointStatement, i: int, space: bytes, relay: bytes,
                      witnesses: list[tuple[str, CosignatureVerifier]]) -> tuple[str, ...]:
    """The relay's signature must verify (the statement is its word); returns the witnesses whose
    cosignature verifies (a line of an unknown key, or one that does not verify, does not count)."""
    signed = statement.signed
    size = signed.checkpoint.size
    origin = space_origin(space)
    if signed.checkpoint.origin != origin:
        raise EvidenceError(f"statement {i} (checkpoint of size {size}): origin "
                            f"{signed.checkpoint.origin[:80]!r}, not the space's {origin}")
    verifier = Ed25519Verifier(origin, relay)
    text = signed.note.text.encode()
    lines = [s for s in signed.note.signatures if s.name == verifier.name and s.key_id == verifier.key_id]
    if not lines:
        raise EvidenceError(f"statement {i} (checkpoint of size {size}) carries no signature of the relay key")
    if not all(verifier.verify(text, line.signature) for line in lines):
        raise EvidenceError(f"statement {i} (checkpoint of size {size}): the relay's signature does not verify")
    found: list[str] = []
    for name, cosigner in witnesses:
        if any(line.name == cosigner.name and line.key_id == cosigner.key_id and cosigner.verify(text, line.signature)
               for line in signed.note.signatures):
            found.append(name)
    return tuple(found)


Cosigned = dict[CheckpointStatement, tuple[str, ...]]


def _describe(head: SignedHead) -> str:
    return f"seq {head.seq} = {head.head.hex()[:16]}… (signed at {head.time_ms} ms)"


def _describe_checkpoint(statement: CheckpointStatement, cosigned: Cosigned) -> str:
    cp = statement.signed.checkpoint
    names = cosigned.get(statement, ())
    by = f", cosigned by {', '.join(names)}" if names else ", cosigned by no witness of the genesis policy"
    return f"a checkpoint of size {cp.size} with root {cp.root.hex()[:16]}… ({statement.role.value}{by})"


def _fork(evidence: Evidence, cosigned: Cosigned) -> tuple[str, str, int]:
    checkpoints = evidence.checkpoints
    for one in checkpoints:
        for two in checkpoints:
            ca, cb = one.signed.checkpoint, two.signed.checkpoint
            if ca.size == cb.size and ca.root != cb.root:
                return (f"the relay signed {_describe_checkpoint(one, cosigned)} and "
                        f"{_describe_checkpoint(two, cosigned)}: two different logs of size {ca.size}", "", ca.size)
    heads = evidence.heads
    link = evidence.link
    for a in heads:
        for b in heads:
            if a.head.seq == b.head.seq and a.head.head != b.head.head:
                return (f"the relay signed two different heads for seq {a.head.seq}: {a.head.head.hex()[:16]}… "
                        f"({a.role.value}) and {b.head.head.hex()[:16]}… ({b.role.value})", "", a.head.seq)
    leaves = evidence.leaves
    if leaves is not None and leaves.digests is not None and checkpoints:
        return _fork_by_leaves(heads, leaves.digests, checkpoints, cosigned)
    if link is None or link.digests is None:
        raise EvidenceError("fork evidence needs two heads at one seq, two checkpoints of one size, "
                            "a checkpoint with the leaves of a signed head, or a chain link between two heads")
    end_seq = link.seq + len(link.digests)
    end = link.end()
    ends = [h for h in heads if h.head.seq == end_seq and h.head.head == end]
    others = [h for h in heads if h.head.seq == link.seq and h.head.head != link.head]
    if not ends:
        raise EvidenceError(f"the chain link from seq {link.seq} ends at seq {end_seq} with {end.hex()[:16]}…, "
                            "which no signed head in the evidence carries")
    if not others:
        raise EvidenceError(f"no signed head at seq {link.seq} differs from the link's h({link.seq})")
    x, y = others[0], ends[0]
    return (f"the relay signed {_describe(x.head)} ({x.role.value}), and {_describe(y.head)} ({y.role.value}) "
            f"whose chain passes h({link.seq}) = {link.head.hex()[:16]}… ({len(link.digests)} entries by digest): "
            f"two different histories at seq {link.seq}", "", link.seq)


def _fork_by_leaves(heads: list[HeadStatement], digests: tuple[bytes, ...], checkpoints: list[CheckpointStatement],
                    cosigned: Cosigned) -> tuple[str, str, int]:
    """The leaves chain to a signed head at seq k: the relay committed to them, so the root of
    their first n is the only root of size n <= k it may sign."""
    sizes = {c.signed.checkpoint.size for c in checkpoints}
    by_seq: dict[int, list[HeadStatement]] = {}
    for h in heads:
        by_seq.setdefault(h.head.seq, []).append(h)
    frontier = Frontier()
    roots: dict[int, bytes] = {}
    chain = bytes(crypto.HASH_SIZE)  # h(0)
    anchor: HeadStatement | None = None
    for seq, digest in enumerate(digests, start=1):
        chain = next_head(chain, seq, digest)
        frontier.append(leaf_hash(entry_leaf(digest)))
        if seq in sizes:
            roots[seq] = frontier.root()
        for h in by_seq.get(seq, ()):
            if h.head.head == chain:
                anchor = h
    if anchor is None:
        raise EvidenceError(f"the {len(digests)} leaves chain to no signed head of the evidence")
    for c in sorted(checkpoints, key=lambda c: c.signed.checkpoint.size):
        cp = c.signed.checkpoint
        if 1 <= cp.size <= anchor.head.seq and roots[cp.size] != cp.root:
            return (f"the relay signed {_describe_checkpoint(c, cosigned)}, and {_describe(anchor.head)} "
                    f"({anchor.role.value}) whose chain over the {anchor.head.seq} leaves gives root "
                    f"{roots[cp.size].hex()[:16]}… at size {cp.size}: two different histories", "", cp.size)
    raise EvidenceError(f"every checkpoint at or below seq {anchor.head.seq} carries the leaves' root: no fork")


def _rollback(evidence: Evidence, cosigned: Cosigned) -> tuple[str, str, int]:
    heads = evidence.heads
    newest = [h for h in heads if h.role in (Role.WELCOME, Role.FRAME, Role.ACK)]
    for later in newest:
        for earlier in heads:
            if earlier is not later and earlier.head.seq > later.head.seq:
                order = "later" if later.head.time_ms > earlier.head.time_ms else "at a time not after it"
                return (f"the relay signed {_describe(earlier.head)} ({earlier.role.value}) and, {order}, "
                        f"{_describe(later.head)} ({later.role.value}): a log {earlier.head.seq - later.head.seq} "
                        "entries shorter",
                        f"the reporter states the relay presented seq {later.head.seq} as its newest "
                        f"({later.role.value}) after it had verified seq {earlier.head.seq}; a signed head does not "
                        "itself say it is the newest", later.head.seq)
    checkpoints = sorted(evidence.checkpoints, key=lambda c: -c.signed.checkpoint.size)
    latest = [c for c in checkpoints if c.role is Role.LATEST]
    for top in checkpoints:
        size = top.signed.checkpoint.size
        shorter = [(h.head.seq, _describe(h.head), h.role.value) for h in newest if h.head.seq < size]
        shorter += [(c.signed.checkpoint.size, f"a checkpoint of size {c.signed.checkpoint.size}", c.role.value)
                    for c in latest if c.signed.checkpoint.size < size]
        if shorter:
            seq, what, role = min(shorter)
            return (f"the relay signed {_describe_checkpoint(top, cosigned)}, and {what} ({role}): "
                    f"a log {size - seq} entries shorter",
                    f"the reporter states the relay presented seq {seq} as its newest ({role}) after it had "
                    f"signed the checkpoint of size {size}", seq)
    raise EvidenceError("rollback evidence needs a welcome, frame or ack head (or the relay's latest checkpoint) "
                        "below another signed head or checkpoint")


def _withholding(evidence: Evidence, cosigned: Cosigned) -> tuple[str, str, int]:
    heads = evidence.heads
    ahead = [(h.head.seq, f"{_describe(h.head)} ({h.role.value})")
             for h in heads if h.role in (Role.WELCOME, Role.ACK, Role.PRESENCE, Role.CHECKPOINT)]
    ahead += [(c.signed.checkpoint.size, _describe_checkpoint(c, cosigned)) for c in evidence.checkpoints]
    if not ahead:
        raise EvidenceError("withholding evidence needs the relay's signed head or checkpoint past what it delivered")
    seq, what = max(ahead)
    verified = max((h.head.seq for h in heads if h.role is Role.VERIFIED), default=0)
    if verified >= seq:
        raise EvidenceError(f"the reporter verified seq {verified}, not below the withheld seq {seq}")
    return (f"the relay signed the log through {what}",
            f"the reporter states it had verified only through seq {verified} when its deadline ran out"
            + (f" ({evidence.note})" if evidence.note else ""), seq)


__all__ = [
    "CTX_EVIDENCE",
    "EVIDENCE_VERSION",
    "MAX_LEAVES",
    "CheckpointStatement",
    "Evidence",
    "EvidenceKind",
    "Finding",
    "HeadStatement",
    "LeavesStatement",
    "LinkStatement",
    "OtherStatement",
    "Role",
    "Statement",
    "check",
    "decode",
    "fork_proof",
    "head_wire",
]
