"""Cross-relay fan-out over NATS (encspaces_relay/bus.py): relays on one PostgreSQL and one NATS.

Against the real servers (PostgreSQL as in test_relay_postgres.py; NATS at ``ENCSPACES_TEST_NATS``,
default nats://127.0.0.1:4222): without them these tests skip with one line naming what is
missing, under ``CI=true`` they fail. The tests without servers (configuration, a forged
announcement) run everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import nacl.signing
import pytest
from relay_kit import Member, SpaceBuilder, join, url_of
from test_relay_postgres import Cluster, CuttableProxy, _unavailable, pg_dsn  # noqa: F401  (pg_dsn: a fixture)

from encspaces.core.head import SignedHead, next_head
from encspaces.core.identity import Identity
from encspaces.core.messages import Entries
from encspaces_relay import shared_log
from encspaces_relay.__main__ import main
from encspaces_relay.bus import Announcement, NatsBus
from encspaces_relay.config import RelayConfig
from encspaces_relay.server import RelayServer
from tests.support import wait_for

NATS = os.environ.get("ENCSPACES_TEST_NATS", "nats://127.0.0.1:4222")
GUARD = 60.0  # a hang guard, not a timing assertion


@pytest.fixture
async def nats_url() -> str:
    try:
        import nats
    except ImportError:
        _unavailable_nats("nats-py (pip install -e '.[cluster]')")
    where = urlsplit(NATS)
    try:
        # A plain TCP probe first: nats-py keeps retrying a refused first connection instead of raising.
        _, writer = await asyncio.wait_for(asyncio.open_connection(where.hostname, where.port or 4222), 5)
        writer.close()
        nc = await asyncio.wait_for(
            nats.connect(NATS, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0), 10)
    except Exception as exc:
        _unavailable_nats(f"a server at {NATS} ({type(exc).__name__}: {exc}); set ENCSPACES_TEST_NATS")
    await nc.close()
    return NATS


def _unavailable_nats(why: str) -> None:
    message = f"NATS tests need {why}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: not skipped)")
    pytest.skip(message)


class BusCluster(Cluster):
    """Relays on one database and one NATS, one relay key, each with its own NATS connection."""

    async def start(  # type: ignore[override]
        self, bus: str, *, poll_up: float = 3600.0, poll_down: float = 0.2
    ) -> RelayServer:
        def tune(relay: RelayServer) -> None:
            assert isinstance(relay.bus, NatsBus)
            relay.bus.poll_up, relay.bus.poll_down, relay.bus.reconnect_wait = poll_up, poll_down, 0.2

        return await super().start(prepare=tune, bus=bus)


@pytest.fixture
async def bus_cluster(tmp_path: Path, pg_dsn: str, nats_url: str) -> AsyncIterator[BusCluster]:  # noqa: F811
    c = BusCluster(tmp_path, pg_dsn)
    try:
        yield c
    finally:
        await c.stop()


@contextlib.asynccontextmanager
async def reading(*members: Member) -> AsyncIterator[None]:
    """Each member receives (and verifies) in the background: nobody submits to be told anything."""

    async def loop(member: Member) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # relay_kit's guard on one recv: quiet is fine here
                await member.recv()

    tasks = [asyncio.create_task(loop(m)) for m in members]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for member in members:
            await member.close()


def _bus(relay: RelayServer) -> NatsBus:
    assert isinstance(relay.bus, NatsBus)
    return relay.bus


async def _members_on(relays: list[RelayServer]) -> tuple[SpaceBuilder, list[Member]]:
    """A space created on the first relay, with one member connected to each relay."""
    space = SpaceBuilder(relays[0].public_key)
    others = [Identity.generate() for _ in relays[1:]]
    creator = await join(url_of(relays[0]), space, space.creator, create=True)
    ack = await creator.submit([space.add_member(identity) for identity in others])
    await creator.sync_to(ack.results[-1][1])  # its Entries frame may follow the Ack
    members = [creator]
    for relay, identity in zip(relays[1:], others, strict=True):
        members.append(await join(url_of(relay), space, identity))
    return space, members


async def test_three_relays_fan_out_to_each_other_at_once(bus_cluster: BusCluster) -> None:
    relays = [await bus_cluster.start(NATS) for _ in range(3)]  # no polling: only the bus can tell them
    space, members = await _members_on(relays)
    ids = [m.identity for m in members]
    async with reading(*members):
        # An entry sequenced on relay 2 reaches the members on relays 0 and 1 without them sending anything.
        seq = members[2].seq + 1
        await members[2].send_submit([space.data(ids[2], b"from relay 2")])
        await wait_for(lambda: all(m.seq >= seq for m in members), "relays 0 and 1 fan out relay 2's entry",
                       timeout=GUARD)
        assert members[0].frames[-1].entries[-1] == members[2].frames[-1].entries[-1]
        assert _bus(relays[0]).applied >= 1 and _bus(relays[1]).applied >= 1
        # Everyone writes at once through their own relay: all converge on one log.
        for round_ in range(5):
            for member, identity in zip(members, ids, strict=True):
                await member.send_submit([space.data(identity, f"{round_}".encode())])
        total = seq + 15
        await wait_for(lambda: all(m.seq == total for m in members), f"every member at seq {total}", timeout=GUARD)
        assert len({m.verifier.head for m in members}) == 1
        assert all(len(m.acks) == 5 + (m is members[2]) for m in members[1:])
    for relay in relays:
        assert relay.rooms[space.space].durable_seq == total


async def test_bus_outage_relays_keep_serving_catch_up_from_the_database_then_live_again(
    bus_cluster: BusCluster,
) -> None:
    target = urlsplit(NATS)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 4222)
    await proxy.start()
    try:
        a = await bus_cluster.start(NATS, poll_up=0.5)  # its bus stays up: it polls now and then
        b = await bus_cluster.start(f"nats://127.0.0.1:{proxy.port}")  # polls every 0.2 s while its bus is down
        space, (on_a, on_b) = await _members_on([a, b])
        async with reading(on_a, on_b):
            await proxy.cut()
            await wait_for(lambda: not _bus(b).live, "relay b notices its bus is down", timeout=GUARD)
            # b keeps serving and sequencing; each side catches up the other's entries from the database
            seq = on_a.seq
            await on_b.send_submit([space.data(on_b.identity, b"b, bus down")])
            await on_a.send_submit([space.data(space.creator, b"a, while b's bus is down")])
            await wait_for(lambda: on_a.seq == on_b.seq == seq + 2, "both members at the same seq", timeout=GUARD)
            assert len(on_b.acks) == 1 and len(on_a.acks) == 2
            assert {on_a.verifier.head} == {on_b.verifier.head}

            await proxy.start()  # the same port: b's client reconnects
            await wait_for(lambda: _bus(b).live, "relay b's bus is back", timeout=GUARD)
            for bus in (_bus(a), _bus(b)):  # from now on only the bus can tell them
                bus.poll_up = 3600.0
                polls = bus.polls
                bus._wake.set()
                await wait_for(lambda bus=bus, polls=polls: bus.polls > polls, "a last poll", timeout=GUARD)  # type: ignore[misc]
            applied = _bus(b).applied
            await on_a.send_submit([space.data(space.creator, b"a, live again")])
            await wait_for(lambda: on_b.seq == seq + 3, "b's member sees a's entry", timeout=GUARD)
            assert _bus(b).applied == applied + 1
            await on_b.send_submit([space.data(on_b.identity, b"b, live again")])
            await wait_for(lambda: on_a.seq == seq + 4, "a's member sees b's entry", timeout=GUARD)
    finally:
        await proxy.stop()


async def test_a_relay_that_cannot_reach_nats_at_start_serves_and_connects_later(bus_cluster: BusCluster) -> None:
    target = urlsplit(NATS)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 4222)
    await proxy.start()
    await proxy.cut()  # the port is known but refused
    try:
        a = await bus_cluster.start(NATS)
        b = await bus_cluster.start(f"nats://127.0.0.1:{proxy.port}")
        assert not _bus(b).live
        space, (on_a, on_b) = await _members_on([a, b])
        async with reading(on_a, on_b):
            seq = on_a.seq + 1
            await on_a.send_submit([space.data(space.creator, b"to b from the database")])
            await wait_for(lambda: on_b.seq == seq, "b polls the database", timeout=GUARD)
            await proxy.start()
            await wait_for(lambda: _bus(b).live, "b connects", timeout=GUARD)
            applied = _bus(b).applied
            await on_a.send_submit([space.data(space.creator, b"to b over the bus")])
            await wait_for(lambda: on_b.seq == seq + 1, "b fans out a's entry", timeout=GUARD)
            assert _bus(b).applied == applied + 1
    finally:
        await proxy.stop()


# --- without servers ---------------------------------------------------------------------------


def test_bus_needs_a_shared_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="needs --store postgresql://"):
        RelayConfig(data_dir=tmp_path, bus="nats://127.0.0.1:4222")
    with pytest.raises(ValueError, match="takes a nats:// URL"):
        RelayConfig(data_dir=tmp_path, store="postgresql://x@h/db", bus="redis://h")
    assert main(["--data-dir", str(tmp_path), "--bus", "nats://127.0.0.1:4222"]) == 1
    assert "the SQLite store serves one relay alone" in capsys.readouterr().err


def test_announcement_round_trip() -> None:
    key = nacl.signing.SigningKey.generate()
    head = SignedHead.create(key, b"s" * 32, 7, b"h" * 32)
    message = Announcement(b"o" * 16, 6, head, [b"one", b"two"])
    assert Announcement.decode(message.encode()) == message


async def test_an_announcement_is_applied_only_under_the_relay_key(make_relay) -> None:  # type: ignore[no-untyped-def]
    """A head not signed by the relay key (anyone on NATS) is never applied, nor re-signed: the store is read."""
    relay = await make_relay()
    space = SpaceBuilder(relay.public_key)
    creator = await join(url_of(relay), space, space.creator, create=True)
    room = relay.rooms[space.space]
    entry = space.data(space.creator, b"not in the store")
    chained = next_head(room.state.head, 2, entry.digest())
    forged = SignedHead.create(nacl.signing.SigningKey.generate(), space.space, 2, chained)
    assert await shared_log.take_announced(room, 2, [entry.raw], forged, relay.public_key) == 0
    assert room.state.seq == room.durable_seq == 1
    wrong_chain = SignedHead.create(relay.signing_key, space.space, 2, b"x" * 32)
    assert await shared_log.take_announced(room, 2, [entry.raw], wrong_chain, relay.public_key) == 0
    assert room.state.seq == 1 and room.state.head == room.state.heads[1]
    # signed by the relay key and chaining: applied and fanned out as if sequenced here
    good = SignedHead.create(relay.signing_key, space.space, 2, chained)
    assert await shared_log.take_announced(room, 2, [entry.raw], good, relay.public_key) == 1
    message = await creator.recv()
    assert isinstance(message, Entries) and message.entries == [entry.raw] and creator.seq == 2
    await creator.close()
