"""Invites attacked over a real relay: the last use raced, a link pointed at another space.

Each attack must end in a precise error for the loser, and leave the space's membership as
the invite allows: never two members from a one-use invite, never a join that hangs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core.invites import InviteLink

from .conftest import RelayHandle


async def test_two_newcomers_race_for_the_last_use(relay: RelayHandle, tmp_path: Path) -> None:
    admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "admin")
    try:
        link = await admin.create_invite(role="writer", uses=1)
        ids = [encspaces.Identity.generate() for _ in range(2)]
        results = await asyncio.gather(
            *(encspaces.join(link, ident, data_dir=tmp_path / f"n{i}") for i, ident in enumerate(ids)),
            return_exceptions=True)
        winners = [r for r in results if isinstance(r, encspaces.Space)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1 and len(losers) == 1, results
        # Refused at the door (it connected after the winner's join: bad_invite), or let in on the
        # invite and its join entry refused (both connected first): either way, used up.
        loser = losers[0]
        if isinstance(loser, errors.RelayError):
            assert "bad_invite" in str(loser), repr(loser)
        else:
            assert isinstance(loser, errors.NotPermittedError) and "join entry" in str(loser), repr(loser)
        assert "used up (1 of 1)" in str(loser), repr(loser)
        await admin.wait_for_seq(winners[0].seq)
        joined = [m for m in admin.members if m != admin.identity.member_id]
        assert joined == [winners[0].identity.member_id]
        assert admin.invites == []
        winners[0].text("doc").insert(0, "the winner writes")
        await winners[0].sync()
        await winners[0].close()
    finally:
        await admin.close()


async def test_a_link_pointed_at_another_space(relay: RelayHandle, tmp_path: Path) -> None:
    """A link whose space id was swapped for another space on the same relay: refused, nothing joined."""
    admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "admin")
    other = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "other")
    try:
        link = InviteLink.parse(await admin.create_invite(uses=5))
        forged = str(dataclasses.replace(link, space=other.space_bytes))
        with pytest.raises(errors.EncspacesError) as caught:
            await encspaces.join(forged, encspaces.Identity.generate(), data_dir=tmp_path / "n")
        assert isinstance(caught.value, errors.RelayError), repr(caught.value)
        assert "bad_invite" in str(caught.value) and "no invite" in str(caught.value)
        assert len(other.members) == 1 and len(admin.members) == 1
    finally:
        await admin.close()
        await other.close()


async def test_a_revocation_raced_against_a_join(relay: RelayHandle, tmp_path: Path) -> None:
    """The admin revokes a one-use invite while a newcomer joins with it: exactly one of them wins."""
    admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "admin")
    try:
        link = await admin.create_invite(role="writer", uses=1)
        invite_id = admin.invites[0].id
        newcomer = encspaces.Identity.generate()
        joined, revoked = await asyncio.gather(
            encspaces.join(link, newcomer, data_dir=tmp_path / "n"), admin.revoke_invite(invite_id),
            return_exceptions=True)
        if isinstance(joined, encspaces.Space):
            assert isinstance(revoked, errors.EncspacesError), repr(revoked)
            await admin.wait_for_seq(joined.seq)
            assert newcomer.member_id in admin.members
            await joined.close()
        else:
            assert revoked is None, repr(revoked)
            assert isinstance(joined, errors.RelayError) and "revoked" in str(joined), repr(joined)
            assert newcomer.member_id not in admin.members
        assert admin.invites == []
        admin.text("doc").insert(0, "not stuck")
        await admin.sync()
    finally:
        await admin.close()
