"""A relay restarted on an old backup, or showing two members different histories, is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

import encspaces
from encspaces import errors

from .conftest import RelayHandle, wait_for


async def test_rollback_to_an_old_backup_is_detected_on_reconnect(relay: RelayHandle, tmp_path: Path) -> None:
    alice = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    text = alice.text("doc")
    text.insert(0, "before backup. ")
    await alice.sync()
    await relay.back_up(tmp_path / "backup")
    await wait_for(lambda: alice.connected, what="alice to reconnect")
    text.insert(len(text), "after backup.")
    await alice.sync()
    verified = alice.seq
    await relay.restart_on(tmp_path / "backup")  # alice reconnects by herself
    await wait_for(lambda: alice.error is not None, what="alice to detect the rollback")
    assert isinstance(alice.error, errors.RollbackError)
    assert f"already signed seq {verified}" in str(alice.error)
    assert str(text) == "before backup. after backup."
    with pytest.raises(errors.RollbackError):
        await alice.sync()
    await alice.close()


async def test_forked_history_is_detected(relay: RelayHandle, tmp_path: Path) -> None:
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice = await encspaces.create_space(relay.url, alice_id, data_dir=tmp_path / "a")
    await alice.add_member(bob_id.public)
    alice.text("doc").insert(0, "common. ")
    await alice.sync()
    space_id = alice.id
    await relay.back_up(tmp_path / "backup")
    await wait_for(lambda: alice.connected, what="alice to reconnect")
    alice.text("doc").insert(0, "only alice saw this. ")
    await alice.sync()
    alice_seq = alice.seq
    await alice.close()

    await relay.restart_on(tmp_path / "backup")
    # Bob only ever sees the restored relay, and writes past Alice's seq: another history.
    async with encspaces.connect(relay.url, bob_id, space_id, data_dir=tmp_path / "b") as bob:
        for i in range(3):
            bob.text("doc").insert(0, f"bob {i}. ")
            await bob.sync()
        assert bob.seq > alice_seq

    again = await encspaces.connect(relay.url, alice_id, space_id, data_dir=tmp_path / "a")
    try:
        await wait_for(lambda: again.error is not None, what="alice to detect the fork")
        assert isinstance(again.error, errors.ForkError)
        assert f"seq {alice_seq}" in str(again.error)
        assert "bob" not in str(again.text("doc"))
        with pytest.raises(errors.ForkError):
            again.text("doc").insert(0, "x")
    finally:
        await again.close()
