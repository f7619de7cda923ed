"""Offline-first: the local store opens without a network, keeps every edit, and survives kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path

import pytest

import encspaces
from encspaces.core.verifier import LogVerifier

from .conftest import RelayHandle, settle, space_for_a_child, start_child

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    import encspaces

    async def main():
        url, identity_file, space_id, data_dir = sys.argv[1:5]
        identity = encspaces.Identity.load(identity_file)
        space = await encspaces.connect(url, identity, space_id, data_dir=data_dir)
        space.text("doc").insert(0, "written offline, flushed, then killed. ")
        await space.flush()
        print("FLUSHED", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_flushed_edit_survives_kill_9_and_reaches_the_relay(relay: RelayHandle, tmp_path: Path) -> None:
    alice_id, bob_id, space_id = await space_for_a_child(relay.url, tmp_path)
    await relay.stop()  # the child can only keep its edit on disk
    child = await start_child(CHILD, relay.url, tmp_path, space_id)
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 60)
    assert line.strip() == b"FLUSHED"
    os.kill(child.pid, signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL

    await relay.start()
    async with encspaces.connect(relay.url, alice_id, space_id, data_dir=tmp_path / "a") as again:
        assert str(again.text("doc")) == "written offline, flushed, then killed. "
        await again.sync()
    async with encspaces.connect(relay.url, bob_id, space_id, data_dir=tmp_path / "b") as bob:
        assert str(bob.text("doc")) == "written offline, flushed, then killed. "


async def test_opens_and_edits_without_network(relay: RelayHandle, tmp_path: Path) -> None:
    ident = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, ident, data_dir=tmp_path / "a")
    space.text("doc").insert(0, "online. ")
    await space.sync()
    space_id = space.id
    await space.close()
    await relay.stop()
    async with encspaces.connect(relay.url, ident, space_id, data_dir=tmp_path / "a") as offline:
        assert not offline.connected
        assert str(offline.text("doc")) == "online. "
        offline.text("doc").insert(8, "offline.")
        await offline.flush()
        assert offline.unsent == 1
    await relay.start()
    async with encspaces.connect(relay.url, ident, space_id, data_dir=tmp_path / "a") as online:
        await online.sync()
        assert online.unsent == 0
        assert str(online.text("doc")) == "online. offline."


async def test_reopen_starts_from_the_checkpoint(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = encspaces.SpaceOptions(checkpoint_every=20)
    ident, friend = encspaces.Identity.generate(), encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, ident, data_dir=tmp_path / "a", options=options)
    await space.add_member(friend.public)
    other = await encspaces.connect(relay.url, friend, space.id, data_dir=tmp_path / "f", options=options)
    for i in range(60):
        (space if i % 2 else other).text("doc").insert(0, f"{i},")
        await (space if i % 2 else other).sync()
    await settle([space, other])
    await other.close()
    expected, seq, space_id = str(space.text("doc")), space.seq, space.id
    await space.close()

    replayed: list[int] = []
    original = LogVerifier.replay_stored

    def counting(self: LogVerifier, rows: list[tuple[int, bytes, bytes]]) -> list[object]:
        replayed.append(len(rows))
        return original(self, rows)  # type: ignore[return-value]

    monkeypatch.setattr(LogVerifier, "replay_stored", counting)
    await relay.stop()
    async with encspaces.connect(relay.url, ident, space_id, data_dir=tmp_path / "a") as again:
        assert str(again.text("doc")) == expected
        assert again.seq == seq
        assert sum(replayed) == 0, "close wrote a checkpoint at the newest seq: nothing to replay"
        assert set(again.members) == {ident.member_id, friend.member_id}
    await relay.start()
    async with encspaces.connect(relay.url, friend, space_id, data_dir=tmp_path / "f") as friend_again:
        assert sum(replayed) < seq
        await friend_again.wait_for_seq(seq)
        friend_again.text("doc").insert(0, "after reopen,")
        await friend_again.sync()
        assert str(friend_again.text("doc")) == "after reopen," + expected
