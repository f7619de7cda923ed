"""The collaborative terminal editor: ``encspaces edit SPACE [DOC]``.

One shared text, edited live by every member who has it open. What it shows has always been
verified: remote text reaches the screen only through the space, which applies nothing the
relay sent before checking it. When a check fails, a red banner names the error, remote
changes stop and the editor goes read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Static

from encspaces import Space
from encspaces.core.safety import safety_code
from encspaces.errors import EncspacesError, VerificationError

from ..terminal import printable
from .cursors import clean_name, colour_for
from .textarea import SharedTextArea

STATUS_INTERVAL = 0.25  # seconds between refreshes of the status bar and the member list
QUIT_FLUSH_TIMEOUT = 5.0
QUIT_SYNC_TIMEOUT = 3.0

KEYS = (
    ("Ctrl+Q", "quit (your edits are saved on this device first)"),
    ("F1", "this help"),
    ("Ctrl+S", "save now (saving is automatic; this only confirms it)"),
    ("Ctrl+Z / Ctrl+Y", "undo / redo your own edits since the last remote change"),
    ("Ctrl+A", "select all"),
    ("Ctrl+C / Ctrl+X / Ctrl+V", "copy / cut / paste"),
    ("Shift+arrows", "select"),
    ("Ctrl+arrows", "move by word"),
    ("Home / End", "start / end of the line"),
    ("Tab", "indent"),
)


class HelpScreen(ModalScreen[None]):
    """The keys, and what the status bar means."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 76; height: auto; border: thick $accent; background: $surface; padding: 1 2; }
    """

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("Keys\n\n", style="bold")
        for key, what in KEYS:
            text.append(f"  {key:<26}", style="bold cyan")
            text.append(f"{what}\n")
        text.append("\nStatus bar\n\n", style="bold")
        text.append("  verified through seq N: every change shown is in the relay's log up to N and was\n"
                    "  checked on this device (signatures, hash chain, membership) before it was shown.\n"
                    "  safety code: read it to another member at the same seq; if the codes differ,\n"
                    "  the relay is showing you different histories.\n")
        text.append("\nPress Esc to close.", style="dim")
        with Vertical():
            yield Static(text)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class EditorApp(App[int]):
    """Edits the text ``doc`` of an open ``space``; the caller opens and closes the space."""

    TITLE = "encspaces"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help"),
        Binding("ctrl+s", "save", "Save", show=False),
    ]
    CSS = """
    #banner { display: none; background: $error; color: $text; text-style: bold; padding: 0 1; height: auto; }
    #banner.failed { display: block; }
    #main { height: 1fr; }
    #editor { width: 1fr; border: none; }
    #members { width: 34; border-left: solid $primary; padding: 0 1; overflow-y: auto; }
    #status { height: 1; background: $boost; padding: 0 1; }
    #status.offline { background: $warning 30%; }
    #status.failed { background: $error 40%; }
    """

    def __init__(self, space: Space, doc: str = "notes", *, name: str = "me", space_name: str | None = None,
                 status_interval: float = STATUS_INTERVAL) -> None:
        super().__init__()
        self.space = space
        self.doc = doc
        self.display_name = clean_name(name, space.identity.member_id[:8])
        self.colour = colour_for(space.identity.member_id)
        self.space_name = space_name or space.id[:12]
        self.status_interval = status_interval
        self._safety: tuple[int, str] = (-1, "")
        self.failure: EncspacesError | None = None
        self.names: dict[str, str] = {}  # member id -> the last name their presence gave (kept once they leave)

    # --- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="✎")
        yield Static(id="banner")
        with Horizontal(id="main"):
            yield SharedTextArea(self.space, self.doc, id="editor")
            yield Static(id="members")
        yield Static(id="status")
        yield Footer()

    @property
    def editor(self) -> SharedTextArea:
        return self.query_one("#editor", SharedTextArea)

    def on_mount(self) -> None:
        self.title = f"{self.space_name} / {self.doc}"
        self.sub_title = "end-to-end encrypted · every change verified before it is shown"
        editor = self.editor
        editor.on_failure = self._show_failure
        editor.focus()
        for member, state in self.space.presence.peers.items():
            self._remember(member, state)
            editor.set_peer(member, state)
        self.run_worker(editor.follow(), name="follow-text", group="sync")
        self.run_worker(self._follow_presence(), name="follow-presence", group="sync")
        self._publish_presence()
        self.refresh_status()
        self.set_interval(self.status_interval, self.refresh_status)

    # --- presence ----------------------------------------------------------------------------

    async def _follow_presence(self) -> None:
        stream = self.space.presence.changes()
        try:
            async for change in stream:
                self._remember(change.member, change.state)
                self.editor.set_peer(change.member, change.state)
                self._refresh_members()
        except EncspacesError:
            pass  # the space failed (its streams end with its error): the status line shows why
        finally:
            stream.close()

    def _remember(self, member: str, state: dict[str, Any] | None) -> None:
        if state is not None and "name" in state:
            self.names[member] = clean_name(state.get("name"), member[:8])

    def _publish_presence(self, editor: SharedTextArea | None = None) -> None:
        if self.failure is not None:
            return
        anchor, cursor = (editor or self.editor).selection_offsets
        self.space.presence.set({"name": self.display_name, "colour": self.colour, "doc": self.doc,
                                 "cursor": cursor, "selection": [anchor, cursor]})

    def on_text_area_selection_changed(self, event: SharedTextArea.SelectionChanged) -> None:
        # The event's own editor: one that arrives as the app quits (a remote change just moved
        # the caret) comes after the editor left the screen, where a query finds nothing.
        if isinstance(event.text_area, SharedTextArea):
            self._publish_presence(event.text_area)

    # --- status ------------------------------------------------------------------------------

    def refresh_status(self) -> None:
        try:
            status = self.query_one("#status", Static)
        except (NoMatches, ScreenStackError):
            return  # the app is shutting down: the interval may fire once more after its widgets went
        space = self.space
        if space.error is not None and self.failure is None:
            self.editor.fail(space.error)
        me = space.members.get(space.person_id)
        editor = self.editor
        if self.failure is None and not editor.out_of_step:
            editor.read_only = me is None or not me.role.can_write
        status.set_class(not space.connected and self.failure is None, "offline")
        status.set_class(self.failure is not None, "failed")
        status.update(self._status_text())
        self._refresh_members()

    def _status_text(self) -> Text:
        space = self.space
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.failure is not None:
            text.append("✖ stopped", style="bold red")
        elif space.connected:
            text.append("● online", style="bold green")
        else:
            text.append("○ offline, editing locally", style="bold yellow")
        text.append(" │ ")
        text.append(f"verified through seq {space.seq}", style="bold")
        unsent = space.unsent
        text.append(" │ ")
        text.append(f"{unsent} unsent" if unsent else "all sent", style="bold yellow" if unsent else "")
        witnessed = space.witness_status
        text.append(" │ ")
        text.append(printable(witnessed.describe()), style="bold green" if witnessed.seq == space.seq and witnessed.seq
                    else "dim" if witnessed.seq is None else "yellow")
        text.append(f" │ epoch {space.epoch} │ safety ")
        text.append(self.safety_code(), style="bold cyan")
        if self.editor.read_only and self.failure is None:
            text.append(" │ read-only", style="yellow")
        return text

    def safety_code(self) -> str:
        seq = self.space.seq
        if self._safety[0] != seq:
            self._safety = (seq, safety_code(self.space.space_bytes, seq, self.space.head) if seq else "–")
        return self._safety[1]

    def _refresh_members(self) -> None:
        space = self.space
        me = space.person_id
        peers = space.presence.peers  # by device: a person is online when any of their devices is
        editor = self.editor
        text = Text()
        text.append("Members\n", style="bold")
        for mid, member in sorted(space.members.items(), key=lambda item: item[1].added_seq):
            live = [d.id for d in member.devices if d.id in peers]
            state = peers[live[0]] if live else None
            online = space.connected if mid == me else state is not None
            peer = editor.peers.get(live[0]) if live else None
            if mid == me:
                name, colour = self.display_name, self.colour
            else:
                name = clean_name(state.get("name"), mid[:8]) if state else self.names.get(mid, mid[:8])
                colour = peer.colour if peer else colour_for(mid)
            text.append("● " if online else "○ ", style=colour if online else "dim")
            text.append(name + (" (you)" if mid == me else ""), style="bold" if mid == me else "")
            text.append(f"\n   {member.role.value}", style="dim")
            text.append(" · online" if online else " · offline", style="green" if online else "dim")
            if len(member.devices) > 1:
                text.append(f" · {len(member.devices)} devices", style="dim")
            location = editor.peer_location(live[0]) if peer else None
            if location is not None:
                text.append(f" · L{location[0] + 1}:{location[1] + 1}", style=colour)
            text.append("\n")
        text.append("\nRelay\n", style="bold")
        text.append(f"{space.url}\n", style="dim")
        if self.failure is not None:
            text.append("not trusted any more", style="bold red")
        else:
            text.append("connected" if space.connected else "reconnecting…",
                        style="green" if space.connected else "yellow")
        text.append("\n\nSafety code ", style="bold")
        text.append(f"at seq {space.seq}\n", style="dim")
        code = self.safety_code().split()
        text.append(" ".join(code[:3]) + "\n" + " ".join(code[3:]) + "\n", style="cyan")
        self.query_one("#members", Static).update(text)

    # --- failure -----------------------------------------------------------------------------

    def _show_failure(self, exc: EncspacesError) -> None:
        self.failure = exc
        what = "verification failed" if isinstance(exc, VerificationError) else "the space stopped"
        banner = self.query_one("#banner", Static)
        banner.update(Text(f"⚠ {what}: {type(exc).__name__}: {printable(str(exc))}\n"
                           "Remote changes are no longer applied and this copy is read-only. Compare the "
                           "safety code with another member; quit with Ctrl+Q."))
        banner.add_class("failed")
        self.refresh_status()

    # --- actions -----------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit once every edit is durable on this device, and sent if the relay is there."""
        # A failed space keeps its outbox on disk; the banner already says why.
        with contextlib.suppress(EncspacesError, TimeoutError):
            await asyncio.wait_for(self.space.flush(), QUIT_FLUSH_TIMEOUT)
            if self.space.connected:  # online: let the last keystrokes reach the others too
                await asyncio.wait_for(self.space.sync(), QUIT_SYNC_TIMEOUT)
        self.exit(0)

    async def action_save(self) -> None:
        try:
            await self.space.flush()
        except EncspacesError as exc:
            self.notify(f"not saved: {printable(str(exc))}", severity="error")
            return
        unsent = self.space.unsent
        self.notify("saved on this device" + (f"; {unsent} edits still to send" if unsent else "; all sent"))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


async def run_editor(space: Space, doc: str = "notes", *, name: str = "me", space_name: str | None = None,
                     **options: Any) -> int:
    """Run the editor full-screen on an open space until the user quits; the exit code."""
    space.text(doc)  # a name that is not a text fails here, as one line, not inside the app
    app = EditorApp(space, doc, name=name, space_name=space_name)
    result = await app.run_async(**options)
    return 0 if result is None else int(result)
