"""One person, several devices: device certificates, revocations, pairing strings, recovery phrases.

A person is an Ed25519 key that never signs an entry: it only vouches for devices. Each device
has its own signing and box keys, its own author sequence and its own store, so two devices of
one person typing at once are two authors, never one author equivocating. The certificate is
not bound to a space: one signature lets the device into every space the person belongs to,
and each space's log records which devices it admitted (``add_device``) and removed.

A device whose signing key *is* the person key needs no certificate ("self-certified"): every
identity made before devices existed is one, so existing spaces keep working unchanged.

Pure: bytes in, a verified certificate (or a specific error) out.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from typing import Any

import nacl.signing

from ..errors import ArgumentTypeError, DeviceCertificateError, MalformedIdError, ProtocolError
from . import crypto
from .encoding import (
    as_bytes,
    as_int,
    as_list,
    as_str,
    from_checked_text,
    from_text,
    pack,
    to_checked_text,
    to_text,
    unpack,
)
from .identity import PublicIdentity, member_id

CERT_VERSION = 1
MAX_DEVICE_NAME = 64  # characters of a device's display name ("laptop", "phone")
_MAX_CERT_SIZE = 512
PAIRING_PREFIX = "esdev1"
CERT_PREFIX = "escert1"  # a certificate as text: how a paired device learns it, how an admin adds a person
_RECOVERY_CHECK = 3  # 32-byte seed + 3 check bytes = 35 bytes = 56 base32 characters, no padding
_RECOVERY_GROUP = 4


@dataclass(frozen=True)
class DeviceCertificate:
    """A person's signed statement that a device (signing key + box key) is theirs.

    ``raw`` is the exact signed bytes (``msgpack [1, person, device, device_box, issued_ms,
    name]``); they travel as they were signed and are never re-encoded to verify.
    """

    raw: bytes
    signature: bytes
    person: bytes
    device: bytes
    device_box: bytes
    issued_ms: int
    name: str

    @property
    def public(self) -> PublicIdentity:
        """The device's public keys, as others seal epoch keys to it."""
        return PublicIdentity(self.device, self.device_box)

    def encode(self) -> list[bytes]:
        """The wire form ``[cert_bytes, sig]`` carried in entry bodies."""
        return [self.raw, self.signature]

    def to_bytes(self) -> bytes:
        return pack(self.encode())

    def __str__(self) -> str:
        """``escert1.`` + base64url of the wire form: signed, so it needs no checksum of its own."""
        return to_text(CERT_PREFIX, self.to_bytes())

    @classmethod
    def parse(cls, text: str) -> DeviceCertificate:
        """Parse ``str()``'s form; ``MalformedIdError`` if it is not one, ``DeviceCertificateError`` if forged."""
        data = from_text(text, CERT_PREFIX, "a device certificate")
        return cls.from_bytes(data)

    @classmethod
    def issue(cls, person: nacl.signing.SigningKey, device: PublicIdentity, name: str = "",
              issued_ms: int = 0) -> DeviceCertificate:
        """Sign a certificate for ``device`` with the person key (kept on the person's root device)."""
        _check_name(name)
        raw = pack([CERT_VERSION, bytes(person.verify_key), device.sign_key, device.box_key, issued_ms, name])
        return cls.verify(raw, crypto.sign(person, crypto.CTX_DEVICE_CERT, raw))

    @classmethod
    def decode(cls, value: Any, what: str = "device certificate") -> DeviceCertificate:
        """Parse the wire form and check the person's signature; ``DeviceCertificateError`` otherwise."""
        try:
            raw, signature = as_list(value, what, 2)
            raw = as_bytes(raw, f"{what} bytes", max_size=_MAX_CERT_SIZE)
            signature = as_bytes(signature, f"{what} signature", crypto.SIGNATURE_SIZE)
        except ProtocolError as exc:
            raise DeviceCertificateError(f"malformed {what}: {exc}") from exc
        return cls.verify(raw, signature, what)

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceCertificate:
        try:
            value = unpack(data, max_size=2 * _MAX_CERT_SIZE, what="device certificate")
        except ProtocolError as exc:
            raise DeviceCertificateError(f"malformed device certificate: {exc}") from exc
        return cls.decode(value)

    @classmethod
    def verify(cls, raw: bytes, signature: bytes, what: str = "device certificate") -> DeviceCertificate:
        try:
            items = as_list(unpack(raw, max_size=_MAX_CERT_SIZE, what=what), what, 6)
            version = as_int(items[0], f"{what} version")
            if version != CERT_VERSION:
                raise ProtocolError(f"{what}: version {version}, expected {CERT_VERSION}")
            person = as_bytes(items[1], f"{what} person key", crypto.PUBLIC_KEY_SIZE)
            device = as_bytes(items[2], f"{what} device key", crypto.PUBLIC_KEY_SIZE)
            box = as_bytes(items[3], f"{what} device box key", crypto.PUBLIC_KEY_SIZE)
            issued = as_int(items[4], f"{what} issue time")
            name = as_str(items[5], f"{what} device name", MAX_DEVICE_NAME)
        except ProtocolError as exc:
            raise DeviceCertificateError(f"malformed {what}: {exc}") from exc
        if person == device:
            raise DeviceCertificateError(f"{what}: certifies the person key itself (a self-certified device "
                                         "needs no certificate)")
        if not crypto.verify(person, crypto.CTX_DEVICE_CERT, raw, signature):
            raise DeviceCertificateError(f"{what} for device {member_id(device)[:12]}…: the signature does not "
                                         f"verify under person {member_id(person)[:12]}…")
        return cls(raw, signature, person, device, box, issued, name)


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise ArgumentTypeError(f"a device name is a str, not {type(name).__name__}")
    if len(name) > MAX_DEVICE_NAME:
        raise MalformedIdError(f"a device name has at most {MAX_DEVICE_NAME} characters, not {len(name)}")


def revocation(person: nacl.signing.SigningKey, space: bytes, device: bytes) -> bytes:
    """The person's signature that ``device`` leaves ``space``: lets a sibling device remove it."""
    return crypto.sign(person, crypto.CTX_DEVICE_REVOKE, space + device)


def verify_revocation(person: bytes, space: bytes, device: bytes, signature: bytes) -> bool:
    return crypto.verify(person, crypto.CTX_DEVICE_REVOKE, space + device, signature)


@dataclass(frozen=True)
class Device:
    """A device of a member as one space's log knows it (``cert`` is None when self-certified)."""

    key: bytes
    box_key: bytes
    cert: DeviceCertificate | None
    added_seq: int

    @property
    def id(self) -> str:
        return member_id(self.key)

    @property
    def name(self) -> str:
        return "" if self.cert is None else self.cert.name

    def encode(self) -> list[Any]:
        return [self.key, self.box_key, None if self.cert is None else self.cert.encode(), self.added_seq]

    @classmethod
    def decode(cls, value: Any) -> Device:
        key, box, cert, added = as_list(value, "device", 4)
        return cls(as_bytes(key, "device key", 32), as_bytes(box, "device box key", 32),
                   None if cert is None else DeviceCertificate.decode(cert), as_int(added, "device added seq"))


def device_in_use_message(device: bytes, where: str) -> str:
    """Why one device key may not be used on two machines, and what to do instead (relay and SDK say it alike)."""
    return (f"device {member_id(device)[:12]}… is already connected to {where} from elsewhere: one device key "
            "must not be used on two machines (a copied identity file). Give this machine its own device: "
            "`encspaces device pair` here, then `encspaces device add <pairing string>` on a device that holds "
            "the person key")


# --- pairing: the new device's public keys, copied to the person's root device -------------------


@dataclass(frozen=True)
class PairingRequest:
    """What a new device shows so that the person's root device can certify it."""

    device: PublicIdentity
    name: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)

    def __str__(self) -> str:
        body = self.device.sign_key + self.device.box_key + self.name.encode("utf-8")
        return to_checked_text(PAIRING_PREFIX, crypto.CTX_DEVICE_PAIRING, body)

    @classmethod
    def parse(cls, text: str) -> PairingRequest:
        """Parse an ``esdev1.…`` string; ``MalformedIdError`` (a ValueError) if mangled or cut short."""
        body = from_checked_text(text, PAIRING_PREFIX, crypto.CTX_DEVICE_PAIRING, "pairing string")
        if len(body) < 64:  # two keys at least
            raise MalformedIdError("pairing string checksum does not match: was it copied in full?")
        try:
            name = body[64:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedIdError("pairing string holds a device name that is not UTF-8") from exc
        return cls(PublicIdentity(body[:32], body[32:64]), name)


# --- the person secret, written down ---------------------------------------------------------------


def recovery_phrase(person_seed: bytes) -> str:
    """The person secret as 14 groups of 4 base32 characters, the last 3 bytes a checksum.

    Base32 (A-Z, 2-7) because it is read aloud and typed by hand: no case, no look-alike 0/O, 1/I.
    """
    if len(person_seed) != 32:
        raise MalformedIdError("a person secret is 32 bytes")
    check = crypto.hash_parts(crypto.CTX_RECOVERY_CHECK, person_seed)[:_RECOVERY_CHECK]
    text = base64.b32encode(person_seed + check).decode("ascii")
    return "-".join(text[i : i + _RECOVERY_GROUP] for i in range(0, len(text), _RECOVERY_GROUP))


def parse_recovery_phrase(text: str) -> bytes:
    """The person secret a recovery phrase holds; ``MalformedIdError`` when a character is wrong."""
    if not isinstance(text, str):
        raise ArgumentTypeError(f"a recovery phrase is a str, not {type(text).__name__}")
    letters = "".join(c for c in text.upper() if c not in " -\t\n")
    try:
        raw = base64.b32decode(letters)
    except (binascii.Error, ValueError) as exc:
        raise MalformedIdError(f"not a recovery phrase: {exc}") from exc
    if len(raw) != 32 + _RECOVERY_CHECK:
        raise MalformedIdError(f"a recovery phrase holds {32 + _RECOVERY_CHECK} bytes, this one {len(raw)}")
    seed, check = raw[:32], raw[32:]
    if crypto.hash_parts(crypto.CTX_RECOVERY_CHECK, seed)[:_RECOVERY_CHECK] != check:
        raise MalformedIdError("recovery phrase checksum does not match: a character is wrong or missing")
    return seed


class Person:
    """The person key: certifies this person's devices and signs their revocations; never an entry."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise MalformedIdError("a person secret is 32 bytes")
        self.seed = seed
        self.signing_key = nacl.signing.SigningKey(seed)
        self.key = bytes(self.signing_key.verify_key)

    @classmethod
    def generate(cls) -> Person:
        return cls(os.urandom(32))

    @classmethod
    def from_recovery_phrase(cls, text: str) -> Person:
        return cls(parse_recovery_phrase(text))

    @property
    def id(self) -> str:
        return member_id(self.key)

    def certify(self, device: PairingRequest | PublicIdentity, name: str | None = None,
                issued_ms: int = 0) -> DeviceCertificate:
        if isinstance(device, PairingRequest):
            return DeviceCertificate.issue(self.signing_key, device.device, device.name if name is None else name,
                                           issued_ms)
        return DeviceCertificate.issue(self.signing_key, device, name or "", issued_ms)

    def revoke(self, space: bytes, device: bytes) -> bytes:
        return revocation(self.signing_key, space, device)

    def recovery_phrase(self) -> str:
        return recovery_phrase(self.seed)

    def __repr__(self) -> str:
        return f"Person({self.id})"


__all__ = [
    "CERT_VERSION",
    "Device",
    "DeviceCertificate",
    "PairingRequest",
    "Person",
    "device_in_use_message",
    "parse_recovery_phrase",
    "recovery_phrase",
    "revocation",
    "verify_revocation",
]
