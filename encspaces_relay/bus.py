"""Cross-relay fan-out: relays sharing a store tell each other what they sequenced (docs/cluster.md).

A relay that committed a batch publishes one ``Announcement`` per commit on its space's subject
(``encspaces.space.<hex id>``): the first seq, the head signed at the last entry, and the
entries' exact bytes (or none, when they would not fit in one NATS message: the receiver then
reads them from the store). Every relay with the space loaded applies it through
``shared_log.take_announced``, under the room's lock, exactly as it takes in another relay's
commit after losing one (continuity checked: a gap is filled from the store first), and fans it
out to its own subscribers.

The store stays the truth and the bus only says "look now": a message that is lost, late,
reordered or forged costs at most a read of the store. A head that does not verify under the
cluster's relay key, or entries that do not chain to it, are never applied (the store is read
instead). While the bus is down the relay polls the heads of its loaded spaces every
``poll_down`` seconds; while it is up, every ``poll_up`` seconds (another relay's bus may be
down, so its announcements are lost); on reconnecting it catches up every loaded space at once
and announces its own heads, so the others catch up too.

``NullBus`` is the single relay's: nothing to tell anyone. ``NatsBus`` uses core NATS (nats-py);
JetStream is not needed, see docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from encspaces.core.encoding import as_bytes, as_int, as_list, pack, unpack
from encspaces.core.head import SignedHead
from encspaces.errors import EncspacesError, StoreUnavailableError

from .shared_log import refresh, take_announced

if TYPE_CHECKING:
    from .room import Room
    from .storage import RelayStore

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "encspaces.space."
MESSAGE_VERSION = 1
NATS_SCHEMES = ("nats://", "tls://")


def subject(space: bytes) -> str:
    return SUBJECT_PREFIX + space.hex()


@dataclass(frozen=True)
class Announcement:
    """One commit, as a relay tells the others: ``[1, origin, first_seq, head, [entry, ...]]`` in msgpack."""

    origin: bytes  # the announcing relay process (random per start): its own messages are skipped
    first_seq: int
    head: SignedHead  # signed at the commit's last seq
    entries: list[bytes]  # empty: read first_seq..head.seq from the store

    def encode(self) -> bytes:
        return pack([MESSAGE_VERSION, self.origin, self.first_seq, self.head.encode(), self.entries])

    @classmethod
    def decode(cls, data: bytes) -> Announcement:
        items = as_list(unpack(data, max_size=len(data), what="bus message"), "bus message", 5)
        if items[0] != MESSAGE_VERSION:
            raise ValueError(f"bus message version {items[0]!r}, expected {MESSAGE_VERSION}")
        entries = [as_bytes(raw, "bus message entry") for raw in as_list(items[4], "bus message entries")]
        return cls(as_bytes(items[1], "bus message origin"), as_int(items[2], "bus message first seq"),
                   SignedHead.decode(items[3]), entries)


class BusHost(Protocol):
    """What the bus needs from the server: its loaded spaces, its store and its key."""

    @property
    def rooms(self) -> Mapping[bytes, Room]: ...

    @property
    def store(self) -> RelayStore: ...

    @property
    def public_key(self) -> bytes: ...


class Bus(Protocol):
    """How a relay learns at once what the other relays of its cluster sequenced."""

    @property
    def live(self) -> bool:
        """True while announcements flow (always for the null bus: there is no one else)."""
        ...

    async def start(self, host: BusHost) -> None: ...

    def publish(self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead) -> None:
        """Announce a commit; never blocks (the room's lock is held), never raises."""
        ...

    async def close(self) -> None: ...


class NullBus:
    """One relay alone: nothing to announce, nothing to hear."""

    live = True

    async def start(self, host: BusHost) -> None:
        return None

    def publish(self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead) -> None:
        return None

    async def close(self) -> None:
        return None


def is_nats(spec: str | None) -> bool:
    return spec is not None and spec.startswith(NATS_SCHEMES)


# An inbox item: an announcement to apply, or None: read what the store has beyond our seq.
_Item = Announcement | None


class NatsBus:
    """The bus on a NATS server (core NATS, at most once; the store fills any gap)."""

    def __init__(self, url: str, *, poll_down: float = 2.0, poll_up: float = 10.0, reconnect_wait: float = 1.0) -> None:
        self.url = url
        self.poll_down = poll_down
        self.poll_up = poll_up
        self.reconnect_wait = reconnect_wait
        self.origin = os.urandom(16)
        self.live = False
        # Counters, for tests and logs: entries applied from announcements, catch-ups from the store.
        self.applied = 0
        self.caught_up = 0
        self.dropped = 0  # announcements not sent (bus down): the others poll
        self.polls = 0  # reads of the stored heads done
        self._host: BusHost | None = None
        self._nc: Any = None  # nats.aio.client.Client (nats-py is untyped)
        self._max_payload = 1 << 20
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._inbox: dict[bytes, deque[_Item]] = {}
        self._workers: dict[bytes, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, host: BusHost, first_wait: float = 2.0) -> None:
        """Connect; if NATS does not answer within ``first_wait`` s, serve (and poll) while connecting on."""
        try:
            from nats.aio.client import Client
        except ImportError as exc:  # the driver is an optional extra
            raise ValueError("--bus needs nats-py: pip install 'encspaces[cluster]'") from exc
        self._host = host
        self._nc = Client()
        connector = asyncio.create_task(self._connect(), name="bus connector")
        self._tasks.append(connector)
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="bus poller"))
        self._tasks.append(asyncio.create_task(self._publish_loop(), name="bus publisher"))
        await asyncio.wait([connector], timeout=first_wait)
        if connector.done() and not connector.cancelled() and connector.exception() is not None:
            raise connector.exception()  # type: ignore[misc]  # a bad URL, say: a configuration error
        if not self.live:
            log.error("bus: cannot reach NATS at %s yet; serving anyway, reading other relays' commits from "
                      "the store every %gs until it answers", self.url, self.poll_down)

    async def close(self) -> None:
        self._closing = True
        self.live = False
        for task in [*self._tasks, *self._workers.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._workers.values(), return_exceptions=True)
        self._tasks.clear()
        self._workers.clear()
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _connect(self) -> None:
        """Connect (nats-py retries forever, also the first time), subscribe, go live."""
        nc = self._nc
        await nc.connect(
            self.url, name="encspaces-relay", no_echo=True, connect_timeout=2,
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=self.reconnect_wait,
            disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
            error_cb=self._error, closed_cb=self._closed,
        )
        self._max_payload = int(nc.max_payload)
        await nc.subscribe(SUBJECT_PREFIX + "*", cb=self._received)
        await nc.flush()
        log.info("bus: connected to NATS at %s", self.url)
        self._set_live(True)

    def _set_live(self, live: bool) -> None:
        was, self.live = self.live, live
        if live and not was:
            self._catch_up_all()
            self._announce_heads()

    async def _disconnected(self) -> None:
        if not self._closing and self.live:
            log.warning("bus: disconnected from NATS; reading other relays' commits from the store every %gs",
                        self.poll_down)
        self.live = False
        self._wake.set()

    async def _reconnected(self) -> None:
        log.info("bus: reconnected to NATS; catching up every loaded space from the store")
        self._set_live(True)

    async def _closed(self) -> None:
        self.live = False

    async def _error(self, exc: Exception) -> None:
        from nats.errors import SlowConsumerError

        if isinstance(exc, SlowConsumerError):  # NATS dropped messages for us: the store has them
            log.warning("bus: too slow, NATS dropped announcements; catching up from the store")
            self._catch_up_all()
        elif self.live:
            log.info("bus: %s: %s", type(exc).__name__, exc)
        else:  # every failed (re)connection attempt while down: said once when it went down
            log.debug("bus: %s: %s", type(exc).__name__, exc)

    # --- publishing -----------------------------------------------------------------------------

    def publish(self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead) -> None:
        if not self.live:
            self.dropped += 1
            return
        data = Announcement(self.origin, first_seq, head, entries).encode()
        if len(data) > self._max_payload - 512:
            data = Announcement(self.origin, first_seq, head, []).encode()  # the others read the store
        self._outbox.put_nowait((subject(space), data))

    def _announce_heads(self) -> None:
        """After an outage of our bus: tell the others our heads (they catch up what we committed)."""
        assert self._host is not None
        for space, room in list(self._host.rooms.items()):
            head = room.latest_head
            self.publish(space, head.seq, [], head)

    async def _publish_loop(self) -> None:
        while True:
            name, data = await self._outbox.get()
            nc = self._nc
            if nc is None or not self.live:  # cannot be sent: the others poll
                self.dropped += 1
                continue
            try:
                await nc.publish(name, data)
            except Exception as exc:  # buffer full while reconnecting, closed: the others poll
                self.dropped += 1
                log.info("bus: announcement not sent (%s: %s)", type(exc).__name__, exc)

    # --- receiving ------------------------------------------------------------------------------

    async def _received(self, msg: Any) -> None:
        host = self._host
        try:
            space = bytes.fromhex(msg.subject[len(SUBJECT_PREFIX):])
        except ValueError:
            return
        if host is None or space not in host.rooms:
            return  # not loaded here: whoever loads it reads the store
        try:
            item = Announcement.decode(bytes(msg.data))
        except (EncspacesError, ValueError) as exc:
            log.warning("bus: unreadable message on %s (%s); reading the store", msg.subject, exc)
            item = None
        if item is not None and item.origin == self.origin:
            return
        self._enqueue(space, item)

    def _enqueue(self, space: bytes, item: _Item) -> None:
        """Items of one space are applied in order by one worker; spaces do not wait for each other."""
        queue = self._inbox.setdefault(space, deque())
        if item is None and queue and queue[-1] is None:
            return  # a store read is already due
        queue.append(item)
        if space not in self._workers:
            self._workers[space] = asyncio.create_task(self._work(space), name=f"bus {space.hex()[:12]}")

    async def _work(self, space: bytes) -> None:
        queue = self._inbox[space]
        try:
            while queue:
                item = queue.popleft()
                host = self._host
                room = None if host is None else host.rooms.get(space)
                if room is None or room.failed:
                    continue
                try:
                    if item is None:
                        if await refresh(room):
                            self.caught_up += 1
                    else:
                        self.applied += await take_announced(room, item.first_seq, item.entries, item.head,
                                                             self._public_key())
                except StoreUnavailableError as exc:
                    log.warning("%s: cannot read what other relays committed: %s", room.label, exc)
                except Exception as exc:
                    log.exception("%s: taking in another relay's commit failed", room.label)
                    room._fail(f"the relay could not take in another relay's commit ({type(exc).__name__})")
        finally:
            del self._workers[space]
            if not queue:
                self._inbox.pop(space, None)
            elif not self._closing:  # items arrived as the last one finished
                self._workers[space] = asyncio.create_task(self._work(space), name=f"bus {space.hex()[:12]}")

    def _public_key(self) -> bytes:
        assert self._host is not None
        return self._host.public_key

    # --- catching up from the store -----------------------------------------------------------

    def _catch_up_all(self) -> None:
        self._wake.set()

    async def _poll_loop(self) -> None:
        while True:
            interval = self.poll_up if self.live else self.poll_down
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            await self._poll()
            self.polls += 1

    async def _poll(self) -> None:
        """Read the stored heads of the loaded spaces; a store read for each one that is behind."""
        host = self._host
        assert host is not None
        rooms = dict(host.rooms)
        if not rooms:
            return
        try:
            heads = await host.store.heads(list(rooms))
        except Exception as exc:
            log.warning("bus: cannot read the stored heads (%s: %s)", type(exc).__name__, exc)
            return
        for space, room in rooms.items():
            if heads.get(space, 0) > room.durable_seq:
                self._enqueue(space, None)
