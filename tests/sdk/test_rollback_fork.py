"""A relay restarted on an old backup, or showing two members different histories, is caught."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core import crypto
from encspaces.core.entry import Entry
from encspaces.core.head import SignedHead, next_head
from encspaces.core.messages import Entries
from encspaces_relay.room import Submission
from encspaces_relay.server import RelayServer
from tests.support import InterceptingRelay, assert_fork_at, swallow

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


class RestoredRelay(InterceptingRelay):
    """The real relay; ``intercept`` is a class attribute so that it holds across a restart."""


async def test_an_acked_edit_withheld_then_lost_to_a_restore_is_caught_as_a_fork(tmp_path: Path) -> None:
    """Withholding plus rollback across a reconnect: the relay acks Alice's edit (its signed head
    at seq s+1) but withholds the frame from her, is restored from a backup taken before it, and
    Bob's edit takes seq s+1 there. Alice's reconnect shows nothing wrong (the welcome is at her
    seq), but the log she then receives contradicts the head the relay signed in her ack."""
    handle = RelayHandle(tmp_path / "relay", RestoredRelay)
    server = await handle.start()
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice = await encspaces.create_space(handle.url, alice_id, data_dir=tmp_path / "a")
    try:
        await alice.add_member(bob_id.public)
        alice.text("doc").insert(0, "common. ")
        await alice.sync()
        await handle.back_up(tmp_path / "backup")
        await wait_for(lambda: alice.connected, what="alice to reconnect")
        seq = alice.seq
        server = handle.server
        assert server is not None
        room = server.rooms[alice.space_bytes]
        (peer,) = [p for p in room.subscribers.values() if p.member == alice_id.public.sign_key]
        room.unsubscribe(peer)  # her frames are withheld from here; her acks still reach her
        alice.text("doc").insert(8, "acked, then lost. ")
        await wait_for(lambda: room.state.seq == seq + 1, what="the relay to sequence (and ack) alice's edit")
        swallowed: list[Submission] = []
        RestoredRelay.intercept = staticmethod(swallow(alice_id.public.sign_key, swallowed))  # type: ignore[assignment]
        await handle.restart_on(tmp_path / "backup")  # alice reconnects; what she sends again is dropped
        async with encspaces.connect(handle.url, bob_id, alice.id, data_dir=tmp_path / "b") as bob:
            bob.text("doc").insert(0, "bob. ")
            try:
                await bob.sync()
            except errors.ForkError as exc:
                # Alice's presence may reach Bob first: it shows the head from her ack, at the
                # seq where Bob just verified his own edit, and he sees the fork too (a race).
                assert f"at seq {seq + 1} for member {alice_id.public.member_id}" in str(exc), exc
            assert bob.seq == seq + 1
        await wait_for(lambda: alice.error is not None, what="alice to see the two histories")
        assert_fork_at(alice.error, seq + 1, "ack")
        assert alice.seq == seq and "bob" not in str(alice.text("doc"))
    finally:
        RestoredRelay.intercept = None
        await alice.close()
        await handle.stop()


class LyingWelcomeRelay(RelayServer):
    """Welcomes a returning device without the signed head at its seq (the anchor) when
    ``drop_anchor``, and serves a new device a log whose seq 1 is not the genesis when
    ``replace_genesis`` (both class attributes: they hold across a restart)."""

    drop_anchor = False
    replace_genesis = False

    def encode_welcome(self, space: bytes, head: SignedHead, anchor: SignedHead | None) -> bytes:
        return super().encode_welcome(space, head, None if self.drop_anchor else anchor)

    def frames_for_entries(self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
                           ) -> Sequence[bytes]:
        if not self.replace_genesis or first_seq != 1 or len(entries) < 2:
            return super().frames_for_entries(space, first_seq, entries, head)
        lie = entries[1:]  # the log from seq 2 on, moved to seq 1 and re-signed over the new chain
        h = crypto.ZERO_HASH
        for i, raw in enumerate(lie):
            h = next_head(h, 1 + i, Entry.decode(raw).digest())
        return [Entries(1, lie, SignedHead.create(self.signing_key, space, len(lie), h)).encode()]


async def test_a_welcome_without_the_anchor_is_refused(tmp_path: Path) -> None:
    handle = RelayHandle(tmp_path / "relay", LyingWelcomeRelay)
    await handle.start()
    alice = await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    try:
        alice.text("doc").insert(0, "kept. ")
        await alice.sync()
        seq = alice.seq
        LyingWelcomeRelay.drop_anchor = True
        await handle.stop()
        await handle.start()  # alice reconnects by herself
        await wait_for(lambda: alice.error is not None, what="alice to refuse the welcome")
        assert isinstance(alice.error, errors.MalformedFrameError)
        assert f"sent no signed head for our seq {seq}" in str(alice.error)
        assert alice.seq == seq and str(alice.text("doc")) == "kept. "
    finally:
        LyingWelcomeRelay.drop_anchor = False
        await alice.close()
        await handle.stop()


async def test_a_new_device_refuses_a_log_whose_first_entry_is_not_the_genesis(tmp_path: Path) -> None:
    handle = RelayHandle(tmp_path / "relay", LyingWelcomeRelay)
    await handle.start()
    alice = await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    bob_id = encspaces.Identity.generate()
    try:
        await alice.add_member(bob_id.public)
        LyingWelcomeRelay.replace_genesis = True
        with pytest.raises(errors.SpaceIdError, match="expected the genesis entry"):
            await encspaces.connect(handle.url, bob_id, alice.id, data_dir=tmp_path / "b")
    finally:
        LyingWelcomeRelay.replace_genesis = False
        await alice.close()
        await handle.stop()
