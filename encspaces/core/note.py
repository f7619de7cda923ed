"""C2SP signed notes, tlog checkpoints and tlog cosignatures (pure).

Formats as implemented (see docs/PROTOCOL.md, "Witnessed log (foundations)"):

- **signed-note**: the text (UTF-8, newline-terminated, no control character but newline), a
  blank line, then one or more lines ``— <key name> base64(key ID || signature)``. Key IDs are
  ``SHA-256(name || 0x0A || type || public key)[:4]``; type ``0x01`` is Ed25519 over the text.
  Verification ignores signatures whose (name, key ID) is unknown, fails on any known key's
  signature that does not verify, and fails when no known key signed.
- **tlog-checkpoint**: text ``origin\\nsize\\nbase64(root)\\n`` and optional non-empty extension
  lines. The origin of an encspaces space is ``encspaces/space/<space id, 64 lowercase hex>``
  (:func:`space_origin`); the relay signs it with its Ed25519 key under the key name = origin.
- **tlog-cosignature/v1** (type ``0x04``): the signature is ``u64 big-endian timestamp || Ed25519
  signature`` over ``"cosignature/v1\\ntime <T>\\n" || checkpoint text``.

Sign exact bytes, send those bytes: :class:`Note` keeps the text it was parsed from, and
verification runs over that text, never a re-encoding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import nacl.bindings
import nacl.exceptions
import nacl.signing

from ..errors import MalformedNoteError, NoteSignatureError

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
ORIGIN_PREFIX = "encspaces/space/"
EM_DASH = "\u2014"
MAX_NOTE_SIZE = 64 * 1024
# The spec asks verifiers to accept at least 16; Ed25519 lines are ~150 bytes each.
MAX_SIGNATURES = 128
MAX_TIMESTAMP = (1 << 63) - 1
ROOT_SIZE = 32
_ED25519_SIG = 64
_COSIGNATURE_PREFIX = b"cosignature/v1\ntime "


def space_origin(space_id: bytes) -> str:
    """The checkpoint origin (and relay key name) of a space: ``encspaces/space/<hex id>``."""
    if len(space_id) != 32:
        raise MalformedNoteError(f"a space id has 32 bytes, found {len(space_id)}")
    return ORIGIN_PREFIX + space_id.hex()


def space_of_origin(origin: str) -> bytes | None:
    """The space id an encspaces origin names, or None for any other origin."""
    if not origin.startswith(ORIGIN_PREFIX):
        return None
    rest = origin[len(ORIGIN_PREFIX) :]
    if len(rest) != 64 or rest != rest.lower():
        return None
    try:
        return bytes.fromhex(rest)
    except ValueError:
        return None


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte key ID ``SHA-256(name || 0x0A || type || public key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _check_key_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise MalformedNoteError(f"key name {name!r}: must be non-empty, without spaces or '+'")


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedNoteError(f"{what}: not standard base64: {text[:40]!r}") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedNoteError(f"{what}: non-canonical base64: {text[:40]!r}")
    return raw


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, signature bytes (after the key ID)."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{EM_DASH} {self.name} {b64(self.key_id + self.signature)}\n"

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """Parse one line without its final newline."""
        if not line.startswith(EM_DASH + " "):
            raise MalformedNoteError(f"signature line does not start with an em dash and a space: {line[:40]!r}")
        parts = line[2:].split(" ")
        if len(parts) != 2:
            raise MalformedNoteError(f"signature line is not '— name signature': {line[:60]!r}")
        name, blob = parts
        _check_key_name(name)
        raw = _b64decode(blob, f"signature of {name}")
        if len(raw) < 5:
            raise MalformedNoteError(f"signature of {name}: {len(raw)} bytes, shorter than a key ID and a signature")
        return cls(name, raw[:4], raw[4:])


@dataclass(frozen=True)
class Note:
    """A signed note: ``text`` (with its final newline) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        """This note with ``extra`` signature lines appended (those already present skipped)."""
        have = set(self.signatures)
        added = [s for s in extra if s not in have]
        return Note(self.text, self.signatures + tuple(added))


def parse_note(data: bytes | str) -> Note:
    """Parse a signed note; raise MalformedNoteError for anything the spec does not allow."""
    if isinstance(data, bytes):
        if len(data) > MAX_NOTE_SIZE:
            raise MalformedNoteError(f"note of {len(data)} bytes, over the {MAX_NOTE_SIZE}-byte limit")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError(f"note is not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
        if len(text.encode()) > MAX_NOTE_SIZE:
            raise MalformedNoteError(f"note over the {MAX_NOTE_SIZE}-byte limit")
    for i, c in enumerate(text):
        if c < " " and c != "\n":
            raise MalformedNoteError(f"note has control character {ord(c):#04x} at offset {i}")
    if not text.endswith("\n"):
        raise MalformedNoteError("note does not end with a newline")
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no blank line before its signatures")
    body, sig_block = text[: split + 1], text[split + 2 :]
    lines = sig_block.split("\n")[:-1]
    if not lines:
        raise MalformedNoteError("note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has {len(lines)} signatures, over the limit of {MAX_SIGNATURES}")
    return Note(body, tuple(NoteSignature.parse_line(line) for line in lines))


class Verifier(Protocol):
    """A key a note may be signed by: its name, key ID, and a check of one signature."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, signature: bytes) -> bool: ...


def _ed25519_ok(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != _ED25519_SIG:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class _Ed25519Key:
    """A named Ed25519 public key of one signature type: its key ID and vkey follow from both."""

    name: str
    public_key: bytes
    sig_type: ClassVar[int]

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if len(self.public_key) != 32:
            raise MalformedNoteError(f"key {self.name}: an Ed25519 public key has 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    def vkey(self) -> str:
        return vkey(self.name, self.sig_type, self.public_key)


@dataclass(frozen=True)
class Ed25519Verifier(_Ed25519Key):
    """Signature type 0x01: Ed25519 over the note text."""

    sig_type: ClassVar[int] = SIG_ED25519

    def verify(self, text: bytes, signature: bytes) -> bool:
        return _ed25519_ok(self.public_key, text, signature)


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """``cosignature/v1\\ntime <T>\\n`` followed by the checkpoint text."""
    return _COSIGNATURE_PREFIX + str(timestamp).encode() + b"\n" + text


@dataclass(frozen=True)
class CosignatureVerifier(_Ed25519Key):
    """Signature type 0x04: timestamped Ed25519 cosignature (tlog-cosignature v1)."""

    sig_type: ClassVar[int] = SIG_COSIGNATURE_V1

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != 8 + _ED25519_SIG:
            return False
        (timestamp,) = struct.unpack(">Q", signature[:8])
        if timestamp > MAX_TIMESTAMP:
            return False
        return _ed25519_ok(self.public_key, cosignature_message(text, timestamp), signature[8:])


def cosignature_time(signature: NoteSignature) -> int:
    """The timestamp a (verified) cosignature carries."""
    if len(signature.signature) != 8 + _ED25519_SIG:
        raise MalformedNoteError(f"cosignature of {signature.name}: {len(signature.signature)} bytes, expected 72")
    return int(struct.unpack(">Q", signature.signature[:8])[0])


@dataclass(frozen=True)
class Ed25519Signer:
    """Signs note texts with type 0x01 under ``name``."""

    name: str
    key: nacl.signing.SigningKey

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self.name, bytes(self.key.verify_key))

    def sign(self, text: bytes) -> NoteSignature:
        sig = bytes(self.key.sign(text).signature)
        return NoteSignature(self.name, self.verifier().key_id, sig)


@dataclass(frozen=True)
class CosignatureSigner:
    """Cosigns checkpoint texts with type 0x04 under ``name``."""

    name: str
    key: nacl.signing.SigningKey

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, bytes(self.key.verify_key))

    def sign(self, text: bytes, timestamp: int) -> NoteSignature:
        if not 0 <= timestamp <= MAX_TIMESTAMP:
            raise MalformedNoteError(f"cosignature timestamp {timestamp} is out of range")
        sig = bytes(self.key.sign(cosignature_message(text, timestamp)).signature)
        return NoteSignature(self.name, self.verifier().key_id, struct.pack(">Q", timestamp) + sig)


def vkey(name: str, sig_type: int, public_key: bytes) -> str:
    """A verifier key string ``name+hex(key ID)+base64(type || public key)``."""
    _check_key_name(name)
    return f"{name}+{key_id(name, sig_type, public_key).hex()}+{b64(bytes([sig_type]) + public_key)}"


def parse_vkey(text: str) -> Ed25519Verifier | CosignatureVerifier:
    """The verifier a vkey string names (types 0x01 and 0x04); the key ID must match."""
    parts = text.split("+", 2)  # base64 may itself contain '+', the name may not
    if len(parts) != 3:
        raise MalformedNoteError(f"vkey is not name+id+key: {text[:60]!r}")
    name, hex_id, blob = parts
    raw = _b64decode(blob, f"vkey {name}")
    if len(raw) != 33:
        raise MalformedNoteError(f"vkey {name}: {len(raw)} bytes of key material, expected 33")
    verifier: Ed25519Verifier | CosignatureVerifier
    if raw[0] == SIG_ED25519:
        verifier = Ed25519Verifier(name, raw[1:])
    elif raw[0] == SIG_COSIGNATURE_V1:
        verifier = CosignatureVerifier(name, raw[1:])
    else:
        raise MalformedNoteError(f"vkey {name}: unsupported signature type {raw[0]:#04x}")
    if hex_id != verifier.key_id.hex():
        raise MalformedNoteError(f"vkey {name}: key ID {hex_id}, the key's is {verifier.key_id.hex()}")
    return verifier


def verify_note(note: Note, verifiers: Sequence[Verifier]) -> list[tuple[Verifier, NoteSignature]]:
    """The (verifier, signature) pairs of ``note`` that verify, in line order.

    Signatures whose (name, key ID) no verifier has are ignored. Raises NoteSignatureError when
    a known key's signature fails, or when no known key signed.
    """
    known = {(v.name, v.key_id): v for v in verifiers}
    text = note.text.encode()
    good: list[tuple[Verifier, NoteSignature]] = []
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text, sig.signature):
            raise NoteSignatureError(f"note signature by {sig.name} (key ID {sig.key_id.hex()}) does not verify")
        good.append((verifier, sig))
    if not good:
        names = ", ".join(sorted({v.name for v in verifiers})) or "none"
        raise NoteSignatureError(f"note is not signed by any known key (known: {names})")
    return good


# --- checkpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedNoteError("checkpoint origin must be one non-empty line")
        if not 0 <= self.size <= (1 << 64) - 1:
            raise MalformedNoteError(f"checkpoint size {self.size} is out of range")
        if len(self.root) != ROOT_SIZE:
            raise MalformedNoteError(f"checkpoint root has {len(self.root)} bytes, expected {ROOT_SIZE}")
        for line in self.extensions:
            if not line or "\n" in line:
                raise MalformedNoteError("checkpoint extension lines must be non-empty single lines")

    def text(self) -> str:
        lines = [self.origin, str(self.size), b64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text (not its signatures)."""
        if not text.endswith("\n"):
            raise MalformedNoteError("checkpoint text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedNoteError(f"checkpoint text has {len(lines)} lines, expected at least 3")
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise MalformedNoteError("checkpoint origin line is empty")
        if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
            raise MalformedNoteError(f"checkpoint size {size_text[:30]!r} is not a decimal without leading zeroes")
        root = _b64decode(root_text, "checkpoint root hash")
        if any(not line for line in extensions):
            raise MalformedNoteError("checkpoint has an empty extension line")
        return cls(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with the note it came in (exact text and every signature line)."""

    checkpoint: Checkpoint
    note: Note

    @classmethod
    def parse(cls, data: bytes | str) -> SignedCheckpoint:
        note = parse_note(data)
        return cls(Checkpoint.parse(note.text), note)

    @classmethod
    def sign(cls, checkpoint: Checkpoint, signer: Ed25519Signer) -> SignedCheckpoint:
        text = checkpoint.text()
        return cls(checkpoint, Note(text, (signer.sign(text.encode()),)))

    def encode(self) -> bytes:
        return self.note.encode()

    def verify(self, verifiers: Sequence[Verifier]) -> list[tuple[Verifier, NoteSignature]]:
        return verify_note(self.note, verifiers)

    def cosign(self, signer: CosignatureSigner, timestamp: int) -> NoteSignature:
        return signer.sign(self.note.text.encode(), timestamp)

    def with_signatures(self, extra: Iterable[NoteSignature]) -> SignedCheckpoint:
        return SignedCheckpoint(self.checkpoint, self.note.with_signatures(extra))


def parse_signature_lines(data: bytes) -> list[NoteSignature]:
    """Parse an add-checkpoint response body: one or more signature lines, each newline-ended."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNoteError("signature lines are not valid UTF-8") from None
    if not text.endswith("\n"):
        raise MalformedNoteError("signature lines do not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"{len(lines)} signature lines, over the limit of {MAX_SIGNATURES}")
    return [NoteSignature.parse_line(line) for line in lines]
