"""Devices attacked over a real relay: a removed device coming back, a pairing replayed.

A removed device must be refused with a precise error whatever way it comes back (its own
data dir, a fresh one, a raw client submitting), and never read what was written after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core.entry import Kind
from tests.support import RawMember

from .conftest import RelayHandle, settle, wait_for
from .test_devices import Erin


async def test_a_removed_device_coming_back_is_refused(relay: RelayHandle, tmp_path: Path) -> None:
    erin = Erin(relay, tmp_path)
    try:
        alice, laptop, phone = await erin.start()
        await laptop.remove_device(erin.phone_id.member_id)
        await wait_for(lambda: phone.error is not None, "the removed phone to fail")
        await phone.close()
        laptop.text("doc").insert(0, "after the removal")
        await settle([alice, laptop])
        # Reopening its own data dir raises the reason, naming the space, the device and the
        # removal's seq, and leaves nothing open (the data dir opens again at once); open_local
        # still reads what it had (section 12), and nothing new. A fresh data dir is not even admitted.
        seq = alice.seq
        removed_at = phone.error.seq if isinstance(phone.error, errors.MembershipRevokedError) else None
        for _ in range(2):
            with pytest.raises(errors.MembershipRevokedError) as revoked:
                await encspaces.connect(relay.url, erin.phone_id, alice.id, data_dir=tmp_path / "phone")
            error = revoked.value
            assert "this device was removed" in str(error) and alice.id in str(error)
            assert (error.space, error.device) == (alice.id, erin.phone_id.member_id)
            assert error.seq is not None and error.seq == removed_at and error.seq <= seq
        view = await encspaces.open_local(erin.phone_id, alice.id, data_dir=tmp_path / "phone")
        assert view.seq < seq and "after the removal" not in str(view.text("doc"))
        with pytest.raises(errors.RelayError, match="not_a_member"):
            await encspaces.connect(relay.url, erin.phone_id, alice.id, data_dir=tmp_path / "phone-again")
        # Nor can a raw client with the device's key write (its connection is not even admitted).
        with pytest.raises(errors.RelayError) as refused:
            async with RawMember(relay.url, erin.phone_id, alice.space_bytes) as raw:
                await raw.submit(raw.entry(Kind.DATA, b"x"))
        assert "not_a_member" in str(refused.value) or "removed" in str(refused.value), str(refused.value)
        assert str(alice.text("doc")) == "after the removal"
    finally:
        await erin.close()


async def test_a_pairing_replayed_after_removal_is_refused(relay: RelayHandle, tmp_path: Path) -> None:
    """The removed phone's pairing string, approved again: refused, the log remembers the removal."""
    erin = Erin(relay, tmp_path)
    try:
        alice, laptop, phone = await erin.start()
        pairing = str(erin.phone_id.pairing_request("phone"))
        await laptop.remove_device(erin.phone_id.member_id)
        await wait_for(lambda: phone.error is not None, "the removed phone to fail")
        seq = laptop.seq
        with pytest.raises(errors.NotPermittedError, match="was removed"):
            await encspaces.add_device([laptop], pairing)
        assert laptop.seq == seq  # nothing was posted
        assert [d.id for d in alice.members[erin.laptop_id.person_id].devices] == [erin.laptop_id.member_id]
    finally:
        await erin.close()
