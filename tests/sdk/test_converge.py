"""Members editing one text through a real relay converge, and the relay holds no plaintext."""

from __future__ import annotations

import random
from pathlib import Path

import encspaces

from .conftest import RelayHandle, make_members, settle


async def test_two_members_converge_on_concurrent_edits(relay: RelayHandle, tmp_path: Path) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        ta, tb = alice.text("doc"), bob.text("doc")
        ta.insert(0, "alpha ")
        tb.insert(0, "beta ")
        ta.insert(len(ta), "gamma")
        await settle([alice, bob])
        assert str(ta) == str(tb)
        for piece in ("alpha ", "beta ", "gamma"):
            assert piece in str(ta)
        assert len(ta) == len("alpha beta gamma")
    finally:
        await alice.close()
        await bob.close()


async def test_three_members_converge_and_relay_stores_only_ciphertext(relay: RelayHandle, tmp_path: Path) -> None:
    _, spaces = await make_members(relay.url, tmp_path, 3)
    rng = random.Random(7)
    secrets = [f"secret-{i}-{rng.getrandbits(64):x}" for i in range(3)]
    try:
        texts = [s.text("doc") for s in spaces]
        for round_ in range(20):
            for i, t in enumerate(texts):
                if len(t) and rng.random() < 0.3:
                    at = rng.randrange(len(t))
                    t.delete(at, min(3, len(t) - at))
                t.insert(rng.randrange(len(t) + 1), f"{secrets[i]}:{round_} ")
        await settle(spaces)
        assert len({str(t) for t in texts}) == 1
        assert spaces[0].seq == spaces[1].seq == spaces[2].seq
    finally:
        for s in spaces:
            await s.close()
    await relay.stop()
    stored = b"".join(p.read_bytes() for p in relay.data_dir.iterdir() if p.is_file())
    for secret in secrets:
        assert secret.encode() not in stored
    assert b"secret-" not in stored


async def test_reopen_from_local_store(relay: RelayHandle, tmp_path: Path) -> None:
    alice_id = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, alice_id, data_dir=tmp_path / "a")
    space.text("doc").insert(0, "kept across restarts")
    await space.sync()
    space_id, seq = space.id, space.seq
    await space.close()
    async with encspaces.connect(relay.url, alice_id, space_id, data_dir=tmp_path / "a") as again:
        assert again.seq == seq
        assert str(again.text("doc")) == "kept across restarts"
        again.text("doc").insert(0, ">> ")
        await again.sync()
        assert str(again.text("doc")) == ">> kept across restarts"
