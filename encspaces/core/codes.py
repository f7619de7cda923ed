"""Every refusal code of the protocol, in one place: what the relay sends, what the client does.

An ``error`` message carries a ``RefusalCode`` (docs/PROTOCOL.md, "Refusals"); a ``blob_refused``
message a ``BlobCode`` (section 16); a ``proof_refused`` message a ``ProofCode`` (section 18).
All are ``StrEnum``: a member *is* its wire string, so ``pack`` writes the same bytes as the
plain string and a code received from the relay (a ``str``) compares equal to its member. A
relay may send a code this list does not know (a newer relay, or a lying one): the client
treats an unknown code as transient, as it always did.

For each refusal code:

- ``fatal``: the relay closes the connection after the ``error`` (``fatal=true`` on the wire).
  A non-fatal refusal answers one submission; the connection stays open.
- ``permanent``: the SDK fails the space with the ``RelayError``, since reconnecting cannot cure
  it. Otherwise it is transient: reconnect (fatal) or resubmit (not fatal).
- ``close_code``: the websocket close code the relay closes with (None when not fatal).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Websocket close codes (RFC 6455 section 7.4.1), as websockets.frames.CloseCode names them;
# spelled here so the core does not import websockets (tests/relay hold them equal).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class RefusalCode(enum.StrEnum):
    """The ``code`` of an ``error`` message: why the relay refused a connection or a frame."""

    MALFORMED = "malformed"  # not msgpack, wrong types, missing fields, text frames
    TOO_LARGE = "too_large"  # a frame or an entry over the size limit
    UNEXPECTED = "unexpected"  # a valid message at the wrong time (a second hello, an ack...)
    TIMEOUT = "timeout"  # no hello in time
    BAD_AUTH = "bad_auth"  # the hello's signature, relay key, nonce or clock is wrong
    BAD_GENESIS = "bad_genesis"  # a create whose genesis entry is invalid or not the member's
    WRONG_RELAY = "wrong_relay"  # a genesis that pins another relay's key
    UNKNOWN_SPACE = "unknown_space"
    NOT_A_MEMBER = "not_a_member"
    REJECTED = "rejected"  # a submitted entry breaks a rule of the log
    STALE_EPOCH = "stale_epoch"  # entries under an epoch a rotation ended: re-encrypt and resend
    # A membership change another one made moot (a race between admins), or an attestation another
    # device of the same person posted first: the client drops the entry and numbers the rest again.
    CONFLICT = "conflict"
    GAP = "gap"  # author_seq skips: follows a submission refused without closing
    CONTENDED = "contended"  # other relays of the cluster kept committing to the space first (encspaces_relay/room.py)
    BAD_INVITE = "bad_invite"  # a newcomer's invite is unknown, revoked, used up, expired, or not proven
    REMOVED = "removed"  # the member was removed from the space
    INTERNAL = "internal"  # the relay's fault (storage failure): reconnect and resubmit
    UNAVAILABLE = "unavailable"  # the relay is shutting down
    # Relay limits on anonymous clients (encspaces_relay/limits.py, docs/PROTOCOL.md "Relay limits").
    BUSY = "busy"  # too many connections, in all or from this address: reconnect later
    RATE_LIMITED = "rate_limited"  # this address created its quota of spaces for now: the create fails
    CREATE_FORBIDDEN = "create_forbidden"  # the operator lets nobody, or not this member, create spaces
    # One device key connected twice to one space (a copied identity file): add a device instead.
    DEVICE_IN_USE = "device_in_use"

    @property
    def fatal(self) -> bool:
        """The relay closes the connection after this refusal."""
        return _TRAITS[self].fatal

    @property
    def permanent(self) -> bool:
        """The SDK fails the space on it; otherwise it reconnects or resubmits."""
        return _TRAITS[self].permanent

    @property
    def close_code(self) -> int | None:
        """The websocket close code that follows a fatal refusal; None for a non-fatal one."""
        return _TRAITS[self].close_code


@dataclass(frozen=True)
class _Traits:
    fatal: bool
    permanent: bool
    close_code: int | None


def _fails_space(close_code: int = CLOSE_POLICY_VIOLATION) -> _Traits:
    return _Traits(fatal=True, permanent=True, close_code=close_code)


def _reconnect(close_code: int) -> _Traits:
    return _Traits(fatal=True, permanent=False, close_code=close_code)


_RESUBMIT = _Traits(fatal=False, permanent=False, close_code=None)

_C = RefusalCode
_TRAITS: dict[RefusalCode, _Traits] = {
    _C.MALFORMED: _fails_space(),
    _C.TOO_LARGE: _fails_space(CLOSE_MESSAGE_TOO_BIG),
    _C.UNEXPECTED: _fails_space(),
    _C.TIMEOUT: _reconnect(CLOSE_POLICY_VIOLATION),
    _C.BAD_AUTH: _fails_space(),
    _C.BAD_GENESIS: _fails_space(),
    _C.WRONG_RELAY: _fails_space(),
    _C.UNKNOWN_SPACE: _fails_space(),
    _C.NOT_A_MEMBER: _fails_space(),
    _C.REJECTED: _fails_space(),
    _C.STALE_EPOCH: _RESUBMIT,
    _C.CONFLICT: _RESUBMIT,
    _C.GAP: _RESUBMIT,
    _C.CONTENDED: _RESUBMIT,
    _C.BAD_INVITE: _fails_space(),
    _C.REMOVED: _fails_space(),
    _C.INTERNAL: _reconnect(CLOSE_INTERNAL_ERROR),
    _C.UNAVAILABLE: _reconnect(CLOSE_GOING_AWAY),
    _C.BUSY: _reconnect(CLOSE_TRY_AGAIN_LATER),
    _C.RATE_LIMITED: _fails_space(),
    _C.CREATE_FORBIDDEN: _fails_space(),
    # Not permanent: the other connection may be this device's own, half-open after a network drop.
    # An opening call fails on it (encspaces/connection.py); a live space retries with backoff.
    _C.DEVICE_IN_USE: _reconnect(CLOSE_POLICY_VIOLATION),
}
del _C


class BlobCode(enum.StrEnum):
    """The ``code`` of a ``blob_refused`` message; never fatal, only that request failed."""

    NOT_A_MEMBER = "not_a_member"  # the connection's member is no longer a member
    READ_ONLY = "read_only"  # a reader may not upload
    TOO_LARGE = "too_large"  # over the relay's max_blob_size
    QUOTA = "quota"  # over the space's blob quota, or the relay's for all spaces
    BAD_HASH = "bad_hash"  # the bytes do not hash to the name they were sent under
    INTERNAL = "internal"  # the relay could not store it


class ProofCode(enum.StrEnum):
    """The ``code`` of a ``proof_refused`` message; never fatal, only that request failed."""

    BEYOND_HEAD = "beyond_head"  # a tree size (or seq) past the relay's log: it cannot prove what it has not sequenced
    BAD_RANGE = "bad_range"  # first above second, or a seq not in the tree of the size asked
    UNAVAILABLE = "unavailable"  # the relay cannot answer now (its tree is loading, a storage failure): ask again
