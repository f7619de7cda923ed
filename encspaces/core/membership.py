"""Who may do what in a space, and the public bodies of the entries that change it.

The relay must read membership to admit connections and refuse writes, so membership
entries are signed but not encrypted; the epoch keys inside them are sealed to each
member's X25519 key and stay opaque to the relay.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ArgumentTypeError, InvalidArgumentError, MalformedEntryError, ProtocolError
from . import crypto
from .devices import Device, DeviceCertificate
from .encoding import as_bytes, as_int, as_list, as_map, as_str, field, pack, unpack
from .entry import MAX_ENTRY_SIZE
from .identity import PublicIdentity, member_id
from .witness_policy import WitnessPolicy

BODY_VERSION = 1
T = TypeVar("T")


class Role(enum.StrEnum):
    """What a member may do: admins manage membership and keys, writers edit, readers only read.

    Wherever the API takes a role it also takes its string (``"writer"``); an unknown one
    raises ``InvalidArgumentError`` (a ValueError), before anything is sent.
    """

    ADMIN = "admin"
    WRITER = "writer"
    READER = "reader"

    @classmethod
    def _missing_(cls, value: object) -> Role:
        if not isinstance(value, str):
            raise ArgumentTypeError(f"a role is a str or Role, not {type(value).__name__}")
        raise InvalidArgumentError(f"unknown role {value!r}: expected one of {', '.join(r.value for r in cls)}")

    @property
    def can_write(self) -> bool:
        return self in _WRITING_ROLES  # a set: reading ``Role.ADMIN`` costs more than the test

    @property
    def can_manage(self) -> bool:
        return self is Role.ADMIN


_WRITING_ROLES = frozenset({Role.ADMIN, Role.WRITER})


@dataclass(frozen=True)
class Member:
    """A member (a person) as the verified log knows them; ``added_by`` is None for the space's creator.

    ``sign_key`` is the person key; ``devices`` are the person's current devices in this space,
    oldest first (a member made before devices existed has one, self-certified: its key is
    ``sign_key``). ``box_key`` is the first device's box key. Roles belong to the person.
    """

    sign_key: bytes
    box_key: bytes
    role: Role
    added_by: bytes | None  # None for the creator; the person who added them
    added_seq: int
    devices: tuple[Device, ...] = ()

    def __post_init__(self) -> None:
        if not self.devices:  # a self-certified member: the person key is its one device
            object.__setattr__(self, "devices", (Device(self.sign_key, self.box_key, None, self.added_seq),))

    @property
    def id(self) -> str:
        return member_id(self.sign_key)

    def device(self, key: bytes) -> Device | None:
        return next((d for d in self.devices if d.key == key), None)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.sign_key, self.box_key)


@dataclass(frozen=True)
class GenesisBody:
    creator_box: bytes
    relay_key: bytes
    sealed_key: bytes  # epoch 1 key, sealed to the creator
    commit: bytes  # crypto.key_commitment(b"", 1, key): what later holders of epoch 1's key check
    cert: DeviceCertificate | None = None  # the creator's device certificate (None: self-certified)
    # The space's first witness policy; NONE is encoded as the absence of both keys, so a
    # genesis without witnesses has the same bytes (and the same space id) as before them.
    witnesses: WitnessPolicy = WitnessPolicy.NONE
    # Yjs client ids are bound to their writers' keys (encspaces.core.client_ids): every data
    # entry's plaintext starts with its session nonce. Absent (False) in spaces created before.
    client_ids: bool = False

    def encode(self) -> bytes:
        body: dict[str, Any] = {"v": BODY_VERSION, "creator_box": self.creator_box, "relay": self.relay_key,
                                "key": self.sealed_key, "commit": self.commit}
        if self.cert is not None:
            body["cert"] = self.cert.encode()
        if self.witnesses.enabled:
            body.update(self.witnesses.encode())
        if self.client_ids:
            body["client_ids"] = 1
        return pack(body)

    @classmethod
    def decode(cls, data: bytes) -> GenesisBody:
        try:
            m = as_map(unpack(data, max_size=MAX_ENTRY_SIZE, what="genesis body"), "genesis body")
            _check_version(m, "genesis body")
            return cls(
                creator_box=as_bytes(field(m, "creator_box", "genesis"), "genesis creator box key", 32),
                relay_key=as_bytes(field(m, "relay", "genesis"), "genesis relay key", 32),
                sealed_key=as_bytes(field(m, "key", "genesis"), "genesis sealed key", max_size=256),
                commit=as_bytes(field(m, "commit", "genesis"), "genesis key commitment", crypto.HASH_SIZE),
                cert=optional_cert(m, "genesis"),
                witnesses=_genesis_witnesses(m),
                client_ids=_genesis_client_ids(m),
            )
        except ProtocolError as exc:
            raise MalformedEntryError(f"malformed genesis entry: {exc}") from exc


def _genesis_client_ids(m: dict[str, Any]) -> bool:
    if "client_ids" not in m:
        return False
    version = as_int(m["client_ids"], "genesis client_ids")
    if version != 1:
        raise ProtocolError(f"genesis client_ids: version {version}, expected 1")
    return True


def _genesis_witnesses(m: dict[str, Any]) -> WitnessPolicy:
    if "witnesses" not in m and "quorum" not in m:
        return WitnessPolicy.NONE
    policy = WitnessPolicy.decode(m)
    if not policy.enabled:
        # One encoding per genesis: no witnesses is the absence of the keys, never an empty list.
        raise ProtocolError("genesis witnesses: an empty policy is written by leaving the keys out")
    return policy


def _sealed_keys(m: dict[str, Any], kind: str) -> tuple[list[tuple[int, bytes]], bool]:
    """The ``keys`` ([[epoch, sealed], ...]) and ``history`` of an add_member or add_device body."""
    keys = []
    for item in as_list(field(m, "keys", kind), f"{kind} keys"):
        pair = as_list(item, f"{kind} key", 2)
        keys.append((as_int(pair[0], f"{kind} key epoch", minimum=1),
                     as_bytes(pair[1], f"{kind} sealed key", max_size=256)))
    history = m.get("history", True)
    if not isinstance(history, bool):
        raise ProtocolError(f"{kind} history: expected a boolean")
    return keys, history


@dataclass(frozen=True)
class AddMemberBody:
    member: bytes
    box_key: bytes
    role: Role
    sealed_keys: tuple[tuple[int, bytes], ...]  # (epoch, key sealed to the new member)
    history: bool = True  # whether the adder meant to give every retained key, or only the current
    cert: DeviceCertificate | None = None  # the person's first device (None: ``member`` is a self-certified device)

    def encode(self) -> bytes:
        body: dict[str, Any] = {"v": BODY_VERSION, "member": self.member, "box": self.box_key,
                                "role": self.role.value, "keys": [list(k) for k in self.sealed_keys],
                                "history": self.history}
        if self.cert is not None:
            body["cert"] = self.cert.encode()
        return pack(body)

    @property
    def device(self) -> bytes:
        """The signing key of the device the keys are sealed to."""
        return self.member if self.cert is None else self.cert.device

    @classmethod
    def decode(cls, data: bytes) -> AddMemberBody:
        def parse(m: dict[str, Any]) -> AddMemberBody:
            keys, history = _sealed_keys(m, "add_member")
            return cls(
                member=as_bytes(field(m, "member", "add_member"), "add_member member key", 32),
                box_key=as_bytes(field(m, "box", "add_member"), "add_member box key", 32),
                role=parse_role(field(m, "role", "add_member"), "add_member role"),
                sealed_keys=tuple(keys),
                history=history,
                cert=optional_cert(m, "add_member"),
            )

        return decode_body(data, "add_member", parse)


def optional_cert(m: dict[str, Any], what: str) -> DeviceCertificate | None:
    """The optional ``cert`` field: malformed is a MalformedEntryError; a bad signature is checked by the rules."""
    value = m.get("cert")
    if value is None:
        return None
    raw, sig = as_list(value, f"{what} certificate", 2)
    raw = as_bytes(raw, f"{what} certificate bytes", max_size=512)
    sig = as_bytes(sig, f"{what} certificate signature", crypto.SIGNATURE_SIZE)
    return DeviceCertificate.verify(raw, sig, f"{what} device certificate")


@dataclass(frozen=True)
class AddDeviceBody:
    """A person's new device: its certificate, and the epoch keys sealed to its box key by the author."""

    cert: DeviceCertificate
    sealed_keys: tuple[tuple[int, bytes], ...]
    history: bool = True

    def encode(self) -> bytes:
        return pack({"v": BODY_VERSION, "cert": self.cert.encode(), "keys": [list(k) for k in self.sealed_keys],
                     "history": self.history})

    @classmethod
    def decode(cls, data: bytes) -> AddDeviceBody:
        """Malformed bodies are a MalformedEntryError; a certificate that does not verify a DeviceCertificateError."""
        def parse(m: dict[str, Any]) -> AddDeviceBody:
            keys, history = _sealed_keys(m, "add_device")
            cert = optional_cert(m, "add_device")
            if cert is None:
                raise ProtocolError("add_device: missing field 'cert'")
            return cls(cert, tuple(keys), history)

        return decode_body(data, "add_device", parse)


def add_device_body(cert: DeviceCertificate, epoch_keys: dict[int, bytes], history: bool = True) -> bytes:
    sealed = tuple((epoch, crypto.seal_to(cert.device_box, key)) for epoch, key in sorted(epoch_keys.items()))
    return AddDeviceBody(cert, sealed, history).encode()


def _check_version(m: dict[str, object], what: str) -> None:
    version = as_int(field(m, "v", what), f"{what} version")
    if version != BODY_VERSION:
        raise ProtocolError(f"{what}: version {version}, expected {BODY_VERSION}")


def genesis_body(
    creator: PublicIdentity, relay_key: bytes, epoch_key: bytes, witnesses: WitnessPolicy = WitnessPolicy.NONE,
    cert: DeviceCertificate | None = None, client_ids: bool = True,
) -> bytes:
    """A new space's genesis body; ``client_ids=False`` only to make a space as older versions did (tests)."""
    return GenesisBody(creator.box_key, relay_key, crypto.seal_to(creator.box_key, epoch_key),
                       crypto.key_commitment(b"", 1, epoch_key), cert, witnesses, client_ids).encode()


def add_member_body(new: PublicIdentity, role: Role, epoch_keys: dict[int, bytes], history: bool = True,
                    cert: DeviceCertificate | None = None) -> bytes:
    """``new`` is a self-certified device, or (with ``cert``) the person's certified first device."""
    sealed = tuple((epoch, crypto.seal_to(new.box_key, key)) for epoch, key in sorted(epoch_keys.items()))
    member = new.sign_key if cert is None else cert.person
    return AddMemberBody(member, new.box_key, role, sealed, history, cert).encode()


# --- bodies of the membership and key entries ------------------------------------------------


def decode_body(data: bytes, what: str, parse: Callable[[dict[str, Any]], T]) -> T:
    """Decode a control entry's public body; any problem is a MalformedEntryError."""
    try:
        m = as_map(unpack(data, max_size=MAX_ENTRY_SIZE, what=f"{what} body"), f"{what} body")
        _check_version(m, f"{what} body")
        return parse(m)
    except ProtocolError as exc:
        raise MalformedEntryError(f"malformed {what} entry: {exc}") from exc


def parse_role(value: object, what: str) -> Role:
    name = as_str(value, what, 16)
    try:
        return Role(name)
    except ValueError:
        raise ProtocolError(f"{what}: unknown role {name!r}") from None


def _grants(value: object, what: str) -> tuple[tuple[bytes, bytes], ...]:
    """(recipient sign key or invite key, epoch key sealed to its box key), each recipient once."""
    grants = []
    for item in as_list(value, what):
        pair = as_list(item, f"{what} item", 2)
        recipient = as_bytes(pair[0], f"{what} recipient", 32)
        grants.append((recipient, as_bytes(pair[1], f"{what} sealed key", max_size=256)))
    if len({recipient for recipient, _ in grants}) != len(grants):
        raise ProtocolError(f"{what}: a recipient appears twice")
    return tuple(grants)


@dataclass(frozen=True)
class RekeyBody:
    """A new epoch (rotate, or remove_member with ``member`` set) and its key for each recipient."""

    epoch: int
    grants: tuple[tuple[bytes, bytes], ...]
    commit: bytes  # crypto.key_commitment(space, epoch, key): every recipient checks its key against it
    member: bytes | None = None  # the member removed, for remove_member
    device: bytes | None = None  # the device removed, for remove_device
    revocation: bytes | None = None  # remove_device: the person's signature (devices.revocation), or None (admin)

    def encode(self) -> bytes:
        body: dict[str, Any] = {"v": BODY_VERSION, "epoch": self.epoch, "keys": [list(g) for g in self.grants],
                                "commit": self.commit}
        if self.member is not None:
            body["member"] = self.member
        if self.device is not None:
            body["device"] = self.device
            body["revocation"] = self.revocation
        return pack(body)

    @classmethod
    def decode(cls, data: bytes, what: str) -> RekeyBody:
        def parse(m: dict[str, Any]) -> RekeyBody:
            member = m.get("member")
            return cls(
                epoch=as_int(field(m, "epoch", what), f"{what} epoch", minimum=2),
                grants=_grants(field(m, "keys", what), f"{what} keys"),
                commit=as_bytes(field(m, "commit", what), f"{what} key commitment", crypto.HASH_SIZE),
                member=None if member is None else as_bytes(member, f"{what} member", 32),
                device=None if m.get("device") is None else as_bytes(m["device"], f"{what} device", 32),
                revocation=None if m.get("revocation") is None else as_bytes(
                    m["revocation"], f"{what} revocation", crypto.SIGNATURE_SIZE),
            )

        return decode_body(data, what, parse)


@dataclass(frozen=True)
class SetRoleBody:
    member: bytes
    role: Role

    def encode(self) -> bytes:
        return pack({"v": BODY_VERSION, "member": self.member, "role": self.role.value})

    @classmethod
    def decode(cls, data: bytes) -> SetRoleBody:
        return decode_body(data, "set_role", lambda m: cls(
            member=as_bytes(field(m, "member", "set_role"), "set_role member", 32),
            role=parse_role(field(m, "role", "set_role"), "set_role role"),
        ))


_POLICY_MINIMUMS = {"rotate_entries": 1, "rotate_seconds": 1, "retain_epochs": 0, "retain_seconds": 0,
                    "snapshot_entries": 1, "snapshot_bytes": 1}  # as Policy.decode checks them


@dataclass(frozen=True)
class Policy:
    """When an admin's client rotates the key by itself, and how long devices keep old keys.

    None means never (rotation) or forever (retention). Retention counts epochs before the
    current one, and seconds since an epoch ended.
    """

    rotate_entries: int | None = None
    rotate_seconds: int | None = None
    retain_epochs: int | None = None
    retain_seconds: int | None = None
    # A snapshot once this many data entries, or bytes of them, came after the last one.
    snapshot_entries: int | None = 1000
    snapshot_bytes: int | None = 4 << 20
    # How many members other than a snapshot's author must attest it before a new device
    # starts from it (encspaces.core.attestation).
    snapshot_attesters: int = 1

    def __post_init__(self) -> None:
        # Checked here, where the mistake is made: a policy outside these bounds would be
        # published in an entry that every member (and the relay) refuses as malformed.
        for name, minimum in _POLICY_MINIMUMS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ArgumentTypeError(f"Policy.{name} is an int or None, not {type(value).__name__}")
            if not minimum <= value < 1 << 63:
                raise InvalidArgumentError(f"Policy.{name} must be at least {minimum}, not {value}")

    def encode(self) -> bytes:
        return pack({"v": BODY_VERSION, "rotate_entries": self.rotate_entries,
                     "rotate_seconds": self.rotate_seconds, "retain_epochs": self.retain_epochs,
                     "retain_seconds": self.retain_seconds, "snapshot_entries": self.snapshot_entries,
                     "snapshot_bytes": self.snapshot_bytes, "snapshot_attesters": self.snapshot_attesters})

    @classmethod
    def decode(cls, data: bytes) -> Policy:
        def opt(m: dict[str, Any], key: str, minimum: int, default: int | None = None) -> int | None:
            value = m.get(key, default)
            return None if value is None else as_int(value, f"policy {key}", minimum=minimum)

        return decode_body(data, "policy", lambda m: cls(
            rotate_entries=opt(m, "rotate_entries", 1),
            rotate_seconds=opt(m, "rotate_seconds", 1),
            retain_epochs=opt(m, "retain_epochs", 0),
            retain_seconds=opt(m, "retain_seconds", 0),
            snapshot_entries=opt(m, "snapshot_entries", 1, cls.snapshot_entries),
            snapshot_bytes=opt(m, "snapshot_bytes", 1, cls.snapshot_bytes),
            snapshot_attesters=as_int(m.get("snapshot_attesters", cls.snapshot_attesters),
                                      "policy snapshot_attesters", minimum=1),
        ))


def seal_grants(recipients: dict[bytes, bytes], key: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """``key`` sealed to each recipient: {sign key or invite key: X25519 box key}."""
    return tuple((recipient, crypto.seal_to(box, key)) for recipient, box in sorted(recipients.items()))
