"""Key confirmation: an admin who hands members different keys for an epoch is caught.

Every entry that starts an epoch commits to its key in its signed public body; each recipient
checks the key it unseals. The lying admin here seals the committed key to one member and
another key to a third: that member fails with KeyConfirmationError naming the admin and the
entry, and the others go on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import encspaces
from encspaces import admin as admin_module
from encspaces import errors
from encspaces.core import crypto
from encspaces.core.encoding import pack, unpack
from encspaces.core.entry import Kind
from encspaces.core.log_state import LogState
from encspaces.core.membership import GenesisBody, RekeyBody, seal_grants
from encspaces.core.rekey import rekey_body

from .conftest import RelayHandle, make_members, settle, wait_for


async def test_admin_giving_one_member_another_key_is_named(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (alice_id, _, carol_id), (alice, bob, carol) = await make_members(relay.url, tmp_path, 3)
    alice.text("doc").insert(0, "before. ")
    await settle([alice, bob, carol])

    def lying_rekey_body(state: LogState, remove: bytes | None = None) -> bytes:
        key, other = crypto.random_key(), crypto.random_key()
        recipients = state.key_recipients(without=remove)
        grants = dict(seal_grants(recipients, key))
        grants.update(seal_grants({carol_id.public.sign_key: carol_id.public.box_key}, other))
        epoch = state.epoch + 1
        return RekeyBody(epoch, tuple(sorted(grants.items())), crypto.key_commitment(state.space, epoch, key),
                         remove).encode()

    monkeypatch.setattr(admin_module, "rekey_body", lying_rekey_body)
    await alice.rotate_key()
    rotation_seq = alice.seq
    await wait_for(lambda: carol.error is not None, "carol to notice the bad key")
    assert isinstance(carol.error, errors.KeyConfirmationError)
    assert carol.error.author == alice_id.member_id
    assert carol.error.seq == rotation_seq
    assert carol.error.epoch == 2
    assert "does not match the commitment" in str(carol.error)
    with pytest.raises(errors.KeyConfirmationError):
        carol.text("doc").insert(0, "x")

    # Alice and Bob hold the committed key and go on under epoch 2.
    alice.text("doc").insert(len(str(alice.text("doc"))), "alice. ")
    await alice.sync()
    await bob.wait_for_seq(alice.seq)
    bob.text("doc").insert(len(str(bob.text("doc"))), "bob.")
    await bob.sync()
    await alice.wait_for_seq(bob.seq)
    assert alice.error is None and bob.error is None
    assert str(alice.text("doc")) == str(bob.text("doc")) == "before. alice. bob."
    assert bob.skipped == [] and alice.skipped == []
    for space in (alice, bob, carol):
        await space.close()


async def test_honest_keys_confirm_for_every_way_a_key_arrives(relay: RelayHandle, tmp_path: Path) -> None:
    """Genesis, rotation, removal and add_member with history: all confirm, nobody fails."""
    (_, _, carol_id), (alice, bob, carol) = await make_members(relay.url, tmp_path, 3)
    await alice.rotate_key()
    await alice.remove_member(carol_id.public)
    alice.text("doc").insert(0, "epoch 3. ")
    await alice.sync()
    dave_id = encspaces.Identity.generate()
    await alice.add_member(dave_id.public)
    dave = await encspaces.connect(relay.url, dave_id, alice.id, data_dir=tmp_path / "dave")
    await dave.wait_for_seq(alice.seq)
    await bob.wait_for_seq(alice.seq)
    assert dave.error is None and bob.error is None and alice.error is None
    # Every key dave holds is the one its epoch's first entry publicly commits to (the relay's copy of the log).
    committed: dict[int, bytes] = {}
    for _, entry in relay.entries():
        kind = entry.header.kind
        if kind is Kind.GENESIS:
            committed[1] = GenesisBody.decode(entry.body).commit
        elif kind in (Kind.ROTATE, Kind.REMOVE_MEMBER):
            rekey = RekeyBody.decode(entry.body, kind.value)
            committed[rekey.epoch] = rekey.commit
    assert set(committed) == set(dave.epoch_keys) == {1, 2, 3}
    for epoch, key in dave.epoch_keys.items():
        assert crypto.key_commitment(b"" if epoch == 1 else dave.space_bytes, epoch, key) == committed[epoch], epoch
    assert str(dave.text("doc")) == str(bob.text("doc")) == "epoch 3. "
    for space in (alice, bob, carol, dave):
        await space.close()


def test_a_rekey_body_without_a_commitment_is_refused_by_the_rule_engine() -> None:
    state = LogState(bytes(32))
    body = unpack(rekey_body(state))
    del body["commit"]
    with pytest.raises(errors.MalformedEntryError, match="commit"):
        RekeyBody.decode(pack(body), "rotate")
    body["commit"] = b"short"
    with pytest.raises(errors.MalformedEntryError, match="key commitment"):
        RekeyBody.decode(pack(body), "rotate")
