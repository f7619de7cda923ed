"""A space's connection as events: ``space.connection_changes()`` and ``space.wait_connected()``.

Every transition is one ``ConnectionChange``: ``connected`` once the session is live (caught
up with the relay, edits flowing), ``disconnected`` when that connection is lost (the space
reconnects by itself), ``failed`` once, when the space fails for good (``error`` says why).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import EncspacesError


class ConnectionState(enum.StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"


@dataclass(frozen=True)
class ConnectionChange:
    """The connection went to ``state``; ``error`` is the space's error when it failed, else None."""

    state: ConnectionState
    error: EncspacesError | None = None


__all__ = ["ConnectionChange", "ConnectionState"]
