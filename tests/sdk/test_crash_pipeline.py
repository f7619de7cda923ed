"""kill -9 at every step of the write pipeline: a flushed edit is in the log exactly once.

The child process edits, flushes (printing which edits ``flush()`` confirmed) and syncs, and
kills itself with SIGKILL at the step named by ENCSPACES_CRASH_AT (encspaces/faults.py). The
test then reopens the device, writes again at once (before any catch-up, so a reused
author_seq would collide), syncs, and checks both members agree and hold every confirmed
edit exactly once, with no error on either side.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import textwrap
from pathlib import Path

import msgpack
import pytest

import encspaces
from encspaces import faults
from encspaces.store import SESSIONS_META, STORE_FILE

from .conftest import RelayHandle, space_for_a_child, start_child

EDITS = 4

CHILD = textwrap.dedent(
    """
    EDITS = {edits}
    import asyncio, sys
    import encspaces

    async def main():
        url, identity_file, space_id, data_dir = sys.argv[1:5]
        identity = encspaces.Identity.load(identity_file)
        space = await encspaces.connect(url, identity, space_id, data_dir=data_dir)
        while not space.connected:
            await asyncio.sleep(0.01)
        print("LIVE", flush=True)
        for i in range(EDITS):
            text = space.text("doc")
            text.insert(len(str(text)), f"<{i}>")
            await space.flush()
            print(f"FLUSHED {i}", flush=True)
            await space.sync()
        print("DONE", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
).replace("{edits}", str(EDITS))

POINTS = [f"{step}:{n}" for step in faults.STEPS for n in (1, 2)]


@pytest.mark.parametrize("crash_at", POINTS)
async def test_kill_9_at_every_step_converges(relay: RelayHandle, tmp_path: Path, crash_at: str) -> None:
    alice_id, bob_id, space_id = await space_for_a_child(relay.url, tmp_path)
    child = await start_child(CHILD, relay.url, tmp_path, space_id, {faults.ENV: crash_at})
    assert child.stdout is not None
    lines = []
    while True:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        if not line or line.strip() == b"DONE":
            break
        lines.append(line.decode().strip())
    if child.returncode is None and line.strip() == b"DONE":
        os.kill(child.pid, signal.SIGKILL)  # the step was never reached this many times
    assert await child.wait() == -signal.SIGKILL
    confirmed = [f"<{line.split()[1]}>" for line in lines if line.startswith("FLUSHED")]

    async with encspaces.connect(relay.url, alice_id, space_id, data_dir=tmp_path / "a") as again:
        text = again.text("doc")
        text.insert(len(str(text)), "<after>")  # before any catch-up: takes the next author_seq at once
        await again.flush()
        await again.sync()
        async with encspaces.connect(relay.url, bob_id, space_id, data_dir=tmp_path / "b") as bob:
            await bob.wait_for_seq(again.seq)
            await again.wait_for_seq(bob.seq)
            assert again.error is None and bob.error is None
            assert again.device_in_use is None  # an edit of ours that left before its write is still ours
            mine, theirs = str(again.text("doc")), str(bob.text("doc"))
            assert mine == theirs, f"diverged after a crash at {crash_at}: {mine!r} vs {theirs!r}"
            for marker in confirmed:
                assert mine.count(marker) == 1, f"{marker}, confirmed by flush(), in {mine!r}"
            for i in range(EDITS):
                assert mine.count(f"<{i}>") <= 1
            assert mine.count("<after>") == 1
            assert again.unsent == 0


HELD_WRITE = textwrap.dedent(
    """
    import asyncio, sys
    import encspaces
    from encspaces.store import LocalStore

    async def main():
        url, identity_file, space_id, data_dir = sys.argv[1:5]
        identity = encspaces.Identity.load(identity_file)
        space = await encspaces.connect(url, identity, space_id, data_dir=data_dir)
        await space.flush()  # this session's first write, with its nonce
        write = LocalStore.write

        async def held(self, **changes):
            if changes.get("outbox_add"):
                await asyncio.sleep(3600)  # the write that would store our edit never commits
            return await write(self, **changes)

        LocalStore.write = held
        space.text("doc").insert(0, "<sent, never stored>")
        await space.sync()  # the relay logged it all the same: an edit goes ahead of its write
        print("SYNCED", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_an_edit_the_relay_took_but_a_crash_kept_from_the_store_comes_back_as_our_own(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    alice_id, bob_id, space_id = await space_for_a_child(relay.url, tmp_path)
    child = await start_child(HELD_WRITE, relay.url, tmp_path, space_id, stderr=True)
    assert child.stdout is not None and child.stderr is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 15)
    except TimeoutError:
        line = b""
    child.kill()
    await child.wait()
    assert line.strip() == b"SYNCED", (await child.stderr.read()).decode()[-3000:]

    async with encspaces.connect(relay.url, alice_id, space_id, data_dir=tmp_path / "a") as again:
        assert "<sent" not in str(again.text("doc"))  # the store never had it
        again.text("doc").insert(0, "<after>")  # before any catch-up: numbered like the lost edit
        await again.flush()
        await again.sync()
        async with encspaces.connect(relay.url, bob_id, space_id, data_dir=tmp_path / "b") as bob:
            await bob.wait_for_seq(again.seq)
            mine, theirs = str(again.text("doc")), str(bob.text("doc"))
            assert mine == theirs and mine.count("<sent, never stored>") == 1 and mine.count("<after>") == 1
            # Our own edit, known by its session's nonce: not taken for another machine with our key.
            assert again.device_in_use is None and again.error is None and bob.error is None
            assert again.unsent == 0


async def test_every_session_s_nonce_is_kept_and_a_damaged_list_is_a_store_error(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    identity = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, identity, data_dir=tmp_path / "a")
    space_id, folder = space.id, space.space_bytes.hex()
    await space.close()
    for _ in range(2):
        async with encspaces.connect(relay.url, identity, space_id, data_dir=tmp_path / "a"):
            pass
    store = tmp_path / "a" / folder / STORE_FILE
    with sqlite3.connect(store) as db:
        (stored,) = db.execute("SELECT value FROM meta WHERE key = ?", (SESSIONS_META,)).fetchone()
    nonces = msgpack.unpackb(stored)
    assert len(nonces) == 3 and len(set(nonces)) == 3 and all(len(n) == 8 for n in nonces)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (b"\x91\xc4\x03abc", SESSIONS_META))
    db.close()
    with pytest.raises(encspaces.errors.StoreError, match="sessions do not decode"):
        await encspaces.connect(relay.url, identity, space_id, data_dir=tmp_path / "a")
