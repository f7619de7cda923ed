"""A space's settings in one place: ``SpaceOptions``, passed as ``options=`` to connect, create_space and join.

Every field has the default the SDK always used; change one with ``SpaceOptions(freshness_limit=10)``
or ``dataclasses.replace(options, ...)``. ``clock`` is where the space reads the time: tests pass
a ``Clock`` they move by hand, so that time-based policy (rotation and retention by age, invite
expiry, the removal window) is decided deterministically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .core.encoding import DEFAULT_MAX_MESSAGE
from .core.entry import MAX_ENTRY_SIZE
from .core.presence import PEER_TIMEOUT, WITHHOLD_TIMEOUT
from .errors import InvalidArgumentError

DEFAULT_TIMEOUT = 30.0  # seconds connect, create_space and join wait by default


class Clock:
    """Wall time (seconds since the epoch: auth statements, the age of the view, policy ages, invite
    expiry) and monotonic time (seconds: presence's intervals); the real ones unless overridden."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def now_ms(self) -> int:
        return int(self.wall() * 1000)


class ManualClock(Clock):
    """A clock tests move by hand: ``advance(seconds)`` jumps it (a negative jump sets a wall clock back).

    ``wall`` / ``monotonic`` given: the clock stands still there between jumps. None (the
    default): it follows the real clock, shifted by the jumps so far (so a relay's signed times,
    taken from the real clock, compare as they would on a device whose clock jumped).
    """

    def __init__(self, wall: float | None = None, monotonic: float | None = None) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self.offset = 0.0

    def wall(self) -> float:
        return (time.time() if self._wall is None else self._wall) + self.offset

    def monotonic(self) -> float:
        return (time.monotonic() if self._monotonic is None else self._monotonic) + max(self.offset, 0.0)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass(frozen=True)
class SpaceOptions:
    """Timeouts, batching, policy intervals and the clock of one space (all times in seconds)."""

    # Batching: the first edit after a pause leaves at once; a burst shares one entry per
    # window, ``batch_delay`` at first and doubling while the burst goes on, up to
    # ``max_batch_delay`` (encspaces/core/batch_window.py; a value below ``batch_delay`` keeps
    # the window fixed); a batch that reached ``max_batch_count`` transactions leaves on the
    # next turn of the event loop (with what was typed until then: encspaces/local_batch.py),
    # and an entry holds at most ``max_batch_update`` bytes of updates.
    batch_delay: float = 0.005
    max_batch_delay: float = 0.04
    max_batch_count: int = 2048
    max_batch_update: int = MAX_ENTRY_SIZE // 2
    # The largest entry submitted: what a relay with the default frame size accepts.
    max_entry: int = DEFAULT_MAX_MESSAGE - 1024
    # A checkpoint (document and verified state) every this many verified entries, and at close.
    checkpoint_every: int = 1000
    # The removal window: nothing is sent while this device's view of the log, judged by the
    # relay's signed heads, is older than this; the view is refreshed by reconnecting.
    freshness_limit: float = 30.0
    # Withholding: a head the relay signed past what it delivered (an ack, a welcome) must be
    # reached within this many seconds connected without progress, else the space fails with
    # WithholdingError (never "catching up" for ever). Default: the freshness limit's 30 s.
    withholding_deadline: float = 30.0
    maintenance_interval: float = 1.0  # between checks of the time-based policy
    open_timeout: float = 10.0  # a background reconnect waits this long for the relay's handshake
    reconnect_min: float = 0.05  # reconnect backoff, doubling with jitter
    reconnect_max: float = 5.0
    # A submission refused without closing (stale_epoch, gap) is sent again after a backoff
    # doubling from resubmit_min to resubmit_max with jitter; after resubmit_limit refusals in a
    # row without progress the space fails with ResubmitLimitError.
    resubmit_min: float = 0.05
    resubmit_max: float = 2.0
    resubmit_limit: int = 10
    # Presence (space.presence): rate limit, heartbeat, expiry of silent peers, how long a peer's
    # claim of entries we were not delivered is tolerated, and how often those are checked.
    presence_min_interval: float = 0.1
    presence_heartbeat: float = 10.0
    presence_peer_timeout: float = PEER_TIMEOUT
    presence_withhold_timeout: float = WITHHOLD_TIMEOUT
    presence_tick: float = 1.0
    # The witnessed log (docs/PROTOCOL.md section 18): how often the space's witnesses are asked
    # directly for their newest checkpoint (also on every connect), how long one such request may
    # take, and how long a checkpoint past the verified log (or an asked consistency proof) may
    # stay unmet while connected before the relay is held to be withholding it.
    witness_poll_interval: float = 60.0
    witness_timeout: float = 10.0
    witness_deadline: float = 30.0
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        for name in ("batch_delay", "max_batch_delay", "freshness_limit", "withholding_deadline",
                     "maintenance_interval", "open_timeout", "reconnect_min",
                     "reconnect_max", "resubmit_min", "resubmit_max", "presence_min_interval",
                     "presence_heartbeat", "presence_peer_timeout", "presence_withhold_timeout", "presence_tick",
                     "witness_poll_interval", "witness_timeout", "witness_deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidArgumentError(f"SpaceOptions.{name} is a number of seconds >= 0, not {value!r}")
        for name in ("max_batch_count", "max_batch_update", "max_entry", "checkpoint_every", "resubmit_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"SpaceOptions.{name} is an int >= 1, not {value!r}")
        if not isinstance(self.clock, Clock):
            raise InvalidArgumentError(f"SpaceOptions.clock is a Clock, not {type(self.clock).__name__}")


def check_options(options: SpaceOptions | None) -> SpaceOptions:
    if options is None:
        return SpaceOptions()
    if not isinstance(options, SpaceOptions):
        raise InvalidArgumentError(f"options is a SpaceOptions, not {type(options).__name__}")
    return options


__all__ = ["DEFAULT_TIMEOUT", "Clock", "ManualClock", "SpaceOptions", "check_options"]
