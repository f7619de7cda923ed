"""Editors under Textual's headless pilot, on spaces served by a real relay on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

import encspaces
from tests.support import RelayHandle, relay, wait_for

__all__ = ["SIZE", "RelayHandle", "pair", "relay", "type_text", "wait_for"]

SIZE = (110, 30)


async def pair(url: str, tmp_path: Path, text: str = "") -> tuple[encspaces.Space, encspaces.Space]:
    """Alice's new space with Bob added, both connected; ``text`` is Alice's, already seen by Bob."""
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice = await encspaces.create_space(url, alice_id, data_dir=tmp_path / "alice")
    await alice.add_member(bob_id.public)
    bob = await encspaces.connect(url, bob_id, alice.id, data_dir=tmp_path / "bob")
    if text:
        alice.text("notes").insert(0, text)
        await alice.sync()
        await bob.wait_for_seq(alice.seq)
    return alice, bob


KEY_NAMES = {" ": "space", "\n": "enter", ",": "comma", ".": "full_stop", "!": "exclamation_mark"}


async def type_text(pilot: Pilot[int], text: str) -> None:
    """Type ``text`` key by key, as a person would."""
    await pilot.press(*(KEY_NAMES.get(ch, ch) for ch in text))
