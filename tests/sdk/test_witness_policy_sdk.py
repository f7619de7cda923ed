"""The witness policy through the SDK: written in genesis by create_space, replaced by an admin,
read back by every member from the verified log."""

from __future__ import annotations

from pathlib import Path

import nacl.signing
import pytest

import encspaces
from encspaces import Witness, WitnessPolicy

from .conftest import RelayHandle, wait_for


def _witness(name: str) -> Witness:
    return Witness(name, bytes(nacl.signing.SigningKey.generate().verify_key), f"http://127.0.0.1:9/{name}")


async def test_create_space_with_witnesses_and_replace_them(relay: RelayHandle, tmp_path: Path) -> None:
    a, b, c = _witness("a"), _witness("b"), _witness("c")
    alice, bob = encspaces.Identity.generate(), encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, alice, data_dir=tmp_path / "a", witnesses=[a, b, c])
    try:
        assert space.witness_policy == WitnessPolicy((a, b, c), 2)  # a majority by default
        await space.add_member(bob.public)
        other = await encspaces.connect(relay.url, bob, space.id, data_dir=tmp_path / "b")
        try:
            await other.wait_for_seq(space.seq)
            assert other.witness_policy == space.witness_policy
            with pytest.raises(encspaces.NotPermittedError):
                await other.set_witnesses([a])
            await space.set_witnesses([c], quorum=1)
            assert space.witness_policy == WitnessPolicy((c,), 1)
            await wait_for(lambda: other.witness_policy == WitnessPolicy((c,), 1), "bob sees the new policy")
            assert [seq for seq, _ in other.state.witness_policies] == [1, space.seq]
        finally:
            await other.close()
    finally:
        await space.close()


async def test_a_space_without_witnesses_says_so(relay: RelayHandle, tmp_path: Path) -> None:
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    try:
        assert space.witness_policy is WitnessPolicy.NONE
    finally:
        await space.close()


async def test_a_bad_policy_is_refused_before_anything_is_sent(relay: RelayHandle, tmp_path: Path) -> None:
    a = _witness("a")
    with pytest.raises(encspaces.InvalidArgumentError, match="quorum of 2 with 1"):
        await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a",
                                     witnesses=[a], quorum=2)
    assert not (tmp_path / "a").exists()


async def test_a_space_with_a_real_witness_goes_on_while_checkpoints_are_pushed(tmp_path: Path) -> None:
    from encspaces.core.identity import member_id
    from encspaces_witness.process import WitnessProcess

    handle = RelayHandle(tmp_path / "relay", checkpoint_interval=0.05, allow_private_witnesses=True)
    server = await handle.start()
    try:
        async with WitnessProcess(tmp_path / "witness", [member_id(server.public_key)]) as witness:
            space = await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a",
                                                 witnesses=[Witness.from_vkey(witness.vkey, witness.url)])
            try:
                text = space.text("t")
                for i in range(5):
                    text.insert(len(text), f"{i} ")
                    await space.sync()
                cosigned = server.metrics.witness_submissions.labels("cosigned")
                await wait_for(lambda: cosigned._value.get() >= 1, "the witness cosigned a checkpoint")
                text.insert(0, ">")  # pushed checkpoints did not disturb the session
                await space.sync()
                assert space.error is None and str(text).startswith(">0 1")
            finally:
                await space.close()
    finally:
        await handle.stop()
