"""The editor showing what a hostile writer put in: terminal escape sequences inside the text, a
huge single line, and a presence built by the writer's own client (a name of control
characters far past any length, a colour that is an escape sequence, cursors past the text,
negative, or not numbers). Nothing of it may reach the terminal raw, crash the editor or stop
the honest member from editing.
"""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

from encspaces.core.encoding import pack
from encspaces_clients.editor import EditorApp
from tests.support import RawMember, sealed_presence

from .conftest import RelayHandle, showing, type_text, wait_for

# Retitle the window, clear the screen, set the clipboard (OSC 52, ended by ST, which rich keeps),
# an 8-bit CSI (U+009B), BEL and backspace.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x1b\\\x9b6n\x07\x08"
SEQUENCES = ("\x1b]0;", "\x1b[2J", "\x1b]52", "\x9b", "\x07", "\x08")


def terminal_output(app: EditorApp) -> str:
    """What the app writes to the terminal for a full redraw of its screen now (the string its
    driver is given outside tests)."""
    return app.screen._compositor.render_update(full=True).render_segments(app.console)


async def test_escape_sequences_in_a_text_and_a_crafted_presence_are_shown_inert(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    text = f"honest line\nbefore {HOSTILE} after\n" + "y" * 50_000 + "\nlast"
    async with showing(relay.url, tmp_path, text) as (app, pilot, alice, bob):
        editor = app.editor
        async with RawMember(relay.url, bob.identity, bob.space_bytes) as raw:
            state = {"name": HOSTILE * 40, "colour": "\x1b[31m", "doc": "notes", "cursor": 2**63,
                     "selection": [-5, True]}
            await raw.presence(sealed_presence(raw, pack(state), int(time.time() * 1_000_000) + 10**9))
            bob_id = bob.identity.member_id
            await wait_for(lambda: bob_id in editor.peers, "alice to see bob's crafted presence")
            await pilot.pause()
            app.refresh_status()
            await pilot.pause()
            shown = terminal_output(app)
            for sequence in SEQUENCES:
                assert sequence not in shown, f"{sequence!r} reached the terminal"
            shown_line = ("before \u241b]0;pwned\u2407\u241b[2J\u241b]52;c;ZXZpbA==\u241b\\"
                          "\ufffd6n\u2407\u2408 after")
            assert editor.get_line(1).plain == shown_line  # one stand-in per character: every column stays
            peer = editor.peers[bob_id]
            assert peer.cursor == 2**63 and len(peer.name) <= 32 and "\x1b" not in peer.name
            assert editor.peer_location(bob_id) == (3, 4)  # past the text: drawn at its end
        # The honest member keeps editing, next to the stand-ins, at the right offsets.
        editor.move_cursor((1, len("before ") + len(HOSTILE)))
        await type_text(pilot, "!")
        assert not editor.read_only and app.failure is None
        await alice.sync()
        await wait_for(lambda: str(bob.text("notes")) == text.replace(" after", "! after"),
                       "bob to see alice's edit, after the sequences")


async def test_bidi_controls_in_a_text_and_a_name_are_shown_inert_and_the_joiners_stay(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """A right-to-left override or an isolate reaching the terminal makes it show the rest of the
    line in another order than it is (Trojan Source); in the text, each is drawn as a one-cell
    stand-in; in a peer's name, left out. The joiners of emoji and Persian words stay."""
    trojan = "access = \"user\u202e \u2066// admin only\u2069 \u2066\" \u200b\ufeff"
    joined = "\U0001f469\u200d\U0001f4bb \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    text = f"{trojan}\n{joined}"
    async with showing(relay.url, tmp_path, text) as (app, pilot, alice, bob):
        editor = app.editor
        bob.presence.set({"name": "Bob\u202e\u2066 \U0001f469\u200d\U0001f4bb\u2028x", "doc": "notes", "cursor": 0})
        bob_id = bob.identity.member_id
        await wait_for(lambda: bob_id in editor.peers, "alice to see bob's presence")
        await pilot.pause()
        shown = terminal_output(app)
        hidden = {char for char in shown if unicodedata.category(char) == "Cf"} - {"\u200c", "\u200d"}
        assert not hidden, f"{hidden!r} reached the terminal"
        trojan_shown = "access = \"user\ufffd \ufffd// admin only\ufffd \ufffd\" \ufffd\ufffd "
        assert editor.get_line(0).plain.startswith(trojan_shown)
        assert editor.get_line(1).plain.startswith(joined)
        assert editor.peers[bob_id].name == app.names[bob_id] == "Bob \U0001f469\u200d\U0001f4bbx"
        editor.move_cursor((0, len("access = \"user\u202e")))
        await type_text(pilot, "!")
        await alice.sync()
        await wait_for(lambda: str(bob.text("notes")) == text.replace("\u202e ", "\u202e! ", 1),
                       "bob to see alice's edit just after the override")
