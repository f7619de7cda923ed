"""A Textual TextArea bound to a space's shared text.

Every local edit (typing, paste, cut, undo, redo) goes into the CRDT at once, at the same
character offsets. Remote changes arrive as verified TextChange deltas and are replayed on the
widget as edits, with the caret, the selection and the peers' cursors moved through them, so
nobody's cursor leaves the text it was on. Changes are taken from the stream both by a worker
and, synchronously, before every local edit: a local edit is therefore always made against
exactly the text the CRDT holds, and lands where the user meant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual._cells import cell_width_to_column_index
from textual.color import Color
from textual.expand_tabs import expand_tabs_inline
from textual.widgets import TextArea
from textual.widgets.text_area import DocumentNavigator, Edit, EditResult, Location, Selection, WrappedDocument

from encspaces import Space, TextChange
from encspaces.errors import EncspacesError

from .cursors import Delta, Peer, diff, plain_text_delta, replace_delta, transform_range
from .document import SharedDocument


class _MarkedLine(Text):
    """A line with peers' marks on it. The TextArea styles the whole line after ``get_line`` (the
    cursor-line highlight): such a style goes under the marks, so peers stay visible on our line."""

    def stylize(self, style: str | Style, start: int = 0, end: int | None = None) -> None:
        if start == 0 and end is None:
            self.stylize_before(style, start, end)
        else:
            super().stylize(style, start, end)


class SharedTextArea(TextArea):
    """Shows and edits ``space.text(doc)``; ``follow()`` must run for remote changes to appear."""

    def __init__(self, space: Space, doc: str, *, id: str | None = None) -> None:
        self.space = space
        self.doc = doc
        self.shared = space.text(doc)
        # Subscribe before reading the text: every change after this read is in the stream.
        self._changes = self.shared.changes()
        self._remote = False
        self.peers: dict[str, Peer] = {}
        self._marks: dict[int, list[tuple[int, int | None, Style]]] = {}
        self._labels: dict[int, list[tuple[str, Style]]] = {}  # row -> peers' names shown at its end
        self.failure: EncspacesError | None = None
        self.on_failure: Callable[[EncspacesError], None] | None = None
        self.out_of_step = False  # the text holds what the widget cannot show as it is (_shows_all)
        super().__init__(str(self.shared), soft_wrap=True, tab_behavior="indent", id=id)
        if not self._shows_all():
            self._out_of_step()

    def _set_document(self, text: str, language: str | None) -> None:
        """Hold the text in a ``SharedDocument``: Textual's own ``Document`` also breaks lines at
        a form feed, U+2028 and the like, and the widget's offsets would no longer be the text's.
        TextArea takes no document class, so the one it built is replaced as it is built."""
        super()._set_document(text, language)
        self.document = self.shared_document = SharedDocument(text)
        # Wrapping, up and down, the caret's cell: measured on the lines as drawn (document.py).
        self.wrapped_document = WrappedDocument(self.shared_document.shown, tab_width=self.indent_width)
        self.navigator = DocumentNavigator(self.wrapped_document)
        self._rewrap_and_refresh_virtual_size()

    # --- positions ---------------------------------------------------------------------------

    def offset_of(self, location: Location) -> int:
        row, column = location
        newline = len(self.document.newline)
        lines = self.document.lines
        return sum(len(line) + newline for line in lines[:row]) + column

    def location_of(self, offset: int) -> Location:
        """The (row, column) of a character offset, clamped to the text."""
        newline = len(self.document.newline)
        lines = self.document.lines
        remaining = max(0, offset)
        for row, line in enumerate(lines):
            if remaining <= len(line):
                return row, remaining
            remaining -= len(line) + newline
            if remaining < 0:  # inside a two-character line break
                return row, len(line)
        return len(lines) - 1, len(lines[-1])

    @property
    def selection_offsets(self) -> tuple[int, int]:
        """(anchor, cursor) as character offsets."""
        return self.offset_of(self.selection.start), self.offset_of(self.selection.end)

    # --- local edits -> CRDT -----------------------------------------------------------------

    def edit(self, edit: Edit) -> EditResult:
        if self._remote:
            return super().edit(edit)
        start, end = self.offset_of(edit.top), self.offset_of(edit.bottom)
        moved = self.pull()
        if moved:  # remote text landed first: make the edit where the user meant it
            start, end = transform_range(start, end, moved)
            edit = Edit(edit.text, self.location_of(start), self.location_of(end), edit.maintain_selection_offset)
        result = super().edit(edit)
        inserted = self.document.get_text_range(edit.top, result.end_location)
        self._mirror(start, end - start, inserted)
        return result

    def _undo_batch(self, edits: Sequence[Edit]) -> None:
        if self.pull():
            return  # remote edits came in: the undo history no longer fits the text
        before = self.text
        super()._undo_batch(edits)
        self._mirror(*diff(before, self.text))

    def _redo_batch(self, edits: Sequence[Edit]) -> None:
        if self.pull():
            return
        before = self.text
        super()._redo_batch(edits)
        self._mirror(*diff(before, self.text))

    def _mirror(self, index: int, deleted: int, inserted: str) -> None:
        if not deleted and not inserted:
            return
        try:
            with self.space.transaction():
                if deleted:
                    self.shared.delete(index, deleted)
                if inserted:
                    self.shared.insert(index, inserted)
        except EncspacesError as exc:  # the space failed under us: show its text, stop editing
            self._resync()
            self.fail(exc)
            return
        self._move_peers([replace_delta(index, deleted, inserted)])

    # --- CRDT -> widget ----------------------------------------------------------------------

    async def follow(self) -> None:
        """Apply remote changes as they are verified, until the widget goes away or fails."""
        try:
            async for change in self._changes:
                if self.failure is not None:
                    break
                applied = self.apply_change(change)
                if self.pull() or applied:
                    self._check_in_step()
        except EncspacesError as exc:  # the space failed: its streams end with its error
            self.fail(exc)

    def pull(self) -> list[Delta]:
        """Apply every change waiting in the stream now; the remote deltas applied, in order."""
        applied: list[Delta] = []
        if self.failure is not None:
            return applied
        while (change := self._changes.get_nowait()) is not None:
            if self.apply_change(change):
                applied.append(change.delta)
        if applied:
            self._check_in_step()
        return applied

    def apply_change(self, change: TextChange) -> bool:
        """Replay a remote change on the widget; False for our own (already shown) changes."""
        if change.local:
            return False
        if not plain_text_delta(change.delta) or self.out_of_step:
            self._resync()
            return True
        anchor, cursor = self.selection_offsets
        with self._applying_remote():
            index = 0
            for op in change.delta:
                if "retain" in op:
                    index += int(op["retain"])
                elif "insert" in op:
                    location = self.location_of(index)
                    self.insert(op["insert"], location)
                    index += len(op["insert"])
                elif "delete" in op:
                    self.delete(self.location_of(index), self.location_of(index + int(op["delete"])))
        anchor, cursor = transform_range(anchor, cursor, [change.delta])
        self.selection = Selection(self.location_of(anchor), self.location_of(cursor))
        self.history.clear()  # undo would otherwise replay stale positions over others' text
        self._move_peers([change.delta])
        return True

    @contextlib.contextmanager
    def _applying_remote(self) -> Iterator[None]:
        self._remote = True
        try:
            yield
        finally:
            self._remote = False

    def _check_in_step(self) -> None:
        if self.text != str(self.shared):
            self._resync()

    def _resync(self) -> None:
        """Show the CRDT's text as it is (a fallback that keeps the caret's offset)."""
        anchor, cursor = self.selection_offsets
        with self._applying_remote():
            self.load_text(str(self.shared))
        self.selection = Selection(self.location_of(anchor), self.location_of(cursor))
        if not self._shows_all():
            self._out_of_step()
        self.refresh_peers()

    def _shows_all(self) -> bool:
        """The widget holds the text exactly: the same characters (it would normalise mixed line
        endings) and no embed besides (``str()`` leaves embeds out, while each is a position of
        the shared text, so the widget's offsets past one would be the text's minus one)."""
        return self.text == str(self.shared) and len(self.shared) == len(self.text)

    def _out_of_step(self) -> None:
        """Mixed line endings, or embeds another client put in: the widget cannot show the text
        as it is, so it only shows it (read-only), rather than edit it at the wrong positions."""
        self.out_of_step = True
        self.read_only = True

    def fail(self, exc: EncspacesError) -> None:
        """Stop applying remote changes and stop editing (the banner says why)."""
        if self.failure is None:
            self.failure = exc
            self.read_only = True
            self._changes.close()
            if self.on_failure is not None:
                self.on_failure(exc)

    def on_unmount(self) -> None:
        self._changes.close()

    # --- peers' cursors ----------------------------------------------------------------------

    def set_peer(self, member: str, state: dict[str, Any] | None) -> None:
        peer = None if state is None else Peer.from_presence(member, state, self.doc)
        if peer is None:
            self.peers.pop(member, None)
        else:
            self.peers[member] = peer
        self.refresh_peers()

    def _move_peers(self, deltas: list[Delta]) -> None:
        for peer in self.peers.values():
            peer.anchor, peer.cursor = transform_range(peer.anchor, peer.cursor, deltas)
        self.refresh_peers()

    def refresh_peers(self) -> None:
        """Recompute where each peer's caret and selection are drawn, and redraw."""
        marks: dict[int, list[tuple[int, int | None, Style]]] = {}
        labels: dict[int, list[tuple[str, Style]]] = {}
        size = len(self.text)
        for peer in self.peers.values():
            cursor, anchor = min(peer.cursor, size), min(peer.anchor, size)
            colour = Color.parse(peer.colour)
            if anchor != cursor:
                low, high = sorted((anchor, cursor))
                (top_row, top_col), (bottom_row, bottom_col) = self.location_of(low), self.location_of(high)
                tint = Style(bgcolor=colour.blend(Color(0, 0, 0), 0.6).hex)
                for row in range(top_row, bottom_row + 1):
                    start = top_col if row == top_row else 0
                    end = bottom_col if row == bottom_row else None
                    marks.setdefault(row, []).append((start, end, tint))
            row, col = self.location_of(cursor)
            caret = Style(bgcolor=colour.hex, color="#000000")
            marks.setdefault(row, []).append((col, col + 1, caret))
            labels.setdefault(row, []).append((peer.name, caret))
        self._marks, self._labels = marks, labels
        self._line_cache.clear()
        self.refresh()

    def peer_location(self, member: str) -> Location | None:
        peer = self.peers.get(member)
        return None if peer is None else self.location_of(peer.cursor)

    def _shown_line(self, line_index: int) -> Text:
        """The line's text, each control or format character in it (but the joiners) shown as a
        stand-in of one character (``terminal.printable``, kept by the document line by line).

        TextArea draws the document as it is: an ESC another member put in went to the terminal
        raw (their sequences retitled the window, cleared the screen, set the clipboard), rich
        silently dropped BEL, BS and CR, which shifted every later column, and a bidi override
        made the terminal show the rest of the line in another order than it is. One stand-in per
        character keeps every offset the same, and the stand-in can be seen and deleted."""
        return Text(self.shared_document.shown_lines[line_index], end="", no_wrap=True)

    def get_column_width(self, row: int, column: int) -> int:
        """The cells before ``column`` as the line is drawn (Textual measures the line as it is,
        where a control character takes no cell but its stand-in takes one)."""
        return cell_len(expand_tabs_inline(self.shared_document.shown_lines[row][:column], self.indent_width))

    def cell_width_to_column_index(self, cell_width: int, row_index: int) -> int:
        """The column drawn at ``cell_width`` cells into the line (as ``get_column_width``)."""
        return cell_width_to_column_index(self.shared_document.shown_lines[row_index], cell_width, self.indent_width)

    def get_line(self, line_index: int) -> Text:
        """The line as drawn: peers' selections and carets in their colours, and after the text, the
        name of each peer whose caret is on it (past the end, so no column of the text moves)."""
        line = self._shown_line(line_index)
        marks, labels = self._marks.get(line_index, ()), self._labels.get(line_index, ())
        if not marks and not labels:
            return line
        line = _MarkedLine(line.plain, style=line.style, spans=list(line.spans), end=line.end)
        text_length = len(line.plain)
        for start, end, style in marks:
            length = len(line.plain)
            if end is not None and start >= length:  # a caret at the end of the line: draw it on a space
                line.append(" " * (end - length), style)
            else:
                line.stylize(style, start, length if end is None else end)
        if len(line.plain) == text_length:
            line.append(" ")  # where our own caret goes at the end of the line
        for name, style in labels:
            line.append(" ")
            line.append(f" {name} ", style + Style(italic=True))
        return line
