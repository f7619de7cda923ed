"""The relay on PostgreSQL: one relay end to end, two relays racing on one space, migrate, outages.

Every test works in a schema of its own, created and dropped by the ``pg_dsn`` fixture, so runs
never collide. Without a reachable server (or without asyncpg) these tests skip with one line
naming what is missing; under CI (``CI=true``) they fail instead. ``ENCSPACES_TEST_PG`` names
another server (default: the database ``test`` on 127.0.0.1:5432, user postgres).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nacl.signing
import pytest
from relay_kit import Member, RawClient, SpaceBuilder, join, make_hello, url_of, wait_until

import encspaces
from bench.proxy import CuttableProxy
from encspaces import snapshot_keeper
from encspaces.core import crypto
from encspaces.core.entry import Entry
from encspaces.core.head import SignedHead
from encspaces.core.identity import Identity
from encspaces.core.log_state import ANCHOR_GRID
from encspaces.core.messages import Ack, BlobData, BlobGet, BlobPut, Entries, Error
from encspaces.errors import HeadMovedError, StoreUnavailableError
from encspaces.history import PRUNED
from encspaces_relay import shared_log
from encspaces_relay.config import RelayConfig
from encspaces_relay.server import RelayServer
from encspaces_relay.store import DB_FILE, EntryRow
from tests.sdk.test_anchors import anchored_record, write_log
from tests.sdk.test_random_convergence import state
from tests.support import make_members, settle

DSN = os.environ.get("ENCSPACES_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _unavailable(why: str) -> None:
    message = f"PostgreSQL tests need {why}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: not skipped)")
    pytest.skip(message)


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A DSN whose search_path is a fresh schema, dropped after the test."""
    try:
        import asyncpg
    except ImportError:
        _unavailable("asyncpg (pip install -e '.[postgres]')")
    try:
        admin = await asyncpg.connect(DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        _unavailable(f"a server at {DSN} ({type(exc).__name__}: {exc}); set ENCSPACES_TEST_PG")
    schema = f"t_{os.urandom(6).hex()}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{DSN}{'&' if '?' in DSN else '?'}search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


class Cluster:
    """Relays sharing one database and one relay key, each with its own data dir."""

    def __init__(self, tmp: Path, dsn: str) -> None:
        self.tmp = tmp
        self.dsn = dsn
        self.key = nacl.signing.SigningKey.generate()
        self.relays: list[RelayServer] = []

    async def start(self, dsn: str | None = None, prepare: Callable[[RelayServer], None] | None = None,
                    **overrides: object) -> RelayServer:
        """A new relay of the cluster; ``prepare`` may adjust it before it starts."""
        config = RelayConfig(data_dir=self.tmp / f"node{len(self.relays)}", port=0, store=dsn or self.dsn,
                             **overrides)  # type: ignore[arg-type]
        relay = RelayServer(config, signing_key=self.key)
        if prepare is not None:
            prepare(relay)
        await relay.start()
        self.relays.append(relay)
        return relay

    async def stop(self) -> None:
        for relay in self.relays:
            await relay.stop()


@pytest.fixture
async def cluster(tmp_path: Path, pg_dsn: str) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, pg_dsn)
    try:
        yield c
    finally:
        await c.stop()


async def _stored_seqs(relay: RelayServer, space: bytes) -> list[tuple[int, bytes]]:
    from encspaces_relay.pg_store import PgStore

    store = relay.store
    assert isinstance(store, PgStore)
    async with store.connection() as conn:
        rows = await conn.fetch("SELECT seq, raw FROM entries WHERE space_id = $1 ORDER BY seq", space)
    return [(int(r[0]), bytes(r[1])) for r in rows]


async def _next_notice(member: Member) -> Error:
    """Receive (verifying entries) until the relay's next Error frame."""
    while True:
        message = await member.client.recv()
        if isinstance(message, Entries):
            member.frames.append(message)
            member.verifier.verify_frame(message)
        elif isinstance(message, Error):
            return message


async def _submit_resubmitting(member: Member, entry: Entry) -> Ack:
    """Submit; on the non-fatal ``contended``, resubmit (what the SDK does after its backoff)."""
    while True:
        await member.send_submit([entry])
        while True:
            message = await member.client.recv()
            if isinstance(message, Entries):
                member.frames.append(message)
                member.verifier.verify_frame(message)
            elif isinstance(message, Ack):
                return message
            elif isinstance(message, Error):
                assert message.code == "contended" and not message.fatal, message
                break


# --- one relay on PostgreSQL ------------------------------------------------------------------


async def test_create_submit_catch_up_restart(cluster: Cluster) -> None:
    relay = await cluster.start()
    space = SpaceBuilder(relay.public_key)
    bob = Identity.generate()
    alice = await join(url_of(relay), space, space.creator, create=True)
    assert (await alice.submit([space.add_member(bob)])).results == [(2, 2)]
    await alice.submit([space.data(space.creator, b"one"), space.data(space.creator, b"two")])
    member = await join(url_of(relay), space, bob)  # catch-up from the database
    assert member.seq == 4
    from_bob = space.data(bob, b"from bob")
    assert (await member.submit([from_bob])).results == [(1, 5)]
    await alice.sync_to(5)
    await relay.stop()
    cluster.relays.remove(relay)

    again = await cluster.start()  # a fresh process would find the same: everything is in the database
    late = await join(url_of(again), space, bob)
    assert late.seq == 5 and late.frames[-1].entries[-1] == from_bob.raw
    assert [seq for seq, _ in await _stored_seqs(again, space.space)] == [1, 2, 3, 4, 5]
    # a resubmission after a lost ack is answered from the database with the stored seq
    assert (await late.submit([from_bob])).results == [(1, 5)]


async def test_blobs_live_in_the_database(cluster: Cluster) -> None:
    relay = await cluster.start(blob_quota=10_000)
    space = SpaceBuilder(relay.public_key)
    await join(url_of(relay), space, space.creator, create=True)
    blob = os.urandom(8000)
    digest = crypto.blob_hash(blob)
    assert (await relay.blobs.put(space.space, BlobPut(1, digest, blob))).hash == digest
    other = await cluster.start(blob_quota=10_000)  # another node serves the same blob
    assert await other.blobs.get(space.space, BlobGet(2, digest)) == BlobData(2, digest, blob)
    refused = await other.blobs.put(space.space, BlobPut(3, crypto.blob_hash(bytes(3000)), bytes(3000)))
    assert getattr(refused, "code", None) == "quota"  # across nodes: 8000 + 4096 > 10000
    assert await other.blobs.usage(space.space) == 8000
    assert not (relay.config.data_dir / "blobs").exists()


# --- sequencing is the database's: two relays on one space -----------------------------------


async def test_the_database_refuses_a_second_commit_on_one_head(cluster: Cluster) -> None:
    a = await cluster.start()
    b = await cluster.start()
    space = SpaceBuilder(a.public_key)
    await join(url_of(a), space, space.creator, create=True)

    def row(payload: bytes) -> EntryRow:
        entry = space.data(space.creator, payload, author_seq=2)
        digest = entry.digest()
        return EntryRow(2, space.creator.public.sign_key, 2, digest, os.urandom(32), entry.raw)

    results = await asyncio.gather(a.store.append(space.space, [row(b"a")], [1], a.head_signer),
                                   b.store.append(space.space, [row(b"b")], [1], b.head_signer),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["HeadMovedError", "list"]
    lost = next(r for r in results if isinstance(r, HeadMovedError))
    assert (lost.expected, lost.found) == (1, 2)
    assert [seq for seq, _ in await _stored_seqs(a, space.space)] == [1, 2]


async def _two_writers(cluster: Cluster) -> tuple[RelayServer, RelayServer, SpaceBuilder, Identity]:
    a = await cluster.start()
    b = await cluster.start()
    space = SpaceBuilder(a.public_key)
    bob = Identity.generate()
    alice = await join(url_of(a), space, space.creator, create=True)
    await alice.submit([space.add_member(bob)])
    await alice.close()
    return a, b, space, bob


async def test_forced_race_the_loser_sequences_again_on_top(cluster: Cluster) -> None:
    a, b, space, bob = await _two_writers(cluster)
    alice = await join(url_of(a), space, space.creator)
    bobm = await join(url_of(b), space, bob)
    # A's commit waits until B has committed at the same seq: A's then extends a head that moved.
    room_a = a.rooms[space.space]
    original = a.store.append
    b_done = asyncio.Event()
    moved: list[HeadMovedError] = []

    async def after_b(*args: object, **kwargs: object) -> list[SignedHead]:
        await b_done.wait()
        try:
            return await original(*args, **kwargs)  # type: ignore[arg-type]
        except HeadMovedError as exc:
            moved.append(exc)
            raise

    a.store.append = after_b  # type: ignore[method-assign]
    from_alice = space.data(space.creator, b"alice on A")
    from_bob = space.data(bob, b"bob on B")
    await alice.send_submit([from_alice])
    await wait_until(lambda: room_a.queued() == 0, "A took alice's submission")
    assert (await bobm.submit([from_bob])).results == [(1, 3)]
    b_done.set()
    ack = await alice.next_ack()
    assert ack.results == [(3, 4)]  # sequenced again, after bob's entry
    assert len(moved) == 1 and (moved[0].expected, moved[0].found) == (2, 3)
    lost = "encspaces_relay_lost_commits_total"  # what an operator watches for contention
    assert (a.metrics.registry.get_sample_value(lost), b.metrics.registry.get_sample_value(lost)) == (1.0, 0.0)
    await alice.sync_to(4)  # alice got bob's entry from A (read back from the database) and her own
    assert [f.entries for f in alice.frames if f.first_seq >= 3] == [[from_bob.raw], [from_alice.raw]]
    stored = await _stored_seqs(a, space.space)
    assert stored == [(1, space.genesis.raw), (2, stored[1][1]), (3, from_bob.raw), (4, from_alice.raw)]
    # bob's relay learns of alice's entry from the database when a connection opens the space
    again = await join(url_of(b), space, bob)
    assert again.seq == 4
    await bobm.sync_to(4)  # and delivers it to bob's live connection too
    assert alice.verifier.head == bobm.verifier.head == again.verifier.head


async def test_a_relay_beaten_too_often_refuses_without_closing(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_log, "COMMIT_ATTEMPTS", 1)
    a, b, space, bob = await _two_writers(cluster)
    alice = await join(url_of(a), space, space.creator)
    bobm = await join(url_of(b), space, bob)
    original = a.store.append
    b_done = asyncio.Event()

    async def after_b(*args: object, **kwargs: object) -> list[SignedHead]:
        await b_done.wait()
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    a.store.append = after_b  # type: ignore[method-assign]
    from_alice = space.data(space.creator, b"alice on A")
    await alice.send_submit([from_alice])
    await wait_until(lambda: a.rooms[space.space].queued() == 0, "A took alice's submission")
    await bobm.submit([space.data(bob, b"bob on B")])
    b_done.set()
    notice = await _next_notice(alice)
    assert notice.code == "contended" and not notice.fatal
    await alice.sync_to(3)  # still connected: bob's entry arrives
    assert (await alice.submit([from_alice])).results == [(3, 4)]  # the resubmission goes through


async def test_concurrent_writers_on_two_relays_never_share_a_seq(cluster: Cluster) -> None:
    a, b, space, bob = await _two_writers(cluster)
    alice = await join(url_of(a), space, space.creator)
    bobm = await join(url_of(b), space, bob)
    n = 15
    alice_entries = [space.data(space.creator, f"a{i}".encode()) for i in range(n)]
    bob_entries = [space.data(bob, f"b{i}".encode()) for i in range(n)]

    async def write(member: Member, entries: list[Entry]) -> None:
        for entry in entries:
            await _submit_resubmitting(member, entry)

    await asyncio.gather(write(alice, alice_entries), write(bobm, bob_entries))
    stored = await _stored_seqs(a, space.space)
    assert [seq for seq, _ in stored] == list(range(1, 2 * n + 3))  # contiguous, one entry per seq
    raws = {raw for _, raw in stored}
    assert {e.raw for e in alice_entries + bob_entries} <= raws
    final = 2 * n + 2
    check_a = await join(url_of(a), space, space.creator)
    check_b = await join(url_of(b), space, bob)
    assert check_a.seq == check_b.seq == final and check_a.verifier.head == check_b.verifier.head


# --- migrate ------------------------------------------------------------------------------------


async def _sqlite_relay_with_data(data: Path) -> tuple[SpaceBuilder, Identity, bytes]:
    relay = RelayServer(RelayConfig(data_dir=data, port=0))
    await relay.start()
    try:
        space = SpaceBuilder(relay.public_key)
        bob = Identity.generate()
        alice = await join(url_of(relay), space, space.creator, create=True)
        await alice.submit([space.add_member(bob)])
        await alice.submit([space.data(space.creator, f"e{i}".encode()) for i in range(5)])
        blob = os.urandom(1000)
        await relay.blobs.put(space.space, BlobPut(1, crypto.blob_hash(blob), blob))
        await alice.close()
    finally:
        await relay.stop()
    return space, bob, blob


async def test_migrate_round_trip(tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    from encspaces_relay.__main__ import main

    data = tmp_path / "relay"
    space, bob, blob = await _sqlite_relay_with_data(data)
    assert await asyncio.to_thread(main, ["migrate", "--data-dir", str(data), "--to", pg_dsn]) == 0
    out = capsys.readouterr().out
    assert "copied 1 spaces, 7 entries, 1 blobs (1000 bytes); every head checked" in out
    relay = RelayServer(RelayConfig(data_dir=data, port=0, store=pg_dsn))  # same key, log now in PostgreSQL
    await relay.start()
    try:
        member = await join(url_of(relay), space, bob)
        assert member.seq == 7
        assert (await member.submit([space.data(bob, b"after migrate")])).results == [(1, 8)]
        digest = crypto.blob_hash(blob)
        assert await relay.blobs.get(space.space, BlobGet(9, digest)) == BlobData(9, digest, blob)
        assert await relay.blobs.usage(space.space) == 4096  # a blob counts at least a block (blobs.charge)
    finally:
        await relay.stop()
    # twice: the database already holds the space, nothing is copied
    assert await asyncio.to_thread(main, ["migrate", "--data-dir", str(data), "--to", pg_dsn]) == 1
    assert "already in" in capsys.readouterr().err


async def test_migrate_reports_a_broken_chain(tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    from encspaces_relay.__main__ import main

    data = tmp_path / "relay"
    await _sqlite_relay_with_data(data)
    with sqlite3.connect(data / DB_FILE) as db:
        db.execute("UPDATE entries SET head = ? WHERE seq = 4", (bytes(32),))
    assert await asyncio.to_thread(main, ["migrate", "--data-dir", str(data), "--to", pg_dsn]) == 1
    err = capsys.readouterr().err
    assert "head at seq 4: computed" in err and "copied 0000000000000000…" in err


# --- PostgreSQL unreachable -----------------------------------------------------------------------


async def test_a_closed_port_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        relay = RelayServer(RelayConfig(data_dir=tmp_path / "r", port=0,
                                        store=f"postgresql://postgres@127.0.0.1:{port}/test"))
        with pytest.raises(StoreUnavailableError, match=f"cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:{port}"):
            await relay.start()


async def test_outage_refuses_acks_nothing_and_recovers_without_restart(tmp_path: Path, pg_dsn: str) -> None:
    from urllib.parse import urlsplit

    target = urlsplit(DSN)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    through = pg_dsn.replace(f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{proxy.port}")
    cluster = Cluster(tmp_path, through)
    try:
        relay = await cluster.start()
        space = SpaceBuilder(relay.public_key)
        alice = await join(url_of(relay), space, space.creator, create=True)
        assert (await alice.submit([space.data(space.creator, b"before")])).results == [(2, 2)]

        await proxy.cut()
        lost = space.data(space.creator, b"during the outage")
        await alice.send_submit([lost])
        refusal = await alice.client.expect_refusal("internal")
        assert "could not store entries (StoreUnavailableError)" in refusal.message
        assert alice.acks[-1].results == [(2, 2)]  # nothing acknowledged for the lost entry
        # a new connection meanwhile is refused with a clear error, the relay keeps running
        client = await RawClient.open(url_of(relay))
        await client.send(make_hello(client.challenge, space.creator, space.space, since_seq=2).encode())
        refused = await client.expect_refusal("internal")
        assert "database is unavailable" in refused.message

        await proxy.start()  # the database is back, on the same port: the same relay serves again
        again = await join(url_of(relay), space, space.creator)
        assert again.seq == 2  # the lost entry was never stored
        assert (await again.submit([lost])).results == [(3, 3)]
        assert [seq for seq, _ in await _stored_seqs(relay, space.space)] == [1, 2, 3]
    finally:
        await cluster.stop()
        await proxy.stop()


async def test_prefix_reads_strip_like_whole_entries(pg_dsn: str) -> None:
    from test_relay_strip import check_prefix_reads

    from encspaces_relay.pg_store import PgStore

    store = await PgStore.open(pg_dsn)
    try:
        await check_prefix_reads(store)
    finally:
        await store.close()


async def test_a_new_device_starts_at_an_anchor_through_another_relay(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Written through one relay, opened through another that loads the space from the database:
    the anchored catch-up reads the log's first bytes from PostgreSQL (docs/PROTOCOL.md section 14)."""
    monkeypatch.setattr(snapshot_keeper, "GRANULARITY", 10)
    first = await cluster.start()
    _, members = await make_members(url_of(first), tmp_path, 2)
    admin = members[0]
    try:
        await admin.set_policy(encspaces.Policy(snapshot_entries=40))
        await write_log(random.Random(4), members, 2 * ANCHOR_GRID + 30)
        await admin.write_snapshot()
        await wait_until(lambda: anchored_record(first.rooms[admin.space_bytes]) is not None,
                         "an agreed snapshot that states its anchor")
        await settle(members)
        second = await cluster.start()
        newcomer = Identity.generate()
        await admin.add_member(newcomer.public)
        added = admin.seq  # (without a bus the second relay learns nothing committed through the first later)
        fresh = await encspaces.connect(url_of(second), newcomer, admin.id, data_dir=tmp_path / "fresh")
        try:
            await fresh.wait_for_seq(added, timeout=60)
            assert fresh.error is None and state(fresh) == state(admin)
            assert any(h.kind == PRUNED for h in await fresh.history(limit=added))
            assert second.rooms[admin.space_bytes].anchor_catch_up is not None
        finally:
            await fresh.close()
    finally:
        for m in members:
            await m.close()
