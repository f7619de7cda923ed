"""Spaces whose documents rebuild themselves for speed (``Document._relayout``) behave as before.

The threshold is made tiny, so both members' documents are rebuilt many times while they
type into the same text concurrently; they converge, a member joining later reads the same
text from the log, and an integration holding ``space.doc`` keeps a live document.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

import encspaces
import encspaces.document as document_module
from encspaces.document import Document

from .conftest import RelayHandle, make_members, settle


@pytest.fixture
def rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rebuilds are due after 64 bytes of updates; returns a list that grows by one per rebuild."""
    monkeypatch.setattr(document_module, "RELAYOUT_MIN_BYTES", 64)
    done: list[int] = []
    original = Document._relayout

    def counting(self: Document) -> None:
        before = self.doc
        original(self)
        if self.doc is not before:
            done.append(1)

    monkeypatch.setattr(Document, "_relayout", counting)
    return done


async def test_members_converge_while_their_documents_are_rebuilt(
        relay: RelayHandle, tmp_path: Path, rebuilds: list[int]) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    carol: encspaces.Space | None = None
    try:
        rng = random.Random(7)
        for round_ in range(6):
            for space in (alice, bob):
                text = space.text("notes")
                for _ in range(30):
                    at = rng.randint(0, len(text))
                    if len(text) and rng.random() < 0.3:
                        text.delete(min(at, len(text) - 1), 1)
                    else:
                        text.insert(at, rng.choice("abcé中🙂"))
            await settle([alice, bob])
            assert str(alice.text("notes")) == str(bob.text("notes")), f"round {round_}"
        assert len(rebuilds) >= 4  # both documents were rebuilt, several times
        carol_id = encspaces.Identity.generate()
        await alice.add_member(carol_id.public)
        carol = await encspaces.connect(relay.url, carol_id, alice.id, data_dir=tmp_path / "carol")
        await carol.wait_for_seq(alice.seq)
        assert str(carol.text("notes")) == str(alice.text("notes"))
    finally:
        for space in (alice, bob, carol):
            if space is not None:
                await space.close()


async def test_a_document_handed_out_is_kept(relay: RelayHandle, tmp_path: Path, rebuilds: list[int]) -> None:
    _, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        doc = alice.doc
        for _ in range(200):
            alice.text("notes").insert(0, "x")  # typed backwards: 200 items even once merged
        await settle([alice, bob])
        await asyncio.sleep(0)  # a rebuild runs on the next turn of the event loop
        assert alice.doc is doc and str(bob.text("notes")) == "x" * 200
        assert len(rebuilds) >= 1  # bob's document, which nothing handed out, was rebuilt
    finally:
        await alice.close()
        await bob.close()
