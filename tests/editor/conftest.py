"""Editors under Textual's headless pilot, on spaces served by a real relay on 127.0.0.1 (tests.support)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from textual.pilot import Pilot

import encspaces
from encspaces_clients.editor import EditorApp
from tests.support import RelayHandle, make_members, make_relay, relay, wait_for

__all__ = ["SIZE", "RelayHandle", "make_relay", "pair", "relay", "showing", "type_text", "wait_for"]

SIZE = (110, 30)


async def pair(url: str, tmp_path: Path, text: str = "") -> tuple[encspaces.Space, encspaces.Space]:
    """Alice's new space with Bob added, both connected (data dirs ``m0``, ``m1``); ``text`` is
    Alice's, already seen by Bob."""
    _, (alice, bob) = await make_members(url, tmp_path, 2)
    if text:
        alice.text("notes").insert(0, text)
        await alice.sync()
        await bob.wait_for_seq(alice.seq)
    return alice, bob


@asynccontextmanager
async def showing(
    url: str, tmp_path: Path, text: str,
) -> AsyncIterator[tuple[EditorApp, Pilot[int], encspaces.Space, encspaces.Space]]:
    """Bob writes ``text``; Alice's editor runs and shows it: (app, pilot, alice, bob). Both
    spaces are closed afterwards."""
    alice, bob = await pair(url, tmp_path)
    bob.text("notes").insert(0, text)
    await bob.sync()
    app = EditorApp(alice, name="alice")
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(lambda: app.editor.text == text, "alice's editor to show bob's text")
            yield app, pilot, alice, bob
    finally:
        await alice.close()
        await bob.close()


KEY_NAMES = {" ": "space", "\n": "enter", ",": "comma", ".": "full_stop", "!": "exclamation_mark"}


async def type_text(pilot: Pilot[int], text: str) -> None:
    """Type ``text`` key by key, as a person would."""
    await pilot.press(*(KEY_NAMES.get(ch, ch) for ch in text))
