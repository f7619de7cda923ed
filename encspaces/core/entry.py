"""Entries: the unit an author signs and the relay sequences.

An entry travels as the exact bytes its author produced. The header is encoded once by
the author; it is the AEAD associated data and, with the body's hash, the message the
author signs. Verifiers parse those bytes but never re-encode them. Keeping the body's
hash beside the header (rather than inside the signature over the body) lets a verifier
say whether the header or the body was tampered with, and lets a relay later drop a
body while the entry's digest, and so the chain, still verifies.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import AuthorSignatureError, BodyDigestError, MalformedEntryError, ProtocolError
from . import crypto
from .encoding import as_bytes, as_int, as_list, as_str, pack, unpack, unpack_array_start
from .identity import Identity, member_id

FORMAT_VERSION = 1
MAX_ENTRY_SIZE = 1 << 20


class Kind(enum.StrEnum):
    """What an entry does. Control kinds carry a public body the relay can read."""

    GENESIS = "genesis"
    ADD_MEMBER = "add_member"
    REMOVE_MEMBER = "remove_member"  # and a new epoch, its key sealed to everyone who stays
    SET_ROLE = "set_role"
    ROTATE = "rotate"  # a new epoch without a membership change (policy or on demand)
    POLICY = "policy"  # rotation and retention settings of the space
    INVITE = "invite"  # an invite key and the epoch keys sealed to it
    REVOKE_INVITE = "revoke_invite"
    JOIN = "join"  # a newcomer's first entry, proving knowledge of an invite secret
    DATA = "data"
    SNAPSHOT = "snapshot"  # the whole document at the seq its parent names, encrypted like data
    ATTEST = "attest"  # a member's signed statement of the content at a snapshot's base (encspaces.core.attestation)
    ADD_DEVICE = "add_device"  # a person's new device, certified by the person key (encspaces.core.devices)
    REMOVE_DEVICE = "remove_device"  # a device leaves, and a new epoch, its key sealed to every device that stays
    WITNESSES = "witnesses"  # the witness policy, replacing the one before (encspaces.core.witness_policy)

    @property
    def is_encrypted(self) -> bool:
        return self in _ENCRYPTED_KINDS  # a set: reading ``Kind.DATA`` costs more than the test

    @property
    def is_control(self) -> bool:
        return not self.is_encrypted

    @property
    def starts_epoch(self) -> bool:
        """Carries a new epoch's key (``RekeyBody``): what follows it in the log is under that epoch."""
        return self in _EPOCH_KINDS


_KINDS = {kind.value: kind for kind in Kind}
_ENCRYPTED_KINDS = frozenset({Kind.DATA, Kind.SNAPSHOT})
_EPOCH_KINDS = frozenset({Kind.REMOVE_MEMBER, Kind.ROTATE, Kind.REMOVE_DEVICE})


_T = TypeVar("_T")
_AUTHOR_IDS: dict[bytes, str] = {}  # author key -> member id (Entry.author_id)
_AUTHOR_IDS_KEPT = 4096
_MAX_INT = (1 << 63) - 1  # encoding.as_int's default bound
_HASH_SIZE = crypto.HASH_SIZE
_KEY_SIZE = crypto.PUBLIC_KEY_SIZE
_SIGNATURE_SIZE = crypto.SIGNATURE_SIZE
_SPACE_SIZES = (0, crypto.HASH_SIZE)  # the genesis names no space
_NONCE_SIZES = (0, crypto.NONCE_SIZE)  # control entries carry no nonce


def frozen_instance(cls: type[_T], fields: dict[str, Any]) -> _T:
    """A frozen dataclass instance from already checked fields, without the generated ``__init__``.

    That ``__init__`` sets each field through ``object.__setattr__`` (about 0.3 µs a field);
    decoding thousands of entries on a new device made it a fifth of the cost. The instance is
    the same: every field set, still frozen.
    """
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


@dataclass(frozen=True)
class Header:
    version: int
    space: bytes  # empty in the genesis entry, whose hash *is* the space id
    author: bytes
    author_seq: int
    epoch: int
    kind: Kind
    parent_seq: int
    parent_hash: bytes
    time_ms: int
    nonce: bytes  # empty for control entries, whose body is public

    def encode(self) -> bytes:
        return pack(
            [
                self.version,
                self.space,
                self.author,
                self.author_seq,
                self.epoch,
                self.kind.value,
                self.parent_seq,
                self.parent_hash,
                self.time_ms,
                self.nonce,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        items = unpack(data, max_size=MAX_ENTRY_SIZE, what="entry header")
        if type(items) is list and len(items) == 10:  # the common case, checked in one expression
            version, space, author, author_seq, epoch, kind_name, parent_seq, parent_hash, time_ms, nonce = items
            kind = _KINDS.get(kind_name) if type(kind_name) is str else None
            # Sizes and bounds as module constants: a new device decodes thousands of headers.
            if (type(version) is int and version == FORMAT_VERSION and kind is not None
                    and type(space) is bytes and len(space) in _SPACE_SIZES
                    and type(author) is bytes and len(author) == _KEY_SIZE
                    and type(author_seq) is int and 1 <= author_seq <= _MAX_INT
                    and type(epoch) is int and 1 <= epoch <= _MAX_INT
                    and type(parent_seq) is int and 0 <= parent_seq <= _MAX_INT
                    and type(parent_hash) is bytes and len(parent_hash) == _HASH_SIZE
                    and type(time_ms) is int and 0 <= time_ms <= _MAX_INT
                    and type(nonce) is bytes and len(nonce) in _NONCE_SIZES):
                return frozen_instance(cls, {
                    "version": version, "space": space, "author": author, "author_seq": author_seq,
                    "epoch": epoch, "kind": kind, "parent_seq": parent_seq, "parent_hash": parent_hash,
                    "time_ms": time_ms, "nonce": nonce})
        return cls._decode_checked(items)  # raises the ProtocolError that names the field

    @classmethod
    def _decode_checked(cls, items: object) -> Header:
        items = as_list(items, "entry header", 10)
        version = as_int(items[0], "entry version")
        if version != FORMAT_VERSION:
            raise ProtocolError(f"entry version: {version}, expected {FORMAT_VERSION}")
        kind_name = as_str(items[5], "entry kind", 32)
        try:
            kind = Kind(kind_name)
        except ValueError:
            raise ProtocolError(f"entry kind: unknown kind {kind_name!r}") from None
        space = as_bytes(items[1], "entry space", max_size=crypto.HASH_SIZE)
        if len(space) not in (0, crypto.HASH_SIZE):
            raise ProtocolError(f"entry space: expected 0 or 32 bytes, found {len(space)}")
        nonce = as_bytes(items[9], "entry nonce", max_size=crypto.NONCE_SIZE)
        if len(nonce) not in (0, crypto.NONCE_SIZE):
            raise ProtocolError(f"entry nonce: expected 0 or 24 bytes, found {len(nonce)}")
        return cls(
            version=version,
            space=space,
            author=as_bytes(items[2], "entry author", crypto.PUBLIC_KEY_SIZE),
            author_seq=as_int(items[3], "entry author_seq", minimum=1),
            epoch=as_int(items[4], "entry epoch", minimum=1),
            kind=kind,
            parent_seq=as_int(items[6], "entry parent seq"),
            parent_hash=as_bytes(items[7], "entry parent hash", crypto.HASH_SIZE),
            time_ms=as_int(items[8], "entry time"),
            nonce=nonce,
        )


@dataclass(frozen=True)
class Entry:
    """A parsed entry that still holds the exact bytes it was parsed from."""

    raw: bytes
    header_bytes: bytes
    body_hash: bytes
    signature: bytes
    body: bytes
    header: Header
    # The relay dropped the body (compaction, or a catch-up that starts from a snapshot): the
    # signature and the chain still verify through ``body_hash``; there is nothing to decrypt.
    stripped: bool = False
    # This device's own store blanked the sealed keys of epochs retention made it forget: the
    # body no longer matches ``body_hash``. Only ever read from the local store, never the wire.
    redacted: bool = False

    @property
    def author_id(self) -> str:
        """The author's member id: every applied update carries it (the document's origin), and a
        space has few authors, so each key's base64 is computed once."""
        author = self.header.author
        found = _AUTHOR_IDS.get(author)
        if found is None:
            found = member_id(author)
            if len(_AUTHOR_IDS) >= _AUTHOR_IDS_KEPT:
                _AUTHOR_IDS.clear()
            _AUTHOR_IDS[author] = found
        return found

    def digest(self) -> bytes:
        """What the relay's chain commits to; computable without the body.

        Computed once per entry: the chain and the Merkle tree each need it for every entry a
        device verifies. The fields it hashes are frozen, and ``dataclasses.replace`` makes a
        new instance without the cached value, so it cannot be another entry's.
        """
        found: bytes | None = self.__dict__.get("_digest")
        if found is None:
            found = self.__dict__["_digest"] = crypto.entry_digest(self.header_bytes, self.body_hash, self.signature)
        return found

    def describe(self) -> str:
        h = self.header
        return f"{h.kind.value} entry by {self.author_id[:12]}… author_seq {h.author_seq}"

    @classmethod
    def decode(cls, raw: bytes, *, local: bool = False) -> Entry:
        """Parse an entry; raises MalformedEntryError (a relay fault when it came from one).

        ``local`` accepts the redacted form this device's store may hold (see ``redact``); an
        entry from the relay is never decoded with it.
        """
        redacted = False
        try:
            items = unpack(raw, max_size=MAX_ENTRY_SIZE, what="entry")
            if local and isinstance(items, list) and len(items) == 5 and items[4] is True:
                redacted, items = True, items[:4]
            if type(items) is not list or len(items) != 4:
                items = as_list(items, "entry", 4)  # raises the ProtocolError that says why
            header_bytes, body_hash, signature, body = items
            if not (type(header_bytes) is bytes and type(body_hash) is bytes and len(body_hash) == _HASH_SIZE
                    and type(signature) is bytes and len(signature) == _SIGNATURE_SIZE
                    and (body is None or type(body) is bytes)):  # else the check that names the field
                header_bytes = as_bytes(items[0], "entry header")
                body_hash = as_bytes(items[1], "entry body hash", crypto.HASH_SIZE)
                signature = as_bytes(items[2], "entry signature", crypto.SIGNATURE_SIZE)
                body = None if items[3] is None else as_bytes(items[3], "entry body")
            header = Header.decode(header_bytes)
        except ProtocolError as exc:
            raise MalformedEntryError(f"malformed entry: {exc}") from exc
        stripped = body is None
        if stripped and header.kind not in _ENCRYPTED_KINDS:
            raise MalformedEntryError(f"a {header.kind.value} entry without its body: control bodies are never dropped")
        return frozen_instance(cls, {
            "raw": raw, "header_bytes": header_bytes, "body_hash": body_hash, "signature": signature,
            "body": b"" if body is None else body, "header": header, "stripped": stripped, "redacted": redacted})

    def redact(self, body: bytes) -> bytes:
        """The local form of this entry with ``body`` (sealed keys blanked) in place of its own."""
        return pack([self.header_bytes, self.body_hash, self.signature, body, True])

    def strip(self) -> bytes:
        """These entry bytes without the (encrypted) body: what a compacted relay keeps and serves."""
        if not self.header.kind.is_encrypted:
            raise ValueError("only encrypted bodies may be dropped")
        return pack([self.header_bytes, self.body_hash, self.signature, None])

    def check_signature(self, seq: int | None = None) -> None:
        """Author signature first, then that the body is the one signed."""
        where = f" at seq {seq}" if seq is not None else ""
        signed = self.header_bytes + self.body_hash
        if not crypto.verify(self.header.author, crypto.CTX_ENTRY_SIG, signed, self.signature):
            raise AuthorSignatureError(
                f"{self.describe()}{where}: the author's signature does not verify over the header"
            )
        if self.stripped or self.redacted:
            return
        found = crypto.hash_parts(crypto.CTX_BODY, self.body)
        if found != self.body_hash:
            raise BodyDigestError(
                f"{self.describe()}{where}: body hash mismatch, signed {self.body_hash.hex()[:16]}…, "
                f"found {found.hex()[:16]}… (ciphertext tampered)"
            )


def build_entry(
    identity: Identity,
    *,
    space: bytes,
    author_seq: int,
    epoch: int,
    kind: Kind,
    parent_seq: int,
    parent_hash: bytes,
    payload: bytes,
    epoch_key: bytes | None,
    time_ms: int | None = None,
) -> Entry:
    """Seal (data kinds) or carry in clear (control kinds) ``payload``, sign, and encode once."""
    if kind.is_control:
        nonce = b""
    else:
        if epoch_key is None:
            raise ValueError("a data entry needs the epoch key")
        nonce = crypto.random_nonce()
    header = Header(
        version=FORMAT_VERSION,
        space=space,
        author=identity.public.sign_key,
        author_seq=author_seq,
        epoch=epoch,
        kind=kind,
        parent_seq=parent_seq,
        parent_hash=parent_hash,
        time_ms=int(time.time() * 1000) if time_ms is None else time_ms,
        nonce=nonce,
    )
    header_bytes = header.encode()
    body = payload if kind.is_control else crypto.aead_seal(epoch_key or b"", nonce, payload, header_bytes)
    body_hash = crypto.hash_parts(crypto.CTX_BODY, body)
    signature = identity.sign(crypto.CTX_ENTRY_SIG, header_bytes + body_hash)
    raw = pack([header_bytes, body_hash, signature, body])
    return Entry(raw, header_bytes, body_hash, signature, body, header)


def strip_raw(raw: bytes) -> bytes:
    """An entry this relay stored (so already checked) without its encrypted body; control entries whole.

    Parses only the outer array and the header's kind: a catch-up strips thousands of entries.
    The digest, so the chain, is the same as the whole entry's (section 5 of docs/PROTOCOL.md).
    """
    items = unpack(raw, max_size=MAX_ENTRY_SIZE, what="entry")
    if items[3] is None or not _KINDS[unpack(items[0], what="entry header")[5]].is_encrypted:
        return raw
    return pack([items[0], items[1], items[2], None])


# The first bytes of an entry always hold its header (at most about 200 bytes), body hash and
# signature: what a stripped entry keeps.
STRIP_PREFIX = 512


def strip_prefix(prefix: bytes, size: int) -> bytes | None:
    """The stripped form of a stored entry of ``size`` bytes from its first bytes (see ``strip_raw``).

    None when the entry is a control entry cut short: its body is never dropped, so the
    caller needs the whole entry.
    """
    if len(prefix) >= size:
        return strip_raw(prefix)
    header_bytes, body_hash, signature = unpack_array_start(prefix, 3, what="entry")
    if not _KINDS[unpack(header_bytes, what="entry header")[5]].is_encrypted:
        return None
    return pack([header_bytes, body_hash, signature, None])


def is_pruned(raw: bytes) -> bool:
    """An entry's digest alone in its place: in a new device's catch-up to an anchor, and in the
    rows of a store that started at one (docs/PROTOCOL.md section 14, "Anchors"); no entry
    encodes to 32 bytes."""
    return len(raw) == _HASH_SIZE


def stored_digest(raw: bytes) -> bytes:
    """The digest of a row of a device's store: its entry's, or the row itself when it is pruned."""
    return raw if is_pruned(raw) else Entry.decode(raw, local=True).digest()


def open_body(entry: Entry, epoch_key: bytes) -> bytes | None:
    """The plaintext of a data entry, or None when it does not open (the author's fault)."""
    return crypto.aead_open(epoch_key, entry.header.nonce, entry.body, entry.header_bytes)
