"""Every message relay and client exchange, with strict decoding.

One msgpack map per websocket message, its kind under "t". Decoding checks every field's
type and size, so the relay and the client only ever handle well-typed dataclasses and a
malformed message is one ProtocolError naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from ..errors import ProtocolError
from . import crypto
from .encoding import (
    DEFAULT_MAX_MESSAGE,
    as_bytes,
    as_int,
    as_list,
    as_map,
    as_str,
    field,
    pack,
    unpack,
)
from .entry import frozen_instance
from .head import SignedHead

PROTOCOL_VERSION = 1
CHALLENGE_SIZE = 32
MAX_ENTRIES_PER_MESSAGE = 4096
_MAX_INT = (1 << 63) - 1  # encoding.as_int's default bound
MAX_PRESENCE_SIZE = 8192


@dataclass(frozen=True)
class Challenge:
    """Relay to client, first message: prove you hold a member's key, fresh for this nonce."""

    relay_key: bytes
    nonce: bytes
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return pack({"t": "challenge", "v": self.version, "relay": self.relay_key, "nonce": self.nonce})


@dataclass(frozen=True)
class AuthStatement:
    """What a client signs to be admitted: bound to space, relay, challenge and time."""

    space: bytes
    member: bytes
    relay_key: bytes
    nonce: bytes
    time_ms: int

    def encode(self) -> bytes:
        return pack([self.space, self.member, self.relay_key, self.nonce, self.time_ms])

    @classmethod
    def decode(cls, data: bytes) -> AuthStatement:
        items = as_list(unpack(data, max_size=512, what="auth statement"), "auth statement", 5)
        return cls(
            space=as_bytes(items[0], "auth space", crypto.HASH_SIZE),
            member=as_bytes(items[1], "auth member", crypto.PUBLIC_KEY_SIZE),
            relay_key=as_bytes(items[2], "auth relay key", crypto.PUBLIC_KEY_SIZE),
            nonce=as_bytes(items[3], "auth nonce", CHALLENGE_SIZE),
            time_ms=as_int(items[4], "auth time"),
        )


@dataclass(frozen=True)
class Hello:
    """Client to relay: the signed auth statement, where our log stands, and a genesis to create."""

    auth: bytes
    signature: bytes
    since_seq: int
    since_head: bytes
    genesis: bytes | None = None
    # A newcomer with an invite link: (invite key, invite's signature over ``auth``).
    invite: tuple[bytes, bytes] | None = None
    # Start from the newest snapshot: the relay may send older encrypted bodies stripped.
    fast: bool = False
    # And the device can start at the snapshot's anchor: the relay may send entries before it as
    # digests, with the log state there (``AnchorState``). docs/PROTOCOL.md section 14, "Anchors".
    anchored: bool = False

    def encode(self) -> bytes:
        return pack({"t": "hello", "auth": self.auth, "sig": self.signature, "since": self.since_seq,
                     "since_head": self.since_head, "genesis": self.genesis,
                     "invite": None if self.invite is None else list(self.invite), "fast": self.fast,
                     "anchored": self.anchored})


@dataclass(frozen=True)
class Welcome:
    """Relay to client after admission: its current head and its head at the client's seq.

    ``checkpoint``: the relay's latest signed checkpoint of the space's Merkle tree (a C2SP
    note with the cosignatures the relay has collected; section 18), None if it has none. An
    optional field: older relays leave it out.
    """

    head: SignedHead
    anchor: SignedHead | None
    checkpoint: bytes | None = None

    def encode(self) -> bytes:
        message: dict[str, Any] = {"t": "welcome", "head": self.head.encode(),
                                   "anchor": self.anchor.encode() if self.anchor else None}
        if self.checkpoint is not None:
            message["checkpoint"] = self.checkpoint
        return pack(message)


@dataclass(frozen=True)
class Entries:
    """Relay to client: entries first_seq.. in log order, covered by one signed head."""

    first_seq: int
    entries: list[bytes]
    head: SignedHead

    def encode(self) -> bytes:
        return pack({"t": "entries", "first": self.first_seq, "entries": self.entries,
                     "head": self.head.encode()})


@dataclass(frozen=True)
class AnchorState:
    """Relay to a new device, in a catch-up to an anchor: the log state (``LogState.export``) at ``seq``,
    sent right after the entries up to it; the device checks it (``LogVerifier.install_anchor``)."""

    seq: int
    state: bytes

    def encode(self) -> bytes:
        return pack({"t": "anchor_state", "seq": self.seq, "state": self.state})


@dataclass(frozen=True)
class Submit:
    """Client to relay: signed entries to sequence, in the author's order."""

    entries: list[bytes]

    def encode(self) -> bytes:
        return pack({"t": "submit", "entries": self.entries})


@dataclass(frozen=True)
class Ack:
    """Relay to client: the seq given to each submitted entry, as (author_seq, seq) pairs.

    ``head`` is the relay's signed head covering them: shown to peers in presence, it proves
    the relay sequenced those entries, so withholding them from anyone is detectable.
    """

    results: list[tuple[int, int]]
    head: SignedHead | None = None

    def encode(self) -> bytes:
        return pack({"t": "ack", "results": [list(r) for r in self.results],
                     "head": self.head.encode() if self.head is not None else None})


@dataclass(frozen=True)
class Error:
    """Either side: why a message was refused. ``fatal`` means the connection closes next."""

    code: str
    message: str
    fatal: bool = True
    ref: int | None = None  # the author_seq of the refused entry, when one entry is to blame

    def encode(self) -> bytes:
        return pack({"t": "error", "code": self.code, "message": self.message, "fatal": self.fatal,
                     "ref": self.ref})


@dataclass(frozen=True)
class Presence:
    """Either way: a sealed, signed presence message (encspaces.core.presence), forwarded, never stored."""

    data: bytes

    def encode(self) -> bytes:
        return pack({"t": "presence", "data": self.data})


# --- encrypted file chunks (blobs), after the handshake; see encspaces/files.py -------------
# Each request carries an ``id`` chosen by the client and echoed in the answer, so a client
# may keep several requests in flight on one connection.

MAX_BLOB_REQUEST_ID = (1 << 32) - 1


@dataclass(frozen=True)
class BlobPut:
    """Client to relay: store ``data`` (an encrypted chunk) under ``hash = crypto.blob_hash(data)``."""

    id: int
    hash: bytes
    data: bytes

    def encode(self) -> bytes:
        return pack({"t": "blob_put", "id": self.id, "hash": self.hash, "data": self.data})


@dataclass(frozen=True)
class BlobAck:
    """Relay to client: the blob is stored (now, or already was)."""

    id: int
    hash: bytes

    def encode(self) -> bytes:
        return pack({"t": "blob_ack", "id": self.id, "hash": self.hash})


@dataclass(frozen=True)
class BlobGet:
    """Client to relay: send the blob stored under ``hash`` in this space."""

    id: int
    hash: bytes

    def encode(self) -> bytes:
        return pack({"t": "blob_get", "id": self.id, "hash": self.hash})


@dataclass(frozen=True)
class BlobData:
    """Relay to client: the bytes stored under ``hash`` (the client checks the hash itself)."""

    id: int
    hash: bytes
    data: bytes

    def encode(self) -> bytes:
        return pack({"t": "blob_data", "id": self.id, "hash": self.hash, "data": self.data})


@dataclass(frozen=True)
class BlobMissing:
    """Relay to client: this space holds no blob under ``hash``."""

    id: int
    hash: bytes

    def encode(self) -> bytes:
        return pack({"t": "blob_missing", "id": self.id, "hash": self.hash})


@dataclass(frozen=True)
class BlobRefused:
    """Relay to client: a blob_put refused (``too_large``, ``quota``, ``bad_hash``, ``read_only``).

    Not fatal: the connection stays open, only that request failed.
    """

    id: int
    hash: bytes
    code: str
    message: str

    def encode(self) -> bytes:
        return pack({"t": "blob_refused", "id": self.id, "hash": self.hash, "code": self.code,
                     "message": self.message})


BlobReply: TypeAlias = BlobAck | BlobData | BlobMissing | BlobRefused


# --- the witnessed log (docs/PROTOCOL.md section 18), after the handshake -------------------
# The relay keeps the space's RFC 6962 tree (leaf i = the entry at seq i + 1) and signs
# checkpoints of it; a client asks for proofs between what it verified and what it was shown.
# Requests carry a client-chosen ``id`` echoed in the answer, as blob requests do.

MAX_PROOF_REQUEST_ID = (1 << 32) - 1
MAX_PROOF_HASHES = 64  # RFC 9162: a tree of at most 2**64 leaves
MAX_CHECKPOINT_NOTE = 64 * 1024  # note.MAX_NOTE_SIZE


@dataclass(frozen=True)
class CheckpointNote:
    """Relay to client: a signed checkpoint (C2SP note bytes: ``origin\nsize\nbase64(root)\n``,
    the relay's signature, and any witness cosignatures it collected).

    Sent unprompted when a checkpoint gains its quorum of cosignatures (``id`` None), and as the
    answer to a ``checkpoint_req`` (its ``id``). The client verifies it; the relay's word alone
    proves nothing but what the relay signed.
    """

    note: bytes
    id: int | None = None

    def encode(self) -> bytes:
        return pack({"t": "checkpoint", "note": self.note, "id": self.id})


@dataclass(frozen=True)
class CheckpointReq:
    """Client to relay: send your latest checkpoint of this space (answered by ``checkpoint``)."""

    id: int

    def encode(self) -> bytes:
        return pack({"t": "checkpoint_req", "id": self.id})


@dataclass(frozen=True)
class ConsistencyReq:
    """Client to relay: the RFC 9162 consistency proof from tree size ``first`` to ``second``."""

    id: int
    first: int
    second: int

    def encode(self) -> bytes:
        return pack({"t": "consistency_req", "id": self.id, "first": self.first, "second": self.second})


@dataclass(frozen=True)
class Consistency:
    """Relay to client: PROOF(first, D[0:second]) (RFC 9162 §2.1.4.1), hashes of 32 bytes."""

    id: int
    first: int
    second: int
    proof: list[bytes]

    def encode(self) -> bytes:
        return pack({"t": "consistency", "id": self.id, "first": self.first, "second": self.second,
                     "proof": self.proof})


@dataclass(frozen=True)
class InclusionReq:
    """Client to relay: the inclusion proof of the entry at ``seq`` (leaf ``seq - 1``) in the
    tree of ``size`` leaves."""

    id: int
    seq: int
    size: int

    def encode(self) -> bytes:
        return pack({"t": "inclusion_req", "id": self.id, "seq": self.seq, "size": self.size})


@dataclass(frozen=True)
class Inclusion:
    """Relay to client: PATH(seq - 1, D[0:size]) (RFC 9162 §2.1.3.1), bottom-up."""

    id: int
    seq: int
    size: int
    proof: list[bytes]

    def encode(self) -> bytes:
        return pack({"t": "inclusion", "id": self.id, "seq": self.seq, "size": self.size, "proof": self.proof})


@dataclass(frozen=True)
class ProofRefused:
    """Relay to client: a proof or checkpoint request it will not answer, with a ``ProofCode``
    (``beyond_head``, ``bad_range``, ``unavailable``). Never fatal: only that request failed."""

    id: int
    code: str
    message: str

    def encode(self) -> bytes:
        return pack({"t": "proof_refused", "id": self.id, "code": self.code, "message": self.message})


ProofRequest: TypeAlias = CheckpointReq | ConsistencyReq | InclusionReq
ProofReply: TypeAlias = Consistency | Inclusion | ProofRefused


Message: TypeAlias = (
    Challenge | Hello | Welcome | Entries | AnchorState | Submit | Ack | Error | Presence | BlobPut | BlobGet
    | BlobReply | CheckpointNote | ProofRequest | ProofReply
)


def _head(value: Any, what: str) -> SignedHead:
    try:
        return SignedHead.decode(value)
    except ProtocolError as exc:
        raise ProtocolError(f"{what}: {exc}") from exc


def _decode_challenge(m: dict[str, Any]) -> Challenge:
    return Challenge(
        relay_key=as_bytes(field(m, "relay", "challenge"), "challenge relay key", crypto.PUBLIC_KEY_SIZE),
        nonce=as_bytes(field(m, "nonce", "challenge"), "challenge nonce", CHALLENGE_SIZE),
        version=as_int(field(m, "v", "challenge"), "challenge version"),
    )


def _decode_hello(m: dict[str, Any]) -> Hello:
    genesis = field(m, "genesis", "hello")
    invite_field = m.get("invite")
    invite = None
    if invite_field is not None:
        key, proof = as_list(invite_field, "hello invite", 2)
        invite = (as_bytes(key, "hello invite key", crypto.PUBLIC_KEY_SIZE),
                  as_bytes(proof, "hello invite proof", crypto.SIGNATURE_SIZE))
    fast, anchored = m.get("fast", False), m.get("anchored", False)
    if not isinstance(fast, bool) or not isinstance(anchored, bool):
        raise ProtocolError("hello fast, anchored: expected booleans")
    return Hello(
        fast=fast,
        anchored=anchored,
        invite=invite,
        auth=as_bytes(field(m, "auth", "hello"), "hello auth", max_size=512),
        signature=as_bytes(field(m, "sig", "hello"), "hello signature", crypto.SIGNATURE_SIZE),
        since_seq=as_int(field(m, "since", "hello"), "hello since seq"),
        since_head=as_bytes(field(m, "since_head", "hello"), "hello since head", crypto.HASH_SIZE),
        genesis=None if genesis is None else as_bytes(genesis, "hello genesis"),
    )


def _decode_welcome(m: dict[str, Any]) -> Welcome:
    anchor = field(m, "anchor", "welcome")
    checkpoint = m.get("checkpoint")
    return Welcome(
        head=_head(field(m, "head", "welcome"), "welcome head"),
        anchor=None if anchor is None else _head(anchor, "welcome anchor"),
        checkpoint=None if checkpoint is None else as_bytes(checkpoint, "welcome checkpoint",
                                                             max_size=MAX_CHECKPOINT_NOTE),
    )


def _decode_anchor_state(m: dict[str, Any]) -> AnchorState:
    return AnchorState(as_int(field(m, "seq", "anchor_state"), "anchor_state seq", minimum=1),
                       as_bytes(field(m, "state", "anchor_state"), "anchor_state state"))


def _entry_list(m: dict[str, Any], what: str) -> list[bytes]:
    items = as_list(field(m, "entries", what), f"{what} entries")
    if len(items) > MAX_ENTRIES_PER_MESSAGE:
        raise ProtocolError(f"{what}: {len(items)} entries is over the limit of {MAX_ENTRIES_PER_MESSAGE}")
    return [as_bytes(item, f"{what} entry") for item in items]


def _decode_entries(m: dict[str, Any]) -> Entries:
    # The frame a device receives for every entry: the well-formed case in one pass, without the
    # dataclass's ``__init__``; anything else takes the checks below, which name the field.
    entries, first = m.get("entries"), m.get("first")
    if (type(entries) is list and 0 < len(entries) <= MAX_ENTRIES_PER_MESSAGE and type(first) is int
            and 1 <= first <= _MAX_INT and all(type(item) is bytes for item in entries)):
        return frozen_instance(Entries, {"first_seq": first, "entries": entries,
                                         "head": _head(field(m, "head", "entries"), "entries head")})
    entries = _entry_list(m, "entries")
    if not entries:
        raise ProtocolError("entries: a frame needs at least one entry")
    return Entries(
        first_seq=as_int(field(m, "first", "entries"), "entries first seq", minimum=1),
        entries=entries,
        head=_head(field(m, "head", "entries"), "entries head"),
    )


def _decode_submit(m: dict[str, Any]) -> Submit:
    entries = _entry_list(m, "submit")
    if not entries:
        raise ProtocolError("submit: no entries")
    return Submit(entries)


def _decode_ack(m: dict[str, Any]) -> Ack:
    head = m.get("head")
    results = []
    for item in as_list(field(m, "results", "ack"), "ack results"):
        pair = as_list(item, "ack result", 2)
        results.append((as_int(pair[0], "ack author_seq", minimum=1), as_int(pair[1], "ack seq", minimum=1)))
    return Ack(results, None if head is None else _head(head, "ack head"))


def _decode_error(m: dict[str, Any]) -> Error:
    fatal = field(m, "fatal", "error")
    if not isinstance(fatal, bool):
        raise ProtocolError("error: 'fatal' must be a boolean")
    ref = m.get("ref")
    return Error(
        code=as_str(field(m, "code", "error"), "error code", 64),
        message=as_str(field(m, "message", "error"), "error message", 2048),
        fatal=fatal,
        ref=None if ref is None else as_int(ref, "error ref", minimum=1),
    )


def _decode_presence(m: dict[str, Any]) -> Presence:
    return Presence(as_bytes(field(m, "data", "presence"), "presence data", max_size=MAX_PRESENCE_SIZE))


def _blob_head(m: dict[str, Any], what: str) -> tuple[int, bytes]:
    return (as_int(field(m, "id", what), f"{what} id", maximum=MAX_BLOB_REQUEST_ID),
            as_bytes(field(m, "hash", what), f"{what} hash", crypto.HASH_SIZE))


def _blob_data(m: dict[str, Any], what: str) -> bytes:
    return as_bytes(field(m, "data", what), f"{what} data", max_size=DEFAULT_MAX_MESSAGE)


def _decode_blob_put(m: dict[str, Any]) -> BlobPut:
    return BlobPut(*_blob_head(m, "blob_put"), _blob_data(m, "blob_put"))


def _decode_blob_ack(m: dict[str, Any]) -> BlobAck:
    return BlobAck(*_blob_head(m, "blob_ack"))


def _decode_blob_get(m: dict[str, Any]) -> BlobGet:
    return BlobGet(*_blob_head(m, "blob_get"))


def _decode_blob_data(m: dict[str, Any]) -> BlobData:
    return BlobData(*_blob_head(m, "blob_data"), _blob_data(m, "blob_data"))


def _decode_blob_missing(m: dict[str, Any]) -> BlobMissing:
    return BlobMissing(*_blob_head(m, "blob_missing"))


def _decode_blob_refused(m: dict[str, Any]) -> BlobRefused:
    return BlobRefused(
        *_blob_head(m, "blob_refused"),
        code=as_str(field(m, "code", "blob_refused"), "blob_refused code", 64),
        message=as_str(field(m, "message", "blob_refused"), "blob_refused message", 2048),
    )


def _proof_id(m: dict[str, Any], what: str) -> int:
    return as_int(field(m, "id", what), f"{what} id", maximum=MAX_PROOF_REQUEST_ID)


def _proof_hashes(m: dict[str, Any], what: str) -> list[bytes]:
    items = as_list(field(m, "proof", what), f"{what} proof")
    if len(items) > MAX_PROOF_HASHES:
        raise ProtocolError(f"{what}: {len(items)} proof hashes, at most {MAX_PROOF_HASHES}")
    return [as_bytes(h, f"{what} proof hash", crypto.HASH_SIZE) for h in items]


def _decode_checkpoint(m: dict[str, Any]) -> CheckpointNote:
    ref = m.get("id")
    return CheckpointNote(
        note=as_bytes(field(m, "note", "checkpoint"), "checkpoint note", max_size=MAX_CHECKPOINT_NOTE),
        id=None if ref is None else as_int(ref, "checkpoint id", maximum=MAX_PROOF_REQUEST_ID),
    )


def _decode_checkpoint_req(m: dict[str, Any]) -> CheckpointReq:
    return CheckpointReq(_proof_id(m, "checkpoint_req"))


def _decode_consistency_req(m: dict[str, Any]) -> ConsistencyReq:
    return ConsistencyReq(_proof_id(m, "consistency_req"),
                          as_int(field(m, "first", "consistency_req"), "consistency_req first"),
                          as_int(field(m, "second", "consistency_req"), "consistency_req second"))


def _decode_consistency(m: dict[str, Any]) -> Consistency:
    return Consistency(_proof_id(m, "consistency"),
                       as_int(field(m, "first", "consistency"), "consistency first"),
                       as_int(field(m, "second", "consistency"), "consistency second"),
                       _proof_hashes(m, "consistency"))


def _decode_inclusion_req(m: dict[str, Any]) -> InclusionReq:
    return InclusionReq(_proof_id(m, "inclusion_req"),
                        as_int(field(m, "seq", "inclusion_req"), "inclusion_req seq", minimum=1),
                        as_int(field(m, "size", "inclusion_req"), "inclusion_req size", minimum=1))


def _decode_inclusion(m: dict[str, Any]) -> Inclusion:
    return Inclusion(_proof_id(m, "inclusion"),
                     as_int(field(m, "seq", "inclusion"), "inclusion seq", minimum=1),
                     as_int(field(m, "size", "inclusion"), "inclusion size", minimum=1),
                     _proof_hashes(m, "inclusion"))


def _decode_proof_refused(m: dict[str, Any]) -> ProofRefused:
    return ProofRefused(_proof_id(m, "proof_refused"),
                        as_str(field(m, "code", "proof_refused"), "proof_refused code", 64),
                        as_str(field(m, "message", "proof_refused"), "proof_refused message", 2048))


_DECODERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    "challenge": _decode_challenge,
    "hello": _decode_hello,
    "welcome": _decode_welcome,
    "entries": _decode_entries,
    "anchor_state": _decode_anchor_state,
    "submit": _decode_submit,
    "ack": _decode_ack,
    "error": _decode_error,
    "presence": _decode_presence,
    "blob_put": _decode_blob_put,
    "blob_ack": _decode_blob_ack,
    "blob_get": _decode_blob_get,
    "blob_data": _decode_blob_data,
    "blob_missing": _decode_blob_missing,
    "blob_refused": _decode_blob_refused,
    "checkpoint": _decode_checkpoint,
    "checkpoint_req": _decode_checkpoint_req,
    "consistency_req": _decode_consistency_req,
    "consistency": _decode_consistency,
    "inclusion_req": _decode_inclusion_req,
    "inclusion": _decode_inclusion,
    "proof_refused": _decode_proof_refused,
}


def decode_message(data: bytes, *, max_size: int = DEFAULT_MAX_MESSAGE) -> Message:
    """Parse one websocket message; raises ProtocolError naming what is wrong."""
    m = as_map(unpack(data, max_size=max_size), "message")
    kind = as_str(field(m, "t", "message"), "message kind", 32)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError(f"message: unknown kind {kind!r}")
    return decoder(m)
