"""Who may do what in a space, and the public bodies of the entries that change it.

The relay must read membership to admit connections and refuse writes, so membership
entries are signed but not encrypted; the epoch keys inside them are sealed to each
member's X25519 key and stay opaque to the relay.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import crypto
from .encoding import as_bytes, as_int, as_list, as_map, as_str, field, pack, unpack
from .entry import MAX_ENTRY_SIZE
from .errors import MalformedEntryError, ProtocolError
from .identity import PublicIdentity, member_id

BODY_VERSION = 1


class Role(enum.StrEnum):
    ADMIN = "admin"
    WRITER = "writer"
    READER = "reader"

    @property
    def can_write(self) -> bool:
        return self in (Role.ADMIN, Role.WRITER)

    @property
    def can_manage(self) -> bool:
        return self is Role.ADMIN


@dataclass(frozen=True)
class Member:
    sign_key: bytes
    box_key: bytes
    role: Role
    added_by: bytes | None  # None for the creator
    added_seq: int

    @property
    def id(self) -> str:
        return member_id(self.sign_key)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.sign_key, self.box_key)


@dataclass(frozen=True)
class GenesisBody:
    creator_box: bytes
    relay_key: bytes
    sealed_key: bytes  # epoch 1 key, sealed to the creator

    def encode(self) -> bytes:
        return pack({"v": BODY_VERSION, "creator_box": self.creator_box, "relay": self.relay_key,
                     "key": self.sealed_key})

    @classmethod
    def decode(cls, data: bytes) -> GenesisBody:
        try:
            m = as_map(unpack(data, max_size=MAX_ENTRY_SIZE, what="genesis body"), "genesis body")
            _check_version(m, "genesis body")
            return cls(
                creator_box=as_bytes(field(m, "creator_box", "genesis"), "genesis creator box key", 32),
                relay_key=as_bytes(field(m, "relay", "genesis"), "genesis relay key", 32),
                sealed_key=as_bytes(field(m, "key", "genesis"), "genesis sealed key", max_size=256),
            )
        except ProtocolError as exc:
            raise MalformedEntryError(f"malformed genesis entry: {exc}") from exc


@dataclass(frozen=True)
class AddMemberBody:
    member: bytes
    box_key: bytes
    role: Role
    sealed_keys: tuple[tuple[int, bytes], ...]  # (epoch, key sealed to the new member)

    def encode(self) -> bytes:
        return pack({"v": BODY_VERSION, "member": self.member, "box": self.box_key,
                     "role": self.role.value, "keys": [list(k) for k in self.sealed_keys]})

    @classmethod
    def decode(cls, data: bytes) -> AddMemberBody:
        try:
            m = as_map(unpack(data, max_size=MAX_ENTRY_SIZE, what="add_member body"), "add_member body")
            _check_version(m, "add_member body")
            role_name = as_str(field(m, "role", "add_member"), "add_member role", 16)
            try:
                role = Role(role_name)
            except ValueError:
                raise ProtocolError(f"add_member role: unknown role {role_name!r}") from None
            keys = []
            for item in as_list(field(m, "keys", "add_member"), "add_member keys"):
                pair = as_list(item, "add_member key", 2)
                keys.append((as_int(pair[0], "add_member key epoch", minimum=1),
                             as_bytes(pair[1], "add_member sealed key", max_size=256)))
            return cls(
                member=as_bytes(field(m, "member", "add_member"), "add_member member key", 32),
                box_key=as_bytes(field(m, "box", "add_member"), "add_member box key", 32),
                role=role,
                sealed_keys=tuple(keys),
            )
        except ProtocolError as exc:
            raise MalformedEntryError(f"malformed add_member entry: {exc}") from exc


def _check_version(m: dict[str, object], what: str) -> None:
    version = as_int(field(m, "v", what), f"{what} version")
    if version != BODY_VERSION:
        raise ProtocolError(f"{what}: version {version}, expected {BODY_VERSION}")


def genesis_body(creator: PublicIdentity, relay_key: bytes, epoch_key: bytes) -> bytes:
    return GenesisBody(creator.box_key, relay_key, crypto.seal_to(creator.box_key, epoch_key)).encode()


def add_member_body(new: PublicIdentity, role: Role, epoch_keys: dict[int, bytes]) -> bytes:
    sealed = tuple((epoch, crypto.seal_to(new.box_key, key)) for epoch, key in sorted(epoch_keys.items()))
    return AddMemberBody(new.sign_key, new.box_key, role, sealed).encode()
