"""A member who joined through an invite link keeps a usable data dir even if killed before closing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core.entry import Kind
from encspaces.space import INVITE_META
from encspaces.store import STORE_FILE
from encspaces_relay.room import Submission
from tests.support import InterceptingRelay, RelayFactory, swallow

from .conftest import RelayHandle, wait_for

JOINER = textwrap.dedent(
    """
    import asyncio, sys
    import encspaces

    async def main():
        link, identity_file, data_dir = sys.argv[1:4]
        identity = encspaces.Identity.load(identity_file)
        space = await encspaces.join(link, identity, data_dir=data_dir)
        print("JOINED", space.id, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_a_joiner_killed_after_join_reopens_its_data_dir(relay: RelayHandle, tmp_path: Path) -> None:
    admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "admin")
    try:
        admin.text("doc").insert(0, "before the invite")
        await admin.sync()
        link = await admin.create_invite(role="writer")
        joiner = encspaces.Identity.generate()
        joiner.save(tmp_path / "joiner.key")
        script = tmp_path / "joiner.py"
        script.write_text(JOINER)
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(script), link, str(tmp_path / "joiner.key"), str(tmp_path / "j"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.split()[0] == b"JOINED"
        os.kill(child.pid, signal.SIGKILL)  # no clean close: no checkpoint written at close
        assert await child.wait() == -signal.SIGKILL

        async with encspaces.connect(relay.url, joiner, admin.id, data_dir=tmp_path / "j") as again:
            assert again.error is None
            assert str(again.text("doc")) == "before the invite"
            again.text("doc").insert(0, "back: ")
            await asyncio.wait_for(again.sync(), 30)
            await admin.wait_for_seq(again.seq)
            assert str(admin.text("doc")) == "back: before the invite"
    finally:
        await admin.close()


async def test_a_member_without_the_epoch_key_fails_instead_of_losing_writes(
    relay: RelayHandle, tmp_path: Path
) -> None:
    """A device that holds no key for the current epoch cannot write: it says so, it takes no edit."""
    admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "admin")
    bob, data_dir = encspaces.Identity.generate(), tmp_path / "bob"
    try:
        admin.text("doc").insert(0, "sealed")
        link = await admin.create_invite(role="writer")
        async with await encspaces.join(link, bob, data_dir=data_dir) as joined:
            assert str(joined.text("doc")) == "sealed"
        # The device loses what opens the keys sealed to the invite (its secret, and the checkpoint
        # that holds the keys), as a damaged store or one restored from an older copy would.
        with sqlite3.connect(data_dir / admin.space_bytes.hex() / STORE_FILE) as db:
            db.execute("DELETE FROM checkpoint")
            db.execute("DELETE FROM meta WHERE key = ?", (INVITE_META,))
        db.close()
        space = await encspaces.connect(relay.url, bob, admin.id, data_dir=data_dir)
        try:
            assert 1 not in space.epoch_keys and bob.member_id in space.members
            with pytest.raises(errors.EpochKeyMissingError, match=f"epoch {space.epoch}"):
                space.text("doc").insert(0, "lost?")
            assert isinstance(space.error, errors.EpochKeyMissingError)
            with pytest.raises(errors.EpochKeyMissingError):
                await space.sync()
            assert f"epoch {space.epoch}" in str(space.error)
            assert str(space.text("doc")) == ""
        finally:
            await space.close()
    finally:
        await admin.close()


@pytest.mark.parametrize("reopen", ["connect", "join"])
async def test_a_join_interrupted_after_its_entry_was_queued_finishes_on_reopening(
    make_relay: RelayFactory, tmp_path: Path, reopen: str
) -> None:
    relay = await make_relay(InterceptingRelay)
    server = relay.server
    assert isinstance(server, InterceptingRelay)
    admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "admin")
    try:
        admin.text("doc").insert(0, "before the invite")
        await admin.sync()
        link = await admin.create_invite(role="writer")
        before_join = admin.seq

        joiner, lost = encspaces.Identity.generate(), list[Submission]()
        server.intercept = swallow(joiner.public.sign_key, lost)  # the join entry never reaches the log
        joining = asyncio.create_task(encspaces.join(link, joiner, data_dir=tmp_path / "j"))
        await wait_for(lambda: len(lost) == 1, what="the join entry to be stored and sent")
        assert [e.header.kind for e in lost[0].entries] == [Kind.JOIN]
        joining.cancel()  # the joining program stops here: its entry stays in the stored outbox
        with pytest.raises(asyncio.CancelledError):
            await joining
        server.intercept = None

        if reopen == "connect":
            opening = encspaces.connect(relay.url, joiner, admin.id, data_dir=tmp_path / "j")
        else:  # the same link again: the queued join entry is resent, not a second one made
            opening = encspaces.join(link, joiner, data_dir=tmp_path / "j", timeout=30)
        async with await opening as again:
            await again.wait_for_seq(before_join + 1, timeout=30)  # its own join entry, resent from the outbox
            assert again.error is None and joiner.member_id in again.members
            again.text("doc").insert(0, "joined: ")
            await again.sync(timeout=30)
        await admin.wait_for_seq(again.seq, timeout=30)
        assert str(admin.text("doc")) == "joined: before the invite"
    finally:
        await admin.close()
