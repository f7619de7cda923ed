"""``encspaces-relay compact --store postgresql://...``: compaction of a cluster's shared database.

Against the real PostgreSQL (as in test_relay_postgres.py: skipped with one line without a
server, failed under ``CI=true``). The SQLite side is tests/sdk/test_snapshots.py.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

import pytest
from test_relay_postgres import pg_dsn  # noqa: F401  (a fixture)

import encspaces
from encspaces import snapshot_keeper
from encspaces.core.entry import Entry
from encspaces.core.membership import Policy
from encspaces_relay.__main__ import main
from encspaces_relay.keys import KEY_FILE
from encspaces_relay.pg_store import PgStore
from encspaces_relay.store import DB_FILE
from tests.sdk.conftest import make_members, settle
from tests.sdk.test_random_convergence import state
from tests.sdk.test_snapshots import edit_rounds, snapshot_written
from tests.support import RelayHandle


async def _stored(dsn: str) -> list[tuple[int, bytes, bytes]]:
    """Every stored entry: seq, digest column, raw bytes."""
    store = await PgStore.open(dsn, max_connections=1)
    try:
        async with store.connection() as conn:
            rows = await conn.fetch("SELECT seq, digest, raw FROM entries ORDER BY space_id, seq")
    finally:
        await store.close()
    return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]


async def _compact(dsn: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The command as an operator runs it (its own event loop, hence a thread here)."""
    assert await asyncio.to_thread(main, ["compact", "--store", dsn, "--keep-seconds", "0"]) == 0
    return capsys.readouterr().out


async def test_compaction_on_postgresql_strips_what_an_agreed_snapshot_covers_while_the_cluster_serves(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    monkeypatch.setattr(snapshot_keeper, "GRANULARITY", 10)
    relay = RelayHandle(tmp_path / "node0", store=pg_dsn)
    await relay.start()
    second = RelayHandle(tmp_path / "node1", store=pg_dsn)
    rng = random.Random(3)
    try:
        _, members = await make_members(relay.url, tmp_path, 3)
        admin, writer, away = members
        fresh_id = encspaces.Identity.generate()
        try:
            await admin.set_policy(Policy(snapshot_entries=15))
            await edit_rounds(rng, members, 10)
            away_id, away_seq = away.identity, away.seq
            await away.close()  # offline for everything that follows
            await edit_rounds(rng, [admin, writer], 60)
            await snapshot_written(relay, admin)
            await admin.add_member(fresh_id.public)  # a device that joins after the compaction
            await settle([admin, writer])
            expected, space_id = state(admin), admin.id
        finally:
            for m in (admin, writer):
                await m.close()  # nobody writes while the rows are compared; the relay keeps serving
        before = await _stored(pg_dsn)

        out = await _compact(pg_dsn, capsys)

        after = await _stored(pg_dsn)
        stripped = [seq for (seq, _, raw) in after if Entry.decode(raw).stripped]
        assert stripped, "an agreed snapshot covers encrypted bodies: some must go"
        assert f"stripped {len(stripped)} bodies" in out
        freed = sum(len(b[2]) - len(a[2]) for a, b in zip(after, before, strict=True))
        assert freed > 0 and f"{freed} bytes" in out
        assert [(s, d) for s, d, _ in after] == [(s, d) for s, d, _ in before], "same seqs, same digests"
        assert all(Entry.decode(raw).digest() == digest for _, digest, raw in after), "the chain is unchanged"
        assert "stripped 0 bodies" in await _compact(pg_dsn, capsys), "a second run finds nothing left"

        # Another node of the cluster (the operator copied the relay key) loads the compacted space.
        (tmp_path / "node1").mkdir()
        shutil.copy2(tmp_path / "node0" / KEY_FILE, tmp_path / "node1" / KEY_FILE)
        await second.start()
        fresh = await encspaces.connect(second.url, fresh_id, space_id, data_dir=tmp_path / "fresh")
        back = await encspaces.connect(relay.url, away_id, space_id, data_dir=tmp_path / "m2")
        try:
            await fresh.wait_for_seq(len(after))
            await back.wait_for_seq(len(after))
            assert back.seq > away_seq
            assert state(fresh) == expected == state(back)
            assert fresh.error is None and back.error is None
        finally:
            await fresh.close()
            await back.close()
    finally:
        await second.stop()
        await relay.stop()


async def test_compaction_on_postgresql_leaves_spaces_without_an_agreed_snapshot(
    pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    relay = RelayHandle(tmp_path / "node0", store=pg_dsn)
    await relay.start()
    try:
        _, members = await make_members(relay.url, tmp_path, 2)
        try:
            await edit_rounds(random.Random(13), members, 20)
        finally:
            for m in members:
                await m.close()
        before = await _stored(pg_dsn)
        out = await _compact(pg_dsn, capsys)
        assert "no agreed snapshot yet; stripped 0 bodies, 0 bytes" in out
        assert await _stored(pg_dsn) == before
    finally:
        await relay.stop()


def test_compact_names_an_unreachable_database(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compact", "--store", "postgresql://relay:secret@127.0.0.1:1/encspaces", "--keep-seconds", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot reach PostgreSQL at postgresql://relay:***@127.0.0.1:1/encspaces" in err
    assert "secret" not in err


def test_compact_needs_a_data_dir_or_a_postgresql_store(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["compact", "--keep-seconds", "0"])
    assert exited.value.code == 2
    assert "--data-dir is required" in capsys.readouterr().err
    assert main(["compact", "--store", "mysql://x", "--data-dir", "/nonexistent"]) == 1
    assert "--store takes a postgresql:// URL, not 'mysql://x'" in capsys.readouterr().err


async def test_compact_takes_the_store_from_the_relays_config_file(
    pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    relay = RelayHandle(tmp_path / "node0", store=pg_dsn)
    await relay.start()
    try:
        _, members = await make_members(relay.url, tmp_path, 1)
        await members[0].close()
    finally:
        await relay.stop()
    assert not (tmp_path / "node0" / DB_FILE).exists()
    config = tmp_path / "relay.toml"  # the daemon's file: its other keys are ignored by compact
    config.write_text(f'data-dir = "{tmp_path / "node0"}"\nstore = "{pg_dsn}"\nmax-frame = 1048576\n')
    code = await asyncio.to_thread(main, ["compact", "--config", str(config), "--keep-seconds", "0"])
    assert code == 0, capsys.readouterr().err  # the SQLite path would find no database in node0
    assert "no agreed snapshot yet; stripped 0 bodies" in capsys.readouterr().out
