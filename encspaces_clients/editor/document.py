"""The editor's document: lines break only at a line ending (``\\n``, ``\\r\\n``, ``\\r``).

Textual's ``Document`` splits lines with ``str.splitlines``, which also breaks at a form feed,
a vertical tab, ``\\x1c``-``\\x1e``, U+0085, U+2028 and U+2029, and joins the lines back with the
one line ending it detected. A single such character from any writer made the widget's text
differ from the shared text (every later offset shifted), and the editor fell back to showing
the text read-only, for every member while it was there. Here those characters stay inside
their line, where the editor draws a stand-in for each (``terminal.printable``), so every
offset of the widget is the shared text's and editing goes on around them.

Texts without those characters split exactly as before: mixed line endings still do not join
back to the same text, and the editor still shows such a text read-only.
"""

from __future__ import annotations

import re

from textual.widgets.text_area import Document, EditResult, Location

_LINE_ENDING = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` without their endings; a text ending with one ends with an empty
    line, and the empty text is one empty line (what Textual's ``Document`` keeps)."""
    return _LINE_ENDING.split(text)


class SharedDocument(Document):
    """A plain-text ``Document`` whose lines break only at line endings (see the module)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)  # detects the line ending the document joins lines with
        self._lines = split_lines(text)

    def replace_range(self, start: Location, end: Location, text: str) -> EditResult:
        """As ``Document.replace_range``, with ``text`` split at line endings only."""
        (top_row, top_column), (bottom_row, bottom_column) = top, bottom = sorted((start, end))
        replaced = self.get_text_range(top, bottom)
        lines = self._lines
        before = lines[top_row][:top_column] if top_row < len(lines) else ""
        after = lines[bottom_row][bottom_column:] if bottom_row < len(lines) else ""
        inserted = split_lines(text)
        end_column = len(inserted[-1]) + (len(before) if len(inserted) == 1 else 0)
        inserted[0] = before + inserted[0]
        inserted[-1] += after
        lines[top_row : bottom_row + 1] = inserted
        return EditResult((top_row + len(inserted) - 1, end_column), replaced)


__all__ = ["SharedDocument", "split_lines"]
