"""``space.presence``: set our state, see our peers', and keep the relay honest while doing it.

The asyncio half of presence (encspaces.core.presence is the pure half): it coalesces and
rate-limits what we send, re-sends it as a heartbeat so peers keep us, expires silent peers,
and, once a second, checks whether a peer has told us about entries the relay still has not
delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .core.encoding import deeper_than, pack, unpack
from .core.head import SignedHead
from .core.identity import member_id
from .core.presence import (
    MAX_PRESENCE_DEPTH,
    MAX_PRESENCE_STATE,
    PEER_TIMEOUT,
    WITHHOLD_TIMEOUT,
    PresenceClaim,
    PresenceTracker,
    open_presence,
    seal_presence,
)
from .errors import ArgumentTypeError, EncspacesError, InvalidArgumentError, ProtocolError
from .streams import EventHub, EventStream
from .supervision import TaskOwner

if TYPE_CHECKING:
    from .host import SpaceHost

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.1  # seconds between two presence messages we send (rate limit, coalescing)
HEARTBEAT = 10.0  # seconds between re-sends of an unchanged state
TICK = 1.0  # seconds between expiry and withholding checks
# The state a member sends once when it closes the space: peers drop it at once instead of after
# PEER_TIMEOUT. A reserved key, so that no application state is mistaken for it.
LEFT_STATE: dict[str, Any] = {"encspaces.left": True}


@dataclass(frozen=True)
class PresenceChange:
    """A peer's presence changed: ``state`` is None when the peer left (expired).

    ``member`` is the peer device's id (presence is per device); ``person`` the member id of its
    person, which is what to show: one person may be present from several devices.
    """

    member: str
    state: dict[str, Any] | None
    person: str = ""


class PresenceChannel:
    """Created by the Space and wired through its ``SpaceHost`` (encspaces/host.py)."""

    def __init__(self, host: SpaceHost) -> None:
        self._host = host
        self._clock = host.options.clock
        self._identity = identity = host.identity
        self._state: dict[str, Any] = {}
        self._tracker = PresenceTracker(identity.public.sign_key)
        self._acked_head: SignedHead | None = None  # the newest relay-signed head from an ack
        self._last_sent = 0.0
        self._counter = 0  # the last counter we sent: strictly increasing (peers drop replays by it)
        self._dirty = True
        self._live = False
        self._changes: EventHub[PresenceChange] = EventHub()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.peer_timeout = PEER_TIMEOUT
        self.withhold_timeout = WITHHOLD_TIMEOUT
        self.heartbeat = HEARTBEAT
        self.tick = TICK
        self.min_interval = MIN_INTERVAL

    # --- the application's side ----------------------------------------------------------

    def set(self, state: dict[str, Any]) -> None:
        """Replace our presence state (display name, colour, cursor, selection: a small dict).

        It must pack to at most ``MAX_PRESENCE_STATE`` bytes of msgpack, with lists and dicts
        nested at most ``MAX_PRESENCE_DEPTH`` deep (peers drop deeper ones); a state that is not
        a dict, cannot be packed, is too large or too deep raises ``InvalidArgumentError`` (a ValueError;
        ``ArgumentTypeError``, also a TypeError, for a wrong type) and the previous state stays.
        """
        if not isinstance(state, dict):
            raise ArgumentTypeError(f"presence state must be a dict, not {type(state).__name__}")
        try:
            packed = pack(state)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ArgumentTypeError(f"presence state cannot be packed: {exc}") from None
        if len(packed) > MAX_PRESENCE_STATE:
            raise InvalidArgumentError(
                f"presence state of {len(packed)} bytes is over the limit of {MAX_PRESENCE_STATE}")
        if deeper_than(unpack(packed), MAX_PRESENCE_DEPTH):
            raise InvalidArgumentError(f"presence state nested more than {MAX_PRESENCE_DEPTH} deep")
        if state == LEFT_STATE:
            raise InvalidArgumentError("that presence state is reserved: it tells peers this member left")
        self._state = dict(state)
        self._dirty = True
        self._wake.set()

    @property
    def state(self) -> dict[str, Any]:
        return dict(self._state)

    @property
    def peer_seqs(self) -> dict[str, int]:
        """Member id -> the newest seq the relay signed for that peer, as their presence showed it
        (it never goes back: a replayed older message is dropped)."""
        return {member_id(author): head.seq for author, head in self._tracker.heads.items()}

    @property
    def replays_dropped(self) -> int:
        """Presence messages dropped as replays: a counter not above the last one from that sender
        (a relay replaying old presence; each is also logged at INFO)."""
        return self._tracker.replays_dropped

    @property
    def peers(self) -> dict[str, dict[str, Any]]:
        """Member id -> their latest presence state, for peers heard from in the last 30 s
        (a peer who closes the space says so and is dropped at once)."""
        return {member_id(author): dict(state) for author, (state, _) in self._tracker.peers.items()}

    @property
    def people(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Person (member id) -> device id -> that device's latest state: ``peers`` grouped by person,
        what a member list shows (a person is present when any of their devices is)."""
        people: dict[str, dict[str, dict[str, Any]]] = {}
        for author, (state, _) in self._tracker.peers.items():
            people.setdefault(self._person(author), {})[member_id(author)] = dict(state)
        return people

    def _person(self, device: bytes) -> str:
        return member_id(self._host.verifier.state.person_of(device) or device)

    def changes(self) -> EventStream[PresenceChange]:
        """Every change of a peer's presence from the moment of this call, including peers leaving.

        The stream ends with ``aclose()``, when the space closes, or (raising its error) when it fails.
        """
        return self._changes.stream()

    # --- the space's side -------------------------------------------------------------------

    def start(self, tasks: TaskOwner) -> None:
        """Run the presence loop as one of the space's tasks (``tasks`` owns it)."""
        self._task = tasks.spawn(self._run(), "the presence task")

    def end_changes(self, error: BaseException | None = None) -> None:
        """End every stream of ``changes()`` (the space closed, or failed with ``error``)."""
        self._changes.end(error)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._live and self._send_state(LEFT_STATE, self._clock.monotonic()):
            for _ in range(3):  # best effort: let the send loop hand it to the socket before we disconnect
                await asyncio.sleep(0)

    def became_live(self) -> None:
        self._live = True
        self._tracker.restart_clocks(self._clock.monotonic())
        self._dirty = True
        self._wake.set()

    def went_offline(self) -> None:
        self._live = False

    def acked(self, head: SignedHead | None) -> None:
        if head is not None and (self._acked_head is None or head.seq > self._acked_head.seq):
            self._acked_head = head

    def verified(self) -> None:
        """After every verified frame: peers' heads for seqs we now hold must match ours."""
        try:
            self._tracker.after_verified(self._host.verifier.state, self._host.verifier.verified_head)
        except EncspacesError as exc:
            self._host.fail(exc)

    def received(self, data: bytes) -> None:
        verifier = self._host.verifier
        try:
            message = open_presence(data, verifier.space, verifier.state, verifier.epoch_keys)
        except ProtocolError as exc:
            log.debug("presence dropped: %s", exc)
            return
        if message.author != self._identity.public.sign_key and not self._tracker.fresh(message):
            log.info("presence from %s replayed (counter %d, not above the last one accepted): dropped",
                     message.member_id[:12], message.counter)
            return
        try:
            changed = self._tracker.receive(message, verifier.state, self._clock.monotonic(), verifier.verified_head)
        except EncspacesError as exc:
            self._host.fail(exc)
            return
        if message.state == LEFT_STATE:  # the peer closed the space
            self._tracker.peers.pop(message.author, None)
            self._publish(PresenceChange(message.member_id, None, self._person(message.author)))
            return
        if changed:
            self._publish(PresenceChange(message.member_id, dict(message.state), self._person(message.author)))

    # --- internals --------------------------------------------------------------------------

    def _publish(self, change: PresenceChange) -> None:
        self._changes.publish(change)

    async def _run(self) -> None:
        next_tick = self._clock.monotonic()
        while True:
            now = self._clock.monotonic()
            if now >= next_tick:
                self._check(now)
                next_tick = now + self.tick
            wake_at = next_tick
            if self._live:
                due = self._last_sent + (self.min_interval if self._dirty else self.heartbeat)
                if now >= due:
                    self._send_now(now)
                    continue
                wake_at = min(wake_at, due)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.001, wake_at - now)):
                    await self._wake.wait()

    def _send_now(self, now: float) -> None:
        if self._send_state(self._state, now):
            self._dirty = False

    def _send_state(self, state: dict[str, Any], now: float) -> bool:
        verifier = self._host.verifier
        key = verifier.epoch_keys.get(verifier.state.epoch)
        if key is None:
            self._last_sent = now
            return False
        newest = max((h for h in (verifier.latest_head, self._acked_head) if h is not None),
                     key=lambda h: h.seq, default=None)
        claim = PresenceClaim(newest)
        now_ms = self._clock.now_ms()
        # Above every counter sent before, and across restarts too while the clock does not go back.
        self._counter = max(self._counter + 1, now_ms * 1000)
        data = seal_presence(self._identity, verifier.space, verifier.state.epoch, key, state, claim, now_ms,
                             self._counter)
        self._last_sent = now  # a failed send is retried after MIN_INTERVAL, not in a busy loop
        session = self._host.live_session()
        if session is None:
            return False
        self._host.send(session.presence(data))
        return True

    def _check(self, now: float) -> None:
        for author in self._tracker.expire(now, self.peer_timeout, self._host.verifier.state):
            self._publish(PresenceChange(member_id(author), None, self._person(author)))
        if self._live:
            try:
                verifier = self._host.verifier
                self._tracker.check_withheld(verifier.state, now, self.withhold_timeout, verifier.verified_head)
            except EncspacesError as exc:
                self._host.fail(exc)
