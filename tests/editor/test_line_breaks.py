"""Characters that ``str.splitlines`` takes for line breaks, put in by another member: a form
feed, a vertical tab, ``\\x1c``-``\\x1e``, U+0085, U+2028, U+2029. Textual's own document broke
lines at each, so one of them anywhere made every member's editor read-only while it was there.
The editor breaks lines only at line endings and shows each of those as one stand-in.
"""

from __future__ import annotations

from pathlib import Path

from encspaces_clients.editor import EditorApp

from .conftest import SIZE, RelayHandle, pair, type_text, wait_for

# Each character, and the stand-in the editor draws for it (one character, so no column moves).
BREAKS = {"\x0b": "\u240b", "\x0c": "\u240c", "\x1c": "\u241c", "\x1d": "\u241d", "\x1e": "\u241e",
          "\x85": "\ufffd", "\u2028": "\ufffd", "\u2029": "\ufffd"}


async def test_line_separators_from_another_member_leave_the_editor_editable(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    alice, bob = await pair(relay.url, tmp_path, "first\nlast")
    app = EditorApp(alice, name="alice")
    try:
        async with app.run_test(size=SIZE) as pilot:
            editor = app.editor
            await wait_for(lambda: editor.text == "first\nlast", "alice's editor to show the text")
            # Bob's change arrives while the editor is open: it is replayed on the widget as an edit.
            chunk = "".join(f"{row}{char}{row}\n" for row, char in enumerate(BREAKS, 1))
            bob.text("notes").insert(len("first\n"), chunk)
            await bob.sync()
            text = "first\n" + chunk + "last"
            await wait_for(lambda: editor.text == text, "alice's editor to show bob's text")
            assert not editor.read_only and not editor.out_of_step
            assert editor.document.line_count == len(BREAKS) + 2
            for row, stand_in in enumerate(BREAKS.values(), 1):
                assert editor.get_line(row).plain == f"{row}{stand_in}{row}"
            # Alice types just after each of them, and deletes the last one with backspace.
            for row in range(1, len(BREAKS) + 1):
                editor.move_cursor((row, 2))
                await type_text(pilot, "!")
            await pilot.press("left", "backspace")
            assert not editor.read_only and app.failure is None
            edited = list(BREAKS)
            expected = "first\n" + "".join(f"{row}{char}!{row}\n" for row, char in enumerate(edited[:-1], 1))
            expected += f"{len(BREAKS)}!{len(BREAKS)}\nlast"
            assert editor.text == str(alice.text("notes")) == expected
            await alice.sync()
            await wait_for(lambda: str(bob.text("notes")) == expected, "bob to see alice's edits in place")
    finally:
        await alice.close()
        await bob.close()


async def test_a_form_feed_in_a_crlf_text_leaves_it_editable_and_mixed_endings_stay_read_only(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """A text with ``\\r\\n`` endings keeps them (the widget joins its lines with ``\\r\\n``). Mixed
    endings still cannot be shown as they are (the widget would join them with one kind), so the
    editor still shows such a text read-only."""
    alice, bob = await pair(relay.url, tmp_path, "one\r\ntwo")
    app = EditorApp(alice, name="alice")
    try:
        async with app.run_test(size=SIZE) as pilot:
            editor = app.editor
            bob.text("notes").insert(len("one\r\nt"), "\x0c")
            await bob.sync()
            await wait_for(lambda: editor.text == "one\r\nt\x0cwo", "alice's editor to show the form feed")
            assert not editor.read_only and editor.get_line(1).plain == "t\u240cwo"
            editor.move_cursor((1, 2))
            await type_text(pilot, "!")
            await alice.sync()
            await wait_for(lambda: str(bob.text("notes")) == "one\r\nt\x0c!wo", "bob to see alice's edit")
            bob.text("notes").insert(0, "zero\n")
            await bob.sync()
            await wait_for(lambda: editor.read_only, "the editor to stop editing a text of mixed endings")
            assert editor.out_of_step and str(alice.text("notes")) == "zero\none\r\nt\x0c!wo"
    finally:
        await alice.close()
        await bob.close()
