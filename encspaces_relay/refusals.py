"""Why the relay refuses a connection or a frame, as the peer will read it.

Every refusal becomes one Error frame (its ``code`` is machine-readable, its message says
exactly what was wrong) followed by closing the connection. Raising a Refusal anywhere in a
connection's flow is the only way to end it on purpose, so no path can close a connection
without telling the peer why. The codes, and which close the connection with which websocket
close code, are ``encspaces.core.codes.RefusalCode``.
"""

from __future__ import annotations

from encspaces.core.codes import CLOSE_POLICY_VIOLATION, RefusalCode


class Refusal(Exception):
    """A reason to send an Error frame (and close, unless ``code`` is not fatal)."""

    def __init__(self, code: RefusalCode, message: str, ref: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        # The websocket close code after the Error frame; a non-fatal code has none, and is only
        # ever answered without closing (encspaces_relay/room.py), so the fallback is never sent.
        self.close_code = code.close_code or CLOSE_POLICY_VIOLATION
        self.ref = ref  # the author_seq of the entry to blame, if one is


def internal(message: str) -> Refusal:
    return Refusal(RefusalCode.INTERNAL, message)


def too_large(message: str) -> Refusal:
    return Refusal(RefusalCode.TOO_LARGE, message)


def unavailable() -> Refusal:
    """The relay is shutting down: nothing is wrong with the client, which should reconnect."""
    return Refusal(RefusalCode.UNAVAILABLE, "the relay is shutting down: reconnect and resubmit")
