"""The daemon as an operator runs it: the data-dir lock, JSON logs, env config, backup and restore."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

from relay_kit import WAIT, SpaceBuilder, join

from encspaces.core.identity import parse_member_id
from encspaces_relay.process import RelayProcess

RELAY_BIN = Path(sys.executable).parent / "encspaces-relay"


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(str(RELAY_BIN), *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    async with asyncio.timeout(WAIT * 4):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_second_relay_on_a_data_dir_exits_with_a_clear_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = RelayProcess(data)
    await first.start()
    try:
        code, out, err = await _run("--port", "0", "--data-dir", str(data))
        assert code == 3, (out, err)
        assert f"the data dir {data} is in use by another relay (pid {first.pid})" in err
        assert "listening" not in out
    finally:
        assert await first.kill() < 0
    again = RelayProcess(data)  # SIGKILL released the lock: a restart is not blocked
    await again.start()
    await again.stop()


async def test_json_logs_and_settings_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "ENCSPACES_RELAY_DATA_DIR": str(tmp_path / "data"), "ENCSPACES_RELAY_PORT": "0",
           "ENCSPACES_RELAY_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(str(RELAY_BIN), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    async with asyncio.timeout(WAIT):
        key = parse_member_id((await proc.stdout.readline()).decode().split(": ", 1)[1])
        url = (await proc.stdout.readline()).decode().split(" on ", 1)[1].strip()
    space = SpaceBuilder(key)
    alice = await join(url, space, space.creator, create=True)
    await alice.close()
    proc.terminate()
    async with asyncio.timeout(WAIT):
        err = (await proc.stderr.read()).decode()
        assert await proc.wait() == 0
    lines = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    admitted = [line for line in lines if "admitted" in line["message"]]
    assert admitted and admitted[0]["peer"].startswith("conn#") and admitted[0]["space"]
    closed = [line for line in lines if line.get("close_code") == 1000]
    assert closed and closed[0]["level"] == "INFO"


async def test_backup_while_a_client_writes_restores_to_a_relay_that_serves_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    relay = RelayProcess(data)
    await relay.start()
    try:
        space = SpaceBuilder(parse_member_id(relay.public_key))
        alice = await join(relay.url, space, space.creator, create=True)
        blob_dir = data / "blobs" / space.space.hex()
        blob_dir.mkdir(parents=True)
        (blob_dir / ("ab" * 32)).write_bytes(b"an encrypted chunk")
        (blob_dir / ".tmp-half").write_bytes(b"a chunk being written")

        writing = True

        async def write() -> int:
            rounds = 0
            while writing or rounds < 3:
                await alice.submit([space.data(space.creator, f"{rounds}.{i}".encode()) for i in range(10)])
                rounds += 1
            return rounds

        writer = asyncio.create_task(write())
        await asyncio.sleep(0)  # the writer is writing
        code, out, err = await _run("backup", "--data-dir", str(data), "--out", str(tmp_path / "backup"))
        writing = False
        await writer
        assert code == 0, err
        assert out.startswith("backed up 1 spaces") and "1 file chunks (18 bytes)" in out
        code, _, err = await _run("backup", "--data-dir", str(data), "--out", str(tmp_path / "backup"))
        assert code == 1 and "already exists" in err
        await alice.close()
    finally:
        await relay.stop()

    backup = tmp_path / "backup"
    assert sorted(p.name for p in backup.iterdir()) == ["blobs", "relay.key", "relay.sqlite3"]
    assert (backup / "relay.key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (backup / "blobs" / space.space.hex()).iterdir()) == ["ab" * 32]
    with sqlite3.connect(backup / "relay.sqlite3") as db:
        backed_up = int(db.execute("SELECT max(seq) FROM entries").fetchone()[0])
    assert backed_up >= 1

    restored = tmp_path / "restored"
    shutil.copytree(backup, restored)
    again = RelayProcess(restored)
    await again.start()
    try:
        assert again.public_key == relay.public_key  # the same key: clients' pinned genesis still holds
        fresh = await join(again.url, space, space.creator)  # from seq 0, every entry verified
        assert fresh.seq == backed_up
        await fresh.close()
    finally:
        await again.stop()
