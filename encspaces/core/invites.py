"""Invite links: one string that lets a newcomer join, without the relay ever being able to.

The link carries the relay's address (or a cluster's several addresses, for failover), the
space id and a random secret. From the secret both
sides derive an invite signing key and an invite box key. The admin's invite entry publishes
only the public halves (and the epoch keys sealed to the box key), so the relay, which reads
that entry, learns nothing it could join with. The newcomer proves the secret twice: to the
relay in the handshake (to be let in at all), and in its join entry, bound to its own keys,
which every client checks against the invite before accepting the newcomer as a member.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nacl.public
import nacl.signing

from ..errors import MalformedIdError, ProtocolError
from . import crypto
from .devices import DeviceCertificate
from .encoding import as_bytes, as_int, as_list, as_str, field, from_checked_text, pack, to_checked_text, unpack
from .identity import member_id
from .membership import BODY_VERSION, Role, decode_body, optional_cert, parse_role

if TYPE_CHECKING:
    from .log_state import Invite

LINK_PREFIX = "esinv1"
MAX_INVITE_USES = 1_000_000  # the most uses an invite entry may grant (InviteBody.decode)
MAX_LINK_RELAYS = 16  # the most relay URLs one link carries (a cluster's nodes, for failover)


@dataclass(frozen=True)
class InviteSecret:
    """The secret half of an invite, held by the admin who made it and by the link's holder."""

    secret: bytes

    @classmethod
    def generate(cls) -> InviteSecret:
        return cls(os.urandom(32))

    @property
    def signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(crypto.hash_parts(crypto.CTX_INVITE_SIGN_KEY, self.secret))

    @property
    def box_private(self) -> nacl.public.PrivateKey:
        return nacl.public.PrivateKey(crypto.hash_parts(crypto.CTX_INVITE_BOX_KEY, self.secret))

    @property
    def invite_key(self) -> bytes:
        """The invite's public id: its signing key."""
        return bytes(self.signing_key.verify_key)

    @property
    def box_key(self) -> bytes:
        return bytes(self.box_private.public_key)

    def join_proof(self, space: bytes, member: bytes, box_key: bytes) -> bytes:
        return crypto.sign(self.signing_key, crypto.CTX_INVITE_PROOF, space + member + box_key)

    def auth_proof(self, auth: bytes) -> bytes:
        """Binds the invite to one handshake (whose auth statement names space, member, nonce)."""
        return crypto.sign(self.signing_key, crypto.CTX_INVITE_AUTH, auth)


def verify_join_proof(invite_key: bytes, space: bytes, member: bytes, box_key: bytes, proof: bytes) -> bool:
    return crypto.verify(invite_key, crypto.CTX_INVITE_PROOF, space + member + box_key, proof)


def verify_auth_proof(invite_key: bytes, auth: bytes, proof: bytes) -> bool:
    return crypto.verify(invite_key, crypto.CTX_INVITE_AUTH, auth, proof)


@dataclass(frozen=True)
class InviteLink:
    """``url`` is the relay to try first; ``also`` the cluster's other relays, tried in turn when
    it cannot be reached (empty for one relay: the link's bytes are then those of a link from
    before several relays were possible, so older clients read it)."""

    url: str
    space: bytes
    secret: InviteSecret
    also: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url, *self.also)

    def __str__(self) -> str:
        where: str | list[str] = [self.url, *self.also] if self.also else self.url
        return to_checked_text(LINK_PREFIX, crypto.CTX_INVITE_LINK, pack([where, self.space, self.secret.secret]))

    @classmethod
    def parse(cls, text: str) -> InviteLink:
        """Parse an ``esinv1.…`` link; ``MalformedIdError`` (a ValueError) if it was mangled or cut short."""
        body = from_checked_text(text, LINK_PREFIX, crypto.CTX_INVITE_LINK, "invite link")
        try:
            where, space, secret = as_list(unpack(body, what="invite link"), "invite link", 3)
            if isinstance(where, list):
                urls = [as_str(url, "invite relay url", 2048) for url in where]
                if not 1 <= len(urls) <= MAX_LINK_RELAYS:
                    raise ProtocolError(f"invite relay urls: {len(urls)}, expected 1 to {MAX_LINK_RELAYS}")
            else:
                urls = [as_str(where, "invite relay url", 2048)]
            secret_key = InviteSecret(as_bytes(secret, "invite secret", 32))
            return cls(urls[0], as_bytes(space, "invite space", 32), secret_key, tuple(urls[1:]))
        except ProtocolError as exc:
            raise MalformedIdError(f"invite link is corrupt: {exc}") from exc


@dataclass(frozen=True)
class InviteInfo:
    """An open invite as ``space.invites`` lists it."""

    id: str
    role: Role
    uses: int
    used: int
    expires_ms: int | None
    expired: bool
    history: bool
    created_by: str
    created_seq: int

    @classmethod
    def of(cls, invite: Invite, now_ms: int) -> InviteInfo:
        return cls(member_id(invite.key), invite.role, invite.uses, invite.used, invite.expires_ms,
                   invite.expired_at(now_ms), invite.history, member_id(invite.created_by), invite.created_seq)


@dataclass(frozen=True)
class InviteBody:
    invite: bytes  # the invite's signing key
    box_key: bytes
    role: Role
    uses: int
    expires_ms: int | None
    history: bool
    sealed_keys: tuple[tuple[int, bytes], ...]  # (epoch, key sealed to box_key)

    def encode(self) -> bytes:
        return pack({"v": BODY_VERSION, "invite": self.invite, "box": self.box_key, "role": self.role.value,
                     "uses": self.uses, "expires": self.expires_ms, "history": self.history,
                     "keys": [list(k) for k in self.sealed_keys]})

    @classmethod
    def decode(cls, data: bytes) -> InviteBody:
        def parse(m: dict[str, Any]) -> InviteBody:
            expires = field(m, "expires", "invite")
            history = field(m, "history", "invite")
            if not isinstance(history, bool):
                raise ProtocolError("invite history: expected a boolean")
            keys = []
            for item in as_list(field(m, "keys", "invite"), "invite keys"):
                pair = as_list(item, "invite key", 2)
                keys.append((as_int(pair[0], "invite key epoch", minimum=1),
                             as_bytes(pair[1], "invite sealed key", max_size=256)))
            return cls(
                invite=as_bytes(field(m, "invite", "invite"), "invite key", 32),
                box_key=as_bytes(field(m, "box", "invite"), "invite box key", 32),
                role=parse_role(field(m, "role", "invite"), "invite role"),
                uses=as_int(field(m, "uses", "invite"), "invite uses", minimum=1, maximum=MAX_INVITE_USES),
                expires_ms=None if expires is None else as_int(expires, "invite expiry"),
                history=history,
                sealed_keys=tuple(keys),
            )

        return decode_body(data, "invite", parse)


@dataclass(frozen=True)
class RevokeInviteBody:
    invite: bytes

    def encode(self) -> bytes:
        return pack({"v": BODY_VERSION, "invite": self.invite})

    @classmethod
    def decode(cls, data: bytes) -> RevokeInviteBody:
        return decode_body(data, "revoke_invite", lambda m: cls(
            as_bytes(field(m, "invite", "revoke_invite"), "revoked invite key", 32)))


@dataclass(frozen=True)
class JoinBody:
    invite: bytes
    box_key: bytes  # the newcomer's X25519 key (its signing key is the entry's author)
    proof: bytes
    cert: DeviceCertificate | None = None  # the newcomer device's certificate (None: self-certified)

    def encode(self) -> bytes:
        body: dict[str, Any] = {"v": BODY_VERSION, "invite": self.invite, "box": self.box_key, "proof": self.proof}
        if self.cert is not None:
            body["cert"] = self.cert.encode()
        return pack(body)

    @classmethod
    def decode(cls, data: bytes) -> JoinBody:
        return decode_body(data, "join", lambda m: cls(
            invite=as_bytes(field(m, "invite", "join"), "join invite key", 32),
            box_key=as_bytes(field(m, "box", "join"), "join box key", 32),
            proof=as_bytes(field(m, "proof", "join"), "join proof", crypto.SIGNATURE_SIZE),
            cert=optional_cert(m, "join"),
        ))


__all__ = [
    "InviteBody", "InviteLink", "InviteSecret", "JoinBody", "RevokeInviteBody",
    "verify_auth_proof", "verify_join_proof",
]
