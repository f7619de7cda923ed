"""The daemon as a real process: acked entries survive kill -9, SIGTERM shuts down cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from relay_kit import WAIT, SpaceBuilder, join

from encspaces.core.identity import Identity, parse_member_id

RELAY_BIN = Path(sys.executable).parent / "encspaces-relay"


class RelayProcess:
    def __init__(self, proc: asyncio.subprocess.Process, public_key: bytes, url: str) -> None:
        self.proc = proc
        self.public_key = public_key
        self.url = url

    @classmethod
    async def start(cls, data_dir: Path, log: Path) -> RelayProcess:
        with log.open("ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                str(RELAY_BIN), "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir),
                stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            key_line = (await proc.stdout.readline()).decode()
            url_line = (await proc.stdout.readline()).decode()
        assert key_line.startswith("relay public key: "), key_line
        assert url_line.startswith("listening on ws://127.0.0.1:"), url_line
        return cls(proc, parse_member_id(key_line.split(": ", 1)[1]), url_line.split(" on ", 1)[1].strip())

    async def wait(self) -> int:
        async with asyncio.timeout(WAIT):
            return await self.proc.wait()


@pytest.fixture
async def processes() -> AsyncIterator[list[RelayProcess]]:
    started: list[RelayProcess] = []
    yield started
    for relay in started:
        if relay.proc.returncode is None:
            relay.proc.kill()
            await relay.proc.wait()


async def test_acked_entries_survive_kill_9(tmp_path: Path, processes: list[RelayProcess]) -> None:
    data = tmp_path / "data"
    relay = await RelayProcess.start(data, tmp_path / "relay.log")
    processes.append(relay)
    assert (data / "relay.key").stat().st_mode & 0o777 == 0o600
    space = SpaceBuilder(relay.public_key)
    bob = Identity.generate()
    alice = await join(relay.url, space, space.creator, create=True)
    await alice.submit([space.add_member(bob)])
    writer = await join(relay.url, space, bob)
    sent = {}
    for round_ in range(5):  # pipelined: five submits in flight, then their acks
        batch = [space.data(bob, f"{round_}.{i}".encode()) for i in range(20)]
        sent.update({e.header.author_seq: e.raw for e in batch})
        await writer.send_submit(batch)
    acked = {}
    for _ in range(5):
        acked.update(dict((await writer.next_ack()).results))
    relay.proc.kill()  # SIGKILL, right after the last ack
    assert await relay.wait() == -signal.SIGKILL

    again = await RelayProcess.start(data, tmp_path / "relay.log")
    processes.append(again)
    assert again.public_key == relay.public_key
    fresh = await join(again.url, space, space.creator)  # from seq 0, through LogVerifier
    assert fresh.seq == max(acked.values())
    stored = {seq: raw for f in fresh.frames for seq, raw in enumerate(f.entries, f.first_seq)}
    for author_seq, seq in acked.items():
        assert stored[seq] == sent[author_seq]
    # and the relay keeps sequencing where it left off
    ack = await writer_again(again.url, space, bob)
    assert ack == fresh.seq + 1


async def writer_again(url: str, space: SpaceBuilder, bob: Identity) -> int:
    member = await join(url, space, bob)
    ack = await member.submit([space.data(bob, b"after restart")])
    await member.close()
    return ack.results[0][1]


async def test_sigterm_exits_cleanly(tmp_path: Path, processes: list[RelayProcess]) -> None:
    relay = await RelayProcess.start(tmp_path / "data", tmp_path / "relay.log")
    processes.append(relay)
    space = SpaceBuilder(relay.public_key)
    alice = await join(relay.url, space, space.creator, create=True)
    await alice.submit([space.data(space.creator)])
    relay.proc.send_signal(signal.SIGTERM)
    assert await relay.wait() == 0
    await alice.client.expect_closed()
    assert alice.client.ws.close_code == 1001
    log = (tmp_path / "relay.log").read_text()
    assert "relay stopped" in log and "Traceback" not in log
