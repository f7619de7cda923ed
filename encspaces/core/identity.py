"""A device's keys: Ed25519 to sign, X25519 to receive sealed epoch keys.

The public half travels by copy-paste (chat, e-mail, phone), so its string form carries a
checksum: a mistyped character is an error, not a different person.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nacl.public
import nacl.signing

from ..errors import (
    ArgumentTypeError,
    DeviceCertificateError,
    EncspacesError,
    IdentityError,
    MalformedIdError,
    ProtocolError,
)
from . import crypto
from .encoding import as_bytes, as_int, as_map, field, pack, unpack
from .private_file import fsync_dir, replace_private, write_private_temp

if TYPE_CHECKING:
    from .devices import DeviceCertificate, PairingRequest, Person

PUBLIC_PREFIX = "esid1"
_CHECK_SIZE = 4
_FILE_VERSION = 1
_FILE_VERSION_DEVICES = 2  # with a person secret and/or a device certificate (encspaces.core.devices)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def member_id(sign_key: bytes) -> str:
    """The printable id of a member: their Ed25519 public key, base64url."""
    return _b64(sign_key)


def parse_member_id(text: str) -> bytes:
    """The signing key a member id names; ``MalformedIdError`` (a ValueError) if it is not one."""
    if not isinstance(text, str):
        raise ArgumentTypeError(f"a member id is a str, not {type(text).__name__}")
    try:
        raw = _unb64(text.strip())
    except (ValueError, UnicodeEncodeError) as exc:
        raise MalformedIdError(f"not a member id: {text!r}") from exc
    if len(raw) != crypto.PUBLIC_KEY_SIZE:
        raise MalformedIdError(f"not a member id: {text!r} (expected 32 bytes, found {len(raw)})")
    return raw


def decode_space_id(text: str) -> bytes:
    """The 32 bytes a space id names (written as a member id is: the genesis key, base64url);
    ``MalformedIdError`` if it is not one. Here, not in ``space``, so that what only reads a
    space id (the CLI's list of spaces) loads no network code."""
    try:
        return parse_member_id(text)
    except EncspacesError as exc:
        raise MalformedIdError(f"not a space id: {text!r}") from exc


@dataclass(frozen=True)
class PublicIdentity:
    """What others need to know about a device: its signing and box public keys."""

    sign_key: bytes
    box_key: bytes

    def __post_init__(self) -> None:
        if len(self.sign_key) != crypto.PUBLIC_KEY_SIZE or len(self.box_key) != crypto.PUBLIC_KEY_SIZE:
            raise MalformedIdError("a public identity holds two 32-byte keys")

    @property
    def member_id(self) -> str:
        return member_id(self.sign_key)

    def __str__(self) -> str:
        body = self.sign_key + self.box_key
        check = crypto.hash_parts(crypto.CTX_IDENTITY_CHECK, body)[:_CHECK_SIZE]
        return f"{PUBLIC_PREFIX}.{_b64(body + check)}"

    @classmethod
    def parse(cls, text: str) -> PublicIdentity:
        """Parse the ``esid1.…`` string ``str()`` gives; ``MalformedIdError`` (a ValueError) names what is wrong.

        The string carries a checksum, so a mistyped or truncated copy is refused rather
        than read as somebody else.
        """
        if not isinstance(text, str):
            raise ArgumentTypeError(f"a public identity is a str, not {type(text).__name__}")
        text = text.strip()
        prefix, _, encoded = text.partition(".")
        if prefix != PUBLIC_PREFIX or not encoded:
            raise MalformedIdError(
                f"not a public identity: expected '{PUBLIC_PREFIX}.' followed by base64url, "
                f"found {text[:20]!r}"
            )
        try:
            raw = _unb64(encoded)
        except (ValueError, UnicodeEncodeError) as exc:
            raise MalformedIdError(f"public identity is not valid base64url: {exc}") from exc
        if len(raw) != 2 * crypto.PUBLIC_KEY_SIZE + _CHECK_SIZE:
            raise MalformedIdError(
                f"public identity has {len(raw)} bytes, expected {2 * crypto.PUBLIC_KEY_SIZE + _CHECK_SIZE}"
            )
        if _b64(raw) != encoded:  # base64 decoding ignores stray characters and the last char's spare bits
            raise MalformedIdError("public identity is not in canonical base64url: was a character changed?")
        body, check = raw[:-_CHECK_SIZE], raw[-_CHECK_SIZE:]
        if crypto.hash_parts(crypto.CTX_IDENTITY_CHECK, body)[:_CHECK_SIZE] != check:
            raise MalformedIdError("public identity checksum does not match: was it copied in full?")
        return cls(sign_key=body[:32], box_key=body[32:])


class Identity:
    """A device's private keys, and the display name its owner chose (``name``, optional).

    A device belongs to a person (encspaces.core.devices): either its signing key is the person
    key ("self-certified", every identity made before devices existed), or it holds a
    ``certificate`` signed by the person key. The first device of a person also keeps the person
    secret (``person``), which certifies further devices.

    Keep the file it is saved to private: ``save`` creates it 0600, and ``load`` refuses a file
    that other users may read or write (as ssh refuses such a private key).
    """

    def __init__(self, signing_seed: bytes, box_secret: bytes, name: str | None = None, *,
                 person_seed: bytes | None = None, certificate: DeviceCertificate | None = None) -> None:
        if len(signing_seed) != 32 or len(box_secret) != 32:
            raise MalformedIdError("an identity holds two 32-byte secrets")
        if name is not None and not isinstance(name, str):
            raise ArgumentTypeError(f"a display name is a str, not {type(name).__name__}")
        self.name = name  # shown to others (the editor's presence); not part of the keys
        self.signing_key = nacl.signing.SigningKey(signing_seed)
        self.box_private = nacl.public.PrivateKey(box_secret)
        self.public = PublicIdentity(
            sign_key=bytes(self.signing_key.verify_key),
            box_key=bytes(self.box_private.public_key),
        )
        self.certificate = certificate
        if certificate is not None and (certificate.device != self.public.sign_key
                                        or certificate.device_box != self.public.box_key):
            raise IdentityError(f"the device certificate is for device {member_id(certificate.device)}, "
                                f"not this device {self.member_id}")
        self._person_seed = person_seed
        if person_seed is not None:
            from .devices import Person

            if Person(person_seed).key != self.person_key:
                raise IdentityError("the person secret is not the person this device belongs to")

    @classmethod
    def generate(cls) -> Identity:
        """Fresh random keys for a new device, self-certified; ``save`` them, they cannot be recovered."""
        return cls(os.urandom(32), os.urandom(32))

    @classmethod
    def generate_person(cls, name: str | None = None, device_name: str = "") -> Identity:
        """A new person and their first device, certified, holding the person secret (``encspaces init``)."""
        from .devices import Person

        person = Person.generate()
        device = cls(os.urandom(32), os.urandom(32), name)
        return device.with_certificate(person.certify(device.public, device_name), person_seed=person.seed)

    def with_certificate(self, certificate: DeviceCertificate, person_seed: bytes | None = None) -> Identity:
        """This device, certified by its person (what a paired device installs)."""
        return Identity(bytes(self.signing_key), bytes(self.box_private), self.name,
                        person_seed=person_seed if person_seed is not None else self._person_seed,
                        certificate=certificate)

    def with_person(self, person_seed: bytes) -> Identity:
        """This device holding its person's secret too (``encspaces identity import-person``)."""
        return Identity(bytes(self.signing_key), bytes(self.box_private), self.name, person_seed=person_seed,
                        certificate=self.certificate)

    @property
    def person_key(self) -> bytes:
        """The person this device belongs to: its certificate's, or its own key when self-certified."""
        return self.public.sign_key if self.certificate is None else self.certificate.person

    @property
    def person_id(self) -> str:
        """The member id others see for this device's person (``space.members`` is keyed by it)."""
        return member_id(self.person_key)

    @property
    def person(self) -> Person | None:
        """The person key, when this device holds it: certifies new devices. A self-certified
        device's signing key is its person key, so it always holds it."""
        from .devices import Person

        if self._person_seed is not None:
            return Person(self._person_seed)
        if self.certificate is None:
            return Person(bytes(self.signing_key))
        return None

    @property
    def public_string(self) -> str:
        """What to give an admin who adds this device's person: the certificate (``escert1.…``) of a
        certified device, else the public identity (``esid1.…``)."""
        return str(self.public) if self.certificate is None else str(self.certificate)

    def pairing_request(self, device_name: str = "") -> PairingRequest:
        """What this (new) device shows so that a device holding its person key certifies it."""
        from .devices import PairingRequest

        return PairingRequest(self.public, device_name)

    @property
    def member_id(self) -> str:
        """This device's member id (public), as ``space.members`` lists it."""
        return self.public.member_id

    def sign(self, context: bytes, message: bytes) -> bytes:
        return crypto.sign(self.signing_key, context, message)

    def open_sealed(self, sealed: bytes) -> bytes | None:
        return crypto.open_sealed(self.box_private, sealed)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the secrets (and ``name``) to ``path``, readable by this user only, atomically.

        An existing file at ``path`` is another identity, lost if replaced: ``IdentityError``
        unless ``overwrite=True`` (checked atomically: two processes cannot both create it).
        """
        record: dict[str, object] = {"v": _FILE_VERSION, "sign": bytes(self.signing_key),
                                     "box": bytes(self.box_private)}
        if self.name is not None:
            record["name"] = self.name
        if self._person_seed is not None or self.certificate is not None:  # else the v1 file, unchanged
            record["v"] = _FILE_VERSION_DEVICES
            if self._person_seed is not None:
                record["person"] = self._person_seed
            if self.certificate is not None:
                record["cert"] = self.certificate.encode()
        target = Path(path)
        if overwrite:
            replace_private(target, pack(record))
            return
        tmp = write_private_temp(target, pack(record))
        try:
            os.link(tmp, target)  # fails if the file exists, unlike a rename
        except FileExistsError:
            raise IdentityError(f"{target} already holds an identity: pass overwrite=True to replace it "
                                "(the identity it holds is lost)") from None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(target.parent)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read an identity ``save`` wrote; ``IdentityError`` if it is missing, unreadable or corrupt."""
        try:
            with open(path, "rb") as file:
                mode = os.fstat(file.fileno()).st_mode
                data = file.read()
        except OSError as exc:
            raise IdentityError(f"cannot read identity file {path}: {exc.strerror}") from exc
        if os.name == "posix" and mode & 0o077:
            raise IdentityError(f"identity file {path} is open to other users (mode {stat.S_IMODE(mode):04o}): "
                                f"its keys may be known to others; if not, make it private with `chmod 600 {path}`")
        try:
            record = as_map(unpack(data, what="identity file"), "identity file")
            version = as_int(field(record, "v", "identity file"), "identity file version")
            if version not in (_FILE_VERSION, _FILE_VERSION_DEVICES):
                raise IdentityError(f"identity file {path} has version {version}, expected {_FILE_VERSION} "
                                    f"or {_FILE_VERSION_DEVICES}")
            seed = as_bytes(field(record, "sign", "identity file"), "signing seed", 32)
            box = as_bytes(field(record, "box", "identity file"), "box secret", 32)
            name = record.get("name")
            if name is not None and not isinstance(name, str):
                raise ProtocolError("identity file name: expected a string")
            person = record.get("person")
            person = None if person is None else as_bytes(person, "person secret", 32)
        except ProtocolError as exc:
            raise IdentityError(f"identity file {path} is corrupt: {exc}") from exc
        cert = None
        if record.get("cert") is not None:
            from .devices import DeviceCertificate

            try:
                cert = DeviceCertificate.decode(record["cert"])
            except DeviceCertificateError as exc:
                raise IdentityError(f"identity file {path}: {exc}") from exc
        return cls(seed, box, name, person_seed=person, certificate=cert)

    def __repr__(self) -> str:
        return f"Identity({self.member_id})"
