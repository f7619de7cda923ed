"""An embed one member puts in a text (through ``Space.doc``, as an integration would) counts as
one position on every device: later edits past it land where asked, live and after reopening."""

from __future__ import annotations

from pathlib import Path

import pycrdt

import encspaces

from .conftest import RelayHandle, make_members, settle

IMAGE = {"image": "cat.png"}


async def test_edits_after_another_members_embed_land_where_asked(relay: RelayHandle, tmp_path: Path) -> None:
    identities, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        ta, tb = alice.text("doc"), bob.text("doc")
        ta.insert(0, "héllo wörld")
        await settle([alice, bob])
        tb.insert(0, "> ")  # bob tracks positions (an index: the text is not ASCII)
        await settle([alice, bob])
        alice.doc.get("text:doc", type=pycrdt.Text).insert_embed(len("> héllo".encode()), IMAGE)
        await settle([alice, bob])
        assert len(tb) == len("> héllo") + 1 + len(" wörld")
        tb.insert(len(tb), "!")
        tb.insert(8, "|")  # just after the embed
        await settle([alice, bob])
        expected = [{"insert": "> héllo"}, {"insert": IMAGE}, {"insert": "| wörld!"}]
        assert ta.to_delta() == tb.to_delta() == expected
    finally:
        await alice.close()
        await bob.close()
    # Bob again, from his own store: the embed is read with the text, not followed as a change.
    async with encspaces.connect(relay.url, identities[1], alice.id, data_dir=tmp_path / "m1") as again:
        text = again.text("doc")
        assert len(text) == len("> héllo| wörld!") + 1
        text.insert(len(text), "?")
        text.delete(7, 1)  # the embed
        assert text.to_delta() == [{"insert": "> héllo| wörld!?"}]
        await again.sync()
