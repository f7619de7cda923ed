"""Received entries wait in memory for company (persistence.RECEIVED_WRITE_DELAY); the rest does not.

A reader's log rows and relay heads are written several frames to a transaction; our own
entries, and anything else urgent, are written at once and take the held rows along; close
writes what is held; and a kill of the process takes back at most the held rows, which the
device fetches again. The delay is set to an hour here, so that "held" does not depend on
timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import encspaces
from encspaces import persistence
from encspaces.store import LocalStore

from .conftest import RelayHandle, make_members


@dataclass
class Write:
    path: Path
    log: list[int]
    outbox: int


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Write]]:
    """Every LocalStore.write in this process: which store, which log seqs, how many outbox rows."""
    seen: list[Write] = []
    original = LocalStore.write

    async def write(self: LocalStore, **kwargs: Any) -> None:
        log, outbox = list(kwargs.get("log", ())), list(kwargs.get("outbox_add", ()))
        seen.append(Write(self.path, [seq for seq, _, _ in log], len(outbox)))
        await original(self, **{**kwargs, "log": log, "outbox_add": outbox})

    monkeypatch.setattr(persistence, "RECEIVED_WRITE_DELAY", 3600.0)
    monkeypatch.setattr(LocalStore, "write", write)
    yield seen


def stored_by(writes: list[Write], data_dir: Path) -> list[Write]:
    return [w for w in writes if w.path.parent.parent == data_dir]


async def test_received_frames_share_one_transaction_written_at_close(
    relay: RelayHandle, tmp_path: Path, writes: list[Write]
) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        await bob.wait_for_seq(alice.seq)
        start = alice.seq
        seen = len(stored_by(writes, tmp_path / "m1"))
        for i in range(5):  # five frames, one entry each
            alice.text("doc").insert(0, f"{i} ")
            await alice.sync()
        await bob.wait_for_seq(alice.seq)
        assert [w for w in stored_by(writes, tmp_path / "m1")[seen:] if w.log] == [], "received rows wait for company"
    finally:
        await bob.close()
        await alice.close()
    received = [seq for w in stored_by(writes, tmp_path / "m1")[seen:] for seq in w.log]
    assert received == list(range(start + 1, start + 6))
    assert len([w for w in stored_by(writes, tmp_path / "m1")[seen:] if w.log]) == 1, "all five in one transaction"
    async with await LocalStore.open(tmp_path / "m1", bob.space_bytes.hex()) as store:
        assert [seq for seq, _, _ in await store.load_log()][-5:] == received


async def test_an_own_edit_is_written_at_once_and_takes_the_held_rows_along(
    relay: RelayHandle, tmp_path: Path, writes: list[Write]
) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        await bob.wait_for_seq(alice.seq)
        alice.text("doc").insert(0, "hello ")
        await alice.sync()
        await bob.wait_for_seq(alice.seq)
        held = alice.seq
        seen = len(stored_by(writes, tmp_path / "m1"))
        bob.text("doc").insert(0, "mine ")
        await asyncio.wait_for(bob.sync(), 30)  # sent, so stored: the delay did not hold it
        outbox_write = next(w for w in stored_by(writes, tmp_path / "m1")[seen:] if w.outbox)
        assert held in outbox_write.log, "the edit's transaction carried the received rows before it"
    finally:
        await bob.close()
        await alice.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import encspaces
    from encspaces import persistence

    persistence.RECEIVED_WRITE_DELAY = 3600.0

    async def main():
        url, identity_file, space_id, data_dir = sys.argv[1:5]
        identity = encspaces.Identity.load(identity_file)
        space = await encspaces.connect(url, identity, space_id, data_dir=data_dir)
        while not space.connected:
            await asyncio.sleep(0.01)
        print(f"LIVE {space.seq}", flush=True)
        loop = asyncio.get_running_loop()
        target = int(await loop.run_in_executor(None, sys.stdin.readline))
        await space.wait_for_seq(target)
        space.text("doc").insert(0, "<bob>")
        await space.sync()
        print(f"EDITED {space.seq}", flush=True)
        target = int(await loop.run_in_executor(None, sys.stdin.readline))
        await space.wait_for_seq(target)
        print("SEEN", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_a_kill_takes_back_only_held_received_rows_and_the_device_catches_up(
    relay: RelayHandle, tmp_path: Path
) -> None:
    (_, bob_id), (alice, bob) = await make_members(relay.url, tmp_path, 2)
    bob_id.save(tmp_path / "bob.key")
    await bob.close()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), relay.url, str(tmp_path / "bob.key"), alice.id, str(tmp_path / "m1"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=dict(os.environ),
    )
    assert child.stdin is not None and child.stdout is not None

    async def line() -> str:
        assert child.stdout is not None
        return (await asyncio.wait_for(child.stdout.readline(), 60)).decode().strip()

    async def alice_types(n: int) -> None:
        for i in range(n):
            alice.text("doc").insert(0, f"<a{i}>")
            await alice.sync()
        assert child.stdin is not None
        child.stdin.write(f"{alice.seq}\n".encode())
        await child.stdin.drain()

    try:
        assert (await line()).startswith("LIVE")
        await alice_types(3)
        edited = int((await line()).split()[1])  # the child's edit is in the log at this seq
        await alice_types(3)
        assert await line() == "SEEN"
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    async with await LocalStore.open(tmp_path / "m1", alice.space_bytes.hex()) as store:
        stored = [seq for seq, _, _ in await store.load_log()]
        outbox = await store.load_outbox()
    # What the edit's write took along is there; what arrived after it was held, and is gone.
    assert stored == list(range(1, stored[-1] + 1)) and edited - 1 <= stored[-1] < alice.seq
    # The edit's clean-up was held with its row: the edit is sent again, and the relay answers with its seq.
    assert len(outbox) == 1
    try:
        async with encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "m1") as again:
            await again.wait_for_seq(alice.seq)
            await again.sync()
            assert again.error is None and again.unsent == 0
            assert str(again.text("doc")) == str(alice.text("doc"))
            assert str(again.text("doc")).count("<bob>") == 1
    finally:
        await alice.close()
