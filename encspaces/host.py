"""What the parts of a space need from it: the one host protocol they are wired through.

``Space`` is a facade over parts (the connection runner, the local store's writer, the admin
actions, the files, the presence channel, the snapshot keeper); each part is given a
``SpaceHost`` instead of the ``Space`` itself or a bundle of loose callables, as the relay's
rooms are given a ``RoomHost`` (encspaces_relay/room.py). The space implements it
(encspaces/space.py) over its private state; no part reads that state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .core.entry import Entry, Kind
from .core.head import SignedHead
from .core.identity import Identity
from .core.invites import InviteSecret
from .core.messages import BlobReply, ProofReply
from .core.outbox import Rename
from .core.session import ClientSession, Notice
from .core.verifier import LogVerifier, VerifiedEntry
from .document import Document
from .errors import EncspacesError, RelayError
from .options import SpaceOptions
from .supervision import TaskOwner


class SpaceHost(Protocol):
    """The space as its parts see it: state, identity, sending when live, failing, tasks, options."""

    # --- what every part reads --------------------------------------------------------------

    @property
    def identity(self) -> Identity: ...

    @property
    def space_bytes(self) -> bytes: ...

    @property
    def url(self) -> str:
        """The relay URL in use (or tried next)."""
        ...

    @property
    def urls(self) -> tuple[str, ...]:
        """Every relay URL the space may use, in the order the connection tries them."""
        ...

    @property
    def options(self) -> SpaceOptions: ...

    @property
    def verifier(self) -> LogVerifier:
        """The verified state (``verifier.state`` is the ``LogState``); replaced on restore, so read it each time."""
        ...

    @property
    def tasks(self) -> TaskOwner:
        """The space's task owner: every background task and timer of a part is spawned through it."""
        ...

    @property
    def document(self) -> Document: ...

    @property
    def spool_dir(self) -> Path:
        """A directory on the local store's file system, for temporary files."""
        ...

    @property
    def closed(self) -> bool: ...

    @property
    def error(self) -> EncspacesError | None: ...

    # --- what parts do to the space ---------------------------------------------------------

    def live_session(self) -> ClientSession | None:
        """The relay session while it is live (caught up), else None."""
        ...

    def send(self, data: bytes) -> None:
        """Hand a frame to the connection's one writer (only while ``live_session()`` is not None)."""
        ...

    def fail(self, exc: EncspacesError) -> None:
        """Fail the space for good with ``exc`` (kept as ``space.error``)."""
        ...

    def raise_if_failed(self) -> None:
        """Raise the space's error, or ``SpaceClosedError`` once it is closed."""
        ...

    def check_writable(self, need_write: bool = True) -> None:
        """Raise unless this member may write now (``need_write=False``: any role, as for adding one's own device)."""
        ...

    async def sync(self) -> None:
        """Wait until every local edit is in the verified log."""
        ...

    def queue_entry(self, kind: Kind, payload: bytes, parent: tuple[int, bytes] | None = None) -> Entry:
        """Sign and queue an entry of ours (parent: our verified head unless given)."""
        ...

    def apply_entry(self, result: VerifiedEntry) -> None:
        """Apply one verified entry's payload to the document."""
        ...

    # --- what the local store's writer needs (encspaces/persistence.py) ----------------------

    @property
    def snapshot_gap(self) -> bool:
        """The document lacks what a coming snapshot covers: no checkpoint of it may be taken."""
        ...

    def flush_batch(self) -> None:
        """Turn the open batch of local edits into outbox entries now."""
        ...

    def send_outbox(self) -> None:
        """Submit what the outbox holds that is stored and due, if the session is live."""
        ...

    @property
    def awaiting_log(self) -> Entry | None:
        """Our oldest entry handed to the relay and not yet in the verified log (None: none, or a
        resend after a refusal is scheduled); the evidence keeper holds it to the deadline."""
        ...

    # --- what the admin actions need (encspaces/admin.py) -------------------------------------

    @property
    def unsent(self) -> int:
        """Local edits not yet in the verified log (entries plus an open batch)."""
        ...

    def renumbered(self, renames: list[Rename]) -> None:
        """The outbox was numbered again (an action withdrawn): store it anew, and let waiters follow."""
        ...

    # --- what the connection runner reports -------------------------------------------------

    @property
    def genesis(self) -> bytes | None:
        """The genesis entry to create the space with, or the one the log began with (None: not known yet)."""
        ...

    @property
    def invite(self) -> InviteSecret | None:
        """The invite this device is joining with (None: it is a member already)."""
        ...

    @property
    def opening(self) -> bool:
        """An opening call still waits for the first sync of an empty local store."""
        ...

    def connection_started(self) -> None: ...

    def on_verified(self, entries: list[VerifiedEntry]) -> None: ...

    def on_anchored(self, seq: int) -> None: ...

    def on_live(self) -> None: ...

    def on_acked(self, head: SignedHead | None) -> None: ...

    def on_presence(self, data: bytes) -> None: ...

    def on_notice(self, notice: Notice) -> None: ...

    def on_blob_reply(self, reply: BlobReply) -> None: ...

    def on_checkpoint(self, note: bytes, ref: int | None) -> None: ...

    def on_proof_reply(self, reply: ProofReply) -> None: ...

    def on_offline(self) -> None: ...

    def on_device_in_use(self, refusal: RelayError) -> None:
        """The relay refused this device key's connection (``device_in_use``): another machine uses it."""
