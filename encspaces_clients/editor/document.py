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

Textual measures a line's cells on the line as it is (``cell_len``), where a control or format
character takes no cell, while the editor draws a one-cell stand-in for it: the caret Textual
places (the terminal's cursor), where a line wraps, where the caret lands going up or down and
where a click lands were one column off per such character before it. The document therefore
also keeps each line as it is drawn (``ShownLines``), and Textual measures those: a stand-in is
one character for one, so every column is the same in both and only the widths differ.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from textual.document._document import Newline
from textual.geometry import Size
from textual.widgets.text_area import Document, DocumentBase, EditResult, Location

from ..terminal import printable

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
        self.shown_lines = [shown_line(line) for line in self._lines]  # kept beside the lines, edit by edit
        self.shown = ShownLines(self)

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
        self.shown_lines[top_row : bottom_row + 1] = [shown_line(line) for line in inserted]
        return EditResult((top_row + len(inserted) - 1, end_column), replaced)

    def get_size(self, tab_width: int) -> Size:
        """The size of the lines as they are drawn (see the module)."""
        return self.shown.get_size(tab_width)


def shown_line(line: str) -> str:
    """A line as the editor draws it: each control or format character (but the joiners) as a
    stand-in of one character (``terminal.printable``), so columns are the line's columns."""
    return printable(line, lines=True)


class ShownLines(DocumentBase):
    """A read-only view of a ``SharedDocument``'s lines as they are drawn, for Textual's
    measuring only (``WrappedDocument``, ``DocumentNavigator``, the widget's column widths):
    every location in it is the same location in the document. Edits go to the document."""

    def __init__(self, document: SharedDocument) -> None:
        self._document = document

    def replace_range(self, start: Location, end: Location, text: str) -> EditResult:
        raise TypeError("the lines as drawn are read-only: edit the SharedDocument")

    @property
    def text(self) -> str:
        return self._document.newline.join(self._document.shown_lines)

    @property
    def newline(self) -> Newline:
        return self._document.newline

    @property
    def lines(self) -> list[str]:
        return self._document.shown_lines

    def get_line(self, index: int) -> str:
        return self._document.shown_lines[index]

    def get_text_range(self, start: Location, end: Location) -> str:
        (top_row, top_column), (bottom_row, bottom_column) = sorted((start, end))
        lines = self._document.shown_lines
        if top_row == bottom_row:
            return lines[top_row][top_column:bottom_column]
        last = lines[bottom_row][:bottom_column] if bottom_row < len(lines) else ""
        return self.newline.join([lines[top_row][top_column:], *lines[top_row + 1 : bottom_row], last])

    def get_size(self, indent_width: int) -> Size:
        lines = self._document.shown_lines
        return Size(max((cell_len(line.expandtabs(indent_width)) for line in lines), default=0), len(lines))

    @property
    def line_count(self) -> int:
        return len(self._document.shown_lines)

    @property
    def start(self) -> Location:
        return (0, 0)

    @property
    def end(self) -> Location:
        return self._document.end

    def __getitem__(self, line_index: int | slice) -> str | list[str]:  # type: ignore[override]
        return self._document.shown_lines[line_index]


__all__ = ["SharedDocument", "ShownLines", "shown_line", "split_lines"]
