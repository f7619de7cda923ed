"""Dropped connections: the client reconnects, resends, catches up, loses and doubles nothing."""

from __future__ import annotations

from pathlib import Path

import encspaces

from .conftest import RelayHandle, make_members, settle, wait_for


async def test_edits_during_relay_outage_arrive_once(relay: RelayHandle, tmp_path: Path) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        ta, tb = alice.text("doc"), bob.text("doc")
        ta.insert(0, "A0 ")
        await alice.sync()
        await relay.stop()
        await wait_for(lambda: not alice.connected and not bob.connected, what="both to notice the outage")
        for i in range(1, 20):
            ta.insert(len(ta), f"A{i} ")
            tb.insert(0, f"B{i} ")
        assert alice.unsent > 0 and bob.unsent > 0
        await relay.start()
        await settle([alice, bob])
        assert str(ta) == str(tb)
        for i in range(1, 20):
            assert str(ta).count(f"A{i} ") == 1
            assert str(ta).count(f"B{i} ") == 1
        assert alice.unsent == 0 and bob.unsent == 0
    finally:
        await alice.close()
        await bob.close()


async def test_unsent_edits_survive_a_client_restart(relay: RelayHandle, tmp_path: Path) -> None:
    ident = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, ident, data_dir=tmp_path / "a")
    space_id = space.id
    await relay.stop()
    space.text("doc").insert(0, "typed while offline")
    await space.close()  # the edit is now only in the local outbox
    await relay.start()
    async with encspaces.connect(relay.url, ident, space_id, data_dir=tmp_path / "a") as again:
        assert str(again.text("doc")) == "typed while offline"
        await again.sync()
    fresh = encspaces.Identity.generate()
    async with encspaces.connect(relay.url, ident, space_id, data_dir=tmp_path / "a") as owner:
        await owner.add_member(fresh.public)
    async with encspaces.connect(relay.url, fresh, space_id, data_dir=tmp_path / "f") as other:
        assert str(other.text("doc")) == "typed while offline"
