"""Re-issuing our queued key entries: a rekey is built for the state after our own revocations."""

from __future__ import annotations

from encspaces.core.entry import Kind
from encspaces.core.invites import InviteBody, InviteSecret, RevokeInviteBody
from encspaces.core.membership import RekeyBody, Role
from encspaces.core.rekey import invite_body, reissue_all, rekey_body

from .fakes import FakeSpace


def test_a_revocation_reissued_after_another_rotation_keeps_its_own_rotation() -> None:
    """Another rotation got in first and gave the invite its key: ours must still follow the revocation."""
    fs = FakeSpace()
    secret = InviteSecret.generate()
    key = secret.invite_key
    offer = InviteBody(key, secret.box_key, Role.WRITER, 2, None, True, ())
    fs.sequence(fs.make(fs.alice, invite_body(offer, {1: fs.epoch_key}, 1), kind=Kind.INVITE))
    # Queued by one of alice's devices under epoch 1, not yet sequenced...
    revoke = fs.make(fs.alice, RevokeInviteBody(key).encode(), kind=Kind.REVOKE_INVITE, author_seq=90)
    rotate = fs.make(fs.alice, rekey_body(fs.state, revoking=[key]), kind=Kind.ROTATE, author_seq=91)
    # ...when a rotation (sealed to the still open invite too) is sequenced first.
    fs.sequence(fs.make(fs.alice, rekey_body(fs.state), kind=Kind.ROTATE))
    assert fs.state.epoch == 2
    again = reissue_all([revoke, rotate], fs.state, {1: fs.epoch_key})
    assert [(old, new[0] if new else None) for old, new in again] == [
        (revoke, Kind.REVOKE_INVITE), (rotate, Kind.ROTATE)]
    for _, new in again:
        assert new is not None
        fs.sequence(fs.make(fs.alice, new[1], kind=new[0], epoch=2))  # the shared rules accept both
    assert fs.state.epoch == 3 and fs.state.invites[key].revoked
    granted = {r for r, _ in RekeyBody.decode(again[1][1][1], "rotate").grants}  # type: ignore[index]
    assert key not in granted and granted == set(fs.state.members)


def test_a_rotation_made_pointless_by_another_is_still_dropped() -> None:
    fs = FakeSpace()
    rotate = fs.make(fs.alice, rekey_body(fs.state), kind=Kind.ROTATE, author_seq=90)
    fs.sequence(fs.make(fs.alice, rekey_body(fs.state), kind=Kind.ROTATE))
    assert reissue_all([rotate], fs.state, {1: fs.epoch_key}) == [(rotate, None)]
