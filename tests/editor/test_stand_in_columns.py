"""Control and format characters another member put in a line are drawn as one-cell stand-ins
(``terminal.printable``), while Textual measured the line as it is, where each takes no cell:
the caret Textual places (the terminal's cursor), where a line wraps, where the caret lands
going up and where a click lands were one column off per such character before them. Textual
now measures the lines as drawn, so what is drawn and where the caret is agree.
"""

from __future__ import annotations

from pathlib import Path

from rich.cells import cell_len
from rich.text import Text

from .conftest import RelayHandle, showing

# ESC and BEL (controls), a right-to-left override and a left-to-right isolate (format characters).
HIDDEN = "\x1b\x07\u202e\u2066"
TEXT = f"{HIDDEN}abcdef\n0123456789\n" + HIDDEN * 20 + "x" * 60


async def test_the_caret_wrapping_moves_and_clicks_follow_the_stand_ins_as_drawn(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    async with showing(relay.url, tmp_path, TEXT) as (app, pilot, _, _):
        editor = app.editor
        drawn = editor.get_line(0).plain
        assert drawn == "\u241b\u2407\ufffd\ufffdabcdef"
        # The caret Textual places is on the cell where the caret is drawn, at every column.
        left = editor.content_region.x + editor.gutter_width
        for column in range(len(drawn) + 1):
            editor.move_cursor((0, column))
            await pilot.pause()
            assert editor.cursor_screen_offset.x == left + cell_len(drawn[:column]), column
        # Up from column 6 of a plain line lands on column 6, drawn just above it.
        editor.move_cursor((1, 6))
        await pilot.press("up")
        assert editor.cursor_location == (0, 6)
        # A click on the cell where "c" is drawn puts the caret before "c".
        x = editor.gutter.left + editor.gutter_width + cell_len(drawn[: drawn.index("c")])
        await pilot.click(editor, offset=(x, 0))
        assert editor.cursor_location == (0, drawn.index("c"))
        # A line of 80 stand-ins and 60 letters is wider than the editor: it wraps, and every
        # row of it fits (the letters past the edge were cut off).
        width = editor.content_region.width - editor.gutter_width
        offsets = editor.wrapped_document.get_offsets(2)
        assert offsets
        rows = Text(editor.get_line(2).plain).divide(offsets)
        assert all(cell_len(row.plain) <= width for row in rows), [cell_len(row.plain) for row in rows]
