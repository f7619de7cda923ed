"""An integration may edit a text through ``Space.doc`` (pycrdt, a local transaction) beside the
space's own ``SharedText``: the SharedText's later edits still land where asked, on the ASCII
shortcut and with an index, and every device ends with the same text."""

from __future__ import annotations

from pathlib import Path

import pycrdt

from .conftest import RelayHandle, make_members, settle


async def test_edits_after_a_local_pycrdt_edit_land_where_asked(relay: RelayHandle, tmp_path: Path) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        ascii_text, other = alice.text("notes"), alice.text("title")
        ascii_text.insert(0, "hello world")  # ASCII: Yrs offsets taken as positions
        other.insert(0, "héllo")
        other.insert(5, "!")  # not ASCII: an index converts positions
        doc = alice.doc
        notes, title = doc.get("text:notes", type=pycrdt.Text), doc.get("text:title", type=pycrdt.Text)
        notes.insert(0, "¡")  # before the fix: the insert below landed at "hel|lo"
        ascii_text.insert(6, "|")
        with doc.transaction():  # one transaction over both texts and a map
            notes.insert(len(notes), "é")
            del title[1:3]  # "é" -> "ab": the same UTF-8 length, which the index's check missed
            title.insert(1, "ab")
            doc.get("map:meta", type=pycrdt.Map)["by"] = "integration"
        ascii_text.delete(len(ascii_text) - 1, 1)
        other.insert(4, "|")
        assert str(ascii_text) == "¡hello| world"
        assert str(other) == "habl|lo!"
        await settle([alice, bob])
        assert str(bob.text("notes")) == "¡hello| world"
        assert str(bob.text("title")) == "habl|lo!"
    finally:
        await alice.close()
        await bob.close()
