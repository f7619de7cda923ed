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
        # Reopening its own data dir opens what it had (section 12), failed with the reason, and
        # reads nothing new; a fresh data dir is not even admitted.
        seq = alice.seq
        again = await encspaces.connect(relay.url, erin.phone_id, alice.id, data_dir=tmp_path / "phone")
        try:
            assert isinstance(again.error, errors.MembershipRevokedError), repr(again.error)
            assert "this device was removed" in str(again.error)
            assert again.seq < seq and "after the removal" not in str(again.text("doc"))
            with pytest.raises(errors.MembershipRevokedError):
                again.text("doc").insert(0, "sneaky")
        finally:
            await again.close()
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
