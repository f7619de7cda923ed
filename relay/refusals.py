"""Why the relay refuses a connection or a frame, as the peer will read it.

Every refusal becomes one Error frame (its ``code`` is machine-readable, its message says
exactly what was wrong) followed by closing the connection. Raising a Refusal anywhere in a
connection's flow is the only way to end it on purpose, so no path can close a connection
without telling the peer why.
"""

from __future__ import annotations

from websockets.frames import CloseCode

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
STALE_EPOCH = "stale_epoch"  # entries under an epoch a rotation ended: not fatal, re-encrypt and resend
CONFLICT = "conflict"  # a membership change another one made moot (a race between admins): not fatal
GAP = "gap"  # author_seq skips: follows a submission refused without closing; not fatal
# Other relays of the cluster kept committing to the space first (relay/room.py): not fatal, resubmit.
CONTENDED = "contended"
BAD_INVITE = "bad_invite"  # a newcomer's invite is unknown, revoked, used up, expired, or not proven
REMOVED = "removed"  # the member was removed from the space
INTERNAL = "internal"  # the relay's fault (storage failure): reconnect and resubmit
UNAVAILABLE = "unavailable"  # the relay is shutting down
# Relay limits on anonymous clients (relay/limits.py, docs/PROTOCOL.md "Relay limits").
BUSY = "busy"  # too many connections, in all or from this address: not fatal, reconnect later
RATE_LIMITED = "rate_limited"  # this address created its quota of spaces for now: the create fails
CREATE_FORBIDDEN = "create_forbidden"  # the operator lets nobody, or not this member, create spaces


class Refusal(Exception):
    """A reason to send an Error frame and close; ``close_code`` is the websocket close code."""

    def __init__(
        self, code: str, message: str, close_code: int = CloseCode.POLICY_VIOLATION, ref: int | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code
        self.ref = ref  # the author_seq of the entry to blame, if one is


def internal(message: str) -> Refusal:
    return Refusal(INTERNAL, message, CloseCode.INTERNAL_ERROR)


def too_large(message: str) -> Refusal:
    return Refusal(TOO_LARGE, message, CloseCode.MESSAGE_TOO_BIG)


def try_later(code: str, message: str) -> Refusal:
    """Nothing is wrong with the request, the relay is at a limit: the client retries later."""
    return Refusal(code, message, CloseCode.TRY_AGAIN_LATER)


def unavailable() -> Refusal:
    """The relay is shutting down: nothing is wrong with the client, which should reconnect."""
    return Refusal(UNAVAILABLE, "the relay is shutting down: reconnect and resubmit", CloseCode.GOING_AWAY)
