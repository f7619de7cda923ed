"""Client failover across a cluster: three relay processes on one PostgreSQL and one NATS.

The relays are real daemons (``encspaces_relay.process.RelayProcess``), sharing the database,
the bus and the cluster's relay key (copied into each node's data dir, as docs/cluster.md says
an operator does). The members are the SDK's ``Space``, each given every relay's URL and
starting on a different one: they converge; and when the relay a writer is connected to is
killed with SIGKILL while everyone writes, the writer fails over to another relay and no
acknowledged edit is lost, twenty times over (the killed relay is restarted each cycle).

"Acknowledged" is what the SDK promises an application: ``space.sync()`` returned, i.e. the
edit is in the member's verified log, which the relay extends only after the database
committed it. At the end every acknowledged edit must be, exactly once, in the log of every
member and of a fresh member that verifies the whole log from the genesis.

Against the real servers (PostgreSQL as in test_relay_postgres.py, NATS as in
test_relay_bus.py): without them these tests skip with one line naming what is missing; with
``CI=true`` they fail. Nothing here asserts a duration: every wait is on a condition, with a
generous guard against a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_relay_bus import nats_url  # noqa: F401  (a fixture)
from test_relay_postgres import pg_dsn  # noqa: F401  (a fixture)

import encspaces
from encspaces_relay.keys import KEY_FILE
from encspaces_relay.process import RelayProcess
from tests.support import wait_for

GUARD = 60.0  # a hang guard for one condition, not a timing assertion
CYCLES = 20
# Quick reconnects: failover then depends on the relays, not on a backoff grown by earlier cycles.
OPTIONS = encspaces.SpaceOptions(reconnect_min=0.02, reconnect_max=0.5)


class RelayCluster:
    """Relay daemons on one database and one bus, signing with one relay key."""

    def __init__(self, tmp: Path, dsn: str, bus: str) -> None:
        self.tmp = tmp
        self.args = ["--store", dsn, "--bus", bus]
        self.seed = os.urandom(32)
        self.nodes: list[RelayProcess] = []

    async def start(self, n: int) -> None:
        for i in range(n):
            data = self.tmp / f"node{i}"
            data.mkdir(mode=0o700)
            key = os.open(data / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(key, "wb") as out:
                out.write(self.seed)  # the cluster's relay key, the same on every node
            self.nodes.append(RelayProcess(data, extra_args=self.args))
        await asyncio.gather(*(node.start() for node in self.nodes))
        assert len({node.public_key for node in self.nodes}) == 1

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node_of(self, url: str) -> RelayProcess:
        return next(node for node in self.nodes if node.url == url)

    async def stop(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes))


@pytest.fixture
async def relay_cluster(tmp_path: Path, pg_dsn: str, nats_url: str) -> AsyncIterator[RelayCluster]:  # noqa: F811
    cluster = RelayCluster(tmp_path, pg_dsn, nats_url)
    try:
        await cluster.start(3)
        yield cluster
    finally:
        await cluster.stop()


async def _members(cluster: RelayCluster, tmp: Path, n: int) -> list[encspaces.Space]:
    """A space and ``n`` members; member i is given every relay, relay i (mod 3) first."""
    urls = cluster.urls
    starts = [urls[i % len(urls):] + urls[:i % len(urls)] for i in range(n)]
    ids = [encspaces.Identity.generate() for _ in range(n)]
    creator = await encspaces.create_space(starts[0], ids[0], data_dir=tmp / "m0", options=OPTIONS)
    for identity in ids[1:]:
        await creator.add_member(identity.public)
    spaces = [creator]
    for i in range(1, n):
        spaces.append(await encspaces.connect(starts[i], ids[i], creator.id, data_dir=tmp / f"m{i}",
                                              options=OPTIONS))
    for space in spaces:
        await space.wait_connected(timeout=GUARD)
    return spaces


async def _settle(spaces: list[encspaces.Space]) -> None:
    for space in spaces:
        await space.sync(timeout=GUARD)
    newest = max(space.seq for space in spaces)
    for space in spaces:
        await space.wait_for_seq(newest, timeout=GUARD)


async def test_members_on_three_relays_converge(relay_cluster: RelayCluster, tmp_path: Path) -> None:
    spaces = await _members(relay_cluster, tmp_path, 3)
    try:
        assert [space.url for space in spaces] == relay_cluster.urls  # one member on each relay
        for round_ in range(10):
            for i, space in enumerate(spaces):
                space.list("log").append(f"m{i}.{round_}")
        await _settle(spaces)
        assert len({space.head for space in spaces}) == 1
        logs = [space.list("log").to_py() for space in spaces]
        assert logs[0] == logs[1] == logs[2]
        assert sorted(logs[0]) == sorted(f"m{i}.{r}" for i in range(3) for r in range(10))
        assert [space.url for space in spaces] == relay_cluster.urls  # nobody needed to fail over
    finally:
        for space in spaces:
            await space.close()


@dataclass
class Writer:
    """A member appending unique tokens to the list ``log``; a token is acknowledged once a
    ``sync()`` that started after it was appended has returned."""

    space: encspaces.Space
    name: str
    acked: list[str] = field(default_factory=list)
    written: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        log = self.space.list("log")
        while not stop.is_set():
            tokens = [f"{self.name}.{self.written + i}" for i in range(3)]
            for token in tokens:
                log.append(token)  # one edit each; batching may put several in one entry
            self.written += len(tokens)
            await self.space.sync(timeout=GUARD)
            self.acked.extend(tokens)


async def test_kill_9_of_the_writers_relay_loses_no_acknowledged_edit(
    relay_cluster: RelayCluster, tmp_path: Path,
) -> None:
    restarts: list[asyncio.Task[str]] = []  # a killed relay starts again while the next cycle runs
    spaces = await _members(relay_cluster, tmp_path, 3)
    writers = [Writer(space, f"w{i}") for i, space in enumerate(spaces)]
    main = writers[0]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in writers]
    relays_used = {main.space.url}
    try:
        for cycle in range(CYCLES):
            # At most one relay is down (still starting) when the next one is killed: one always answers.
            await asyncio.gather(*restarts[:-1])
            # The relay the main writer is on dies with its edits in flight.
            await wait_for(lambda: main.space.connected and main.space.unsent > 0, "edits in flight", GUARD)
            killed = relay_cluster.node_of(main.space.url)
            acked_before = len(main.acked)
            assert await killed.kill() == -signal.SIGKILL
            # It fails over: connected to another relay, and its edits are acknowledged again.
            await wait_for(lambda killed=killed, before=acked_before: (  # type: ignore[misc]
                main.space.connected and main.space.url != killed.url and len(main.acked) > before
            ), f"cycle {cycle}: the writer fails over from {killed.url}", GUARD)
            relays_used.add(main.space.url)
            for task in tasks:
                if task.done():
                    task.result()  # a writer that failed: its error
            restarts.append(asyncio.create_task(killed.start()))  # the same port: back in the cluster
        await asyncio.gather(*restarts)
        assert relays_used == set(relay_cluster.urls)  # round robin: it went through every relay
        stop.set()
        await asyncio.gather(*tasks)
        await _settle(spaces)

        acked = [token for w in writers for token in w.acked]
        assert len(main.acked) > 3 * CYCLES
        fresh_id = encspaces.Identity.generate()
        await spaces[0].add_member(fresh_id.public)
        fresh = await encspaces.connect(relay_cluster.urls, fresh_id, spaces[0].id, data_dir=tmp_path / "fresh",
                                        options=OPTIONS)  # verifies the whole log from the genesis
        try:
            await _settle([*spaces, fresh])
            for space in [*spaces, fresh]:
                log = space.list("log").to_py()
                missing = set(acked) - set(log)
                assert not missing, f"{space.identity.member_id[:8]} lacks acknowledged edits {sorted(missing)[:5]}"
                assert len(log) == len(set(log))  # a resubmission after failover never doubled an edit
            assert len({space.head for space in [*spaces, fresh]}) == 1
        finally:
            await fresh.close()
    finally:
        stop.set()
        for task in [*tasks, *restarts]:
            task.cancel()
        for task in [*tasks, *restarts]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for space in spaces:
            await space.close()
