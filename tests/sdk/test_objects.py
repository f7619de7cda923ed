"""Every kind of shared object through a real relay, with typed change events."""

from __future__ import annotations

import asyncio
from pathlib import Path

import encspaces

from .conftest import RelayHandle, make_members, settle


async def test_all_object_kinds_and_change_events(relay: RelayHandle, tmp_path: Path) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        events = bob.changes()
        text_events = bob.text("notes").changes()
        seq_before = alice.seq
        with alice.transaction():
            alice.text("notes").insert(0, "agenda", {"bold": True})
            alice.list("todo").extend(["milk", {"task": "call", "done": False}])
            alice.map("settings").update({"theme": "dark", "size": 12})
            row = alice.table("people").insert({"name": "Ada", "age": 36})
        await alice.sync()
        assert alice.seq == seq_before + 1, "a transaction is one entry"
        await bob.wait_for_seq(alice.seq)
        assert str(bob.text("notes")) == "agenda"
        assert bob.list("todo").to_py() == ["milk", {"task": "call", "done": False}]
        assert bob.map("settings").to_py() == {"size": 12, "theme": "dark"}
        assert bob.table("people").get(row) == {"name": "Ada", "age": 36}
        seen = {}
        while len(seen) < 4:
            change = await asyncio.wait_for(events.__anext__(), 5)
            seen[change.kind] = change
        assert all(not c.local and c.author == alice.identity.member_id for c in seen.values())
        text_change = await asyncio.wait_for(text_events.__anext__(), 5)
        assert isinstance(text_change, encspaces.TextChange)
        assert text_change.author == alice.identity.member_id

        # Column-wise merge of concurrent updates to one row.
        alice.table("people").update(row, {"age": 37})
        bob.table("people").update(row, {"name": "Ada L."})
        await settle([alice, bob])
        assert alice.table("people").get(row) == bob.table("people").get(row) == {"name": "Ada L.", "age": 37}
        assert [r.id for r in bob.table("people").query(where={"age": {">": 30}})] == [row]
    finally:
        await alice.close()
        await bob.close()
