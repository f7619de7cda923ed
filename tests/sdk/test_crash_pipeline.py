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
import sys
import textwrap
from pathlib import Path

import pytest

import encspaces
from encspaces import faults

from .conftest import RelayHandle

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
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice_id.save(tmp_path / "alice.key")
    alice = await encspaces.create_space(relay.url, alice_id, data_dir=tmp_path / "a")
    await alice.add_member(bob_id.public)
    space_id = alice.id
    await alice.close()

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, faults.ENV: crash_at}
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), relay.url, str(tmp_path / "alice.key"), space_id, str(tmp_path / "a"),
        stdout=asyncio.subprocess.PIPE, env=env,
    )
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
            mine, theirs = str(again.text("doc")), str(bob.text("doc"))
            assert mine == theirs, f"diverged after a crash at {crash_at}: {mine!r} vs {theirs!r}"
            for marker in confirmed:
                assert mine.count(marker) == 1, f"{marker}, confirmed by flush(), in {mine!r}"
            for i in range(EDITS):
                assert mine.count(f"<{i}>") <= 1
            assert mine.count("<after>") == 1
            assert again.unsent == 0
