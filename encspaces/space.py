"""A space as an application sees it: shared objects, membership, and sync with the relay.

This is the SDK's I/O edge. Local edits go into the CRDT at once and are batched for a few
milliseconds into one entry (one signature and one AEAD for many keystrokes); frames from the
relay go through the pure ClientSession/LogVerifier and are applied only once verified. Once
misbehaviour is detected the space fails for good: ``error`` holds why and every later call
raises it.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pycrdt
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from . import crypto
from .document import (
    Change,
    Document,
    SharedList,
    SharedMap,
    SharedTable,
    SharedText,
)
from .encoding import DEFAULT_MAX_MESSAGE
from .entry import MAX_ENTRY_SIZE, Entry, Kind, build_entry, open_body
from .errors import (
    ConnectionFailedError,
    EncspacesError,
    EntryTooLargeError,
    HandshakeError,
    HistoryError,
    MembershipRevokedError,
    NotPermittedError,
    RelayError,
    SpaceClosedError,
    VerificationError,
)
from .files import SpaceFiles
from .history import HistoryEntry, SpaceView, history_entry, rebuild
from .identity import Identity, PublicIdentity, member_id, parse_member_id
from .invites import InviteBody, InviteInfo, InviteLink, InviteSecret, JoinBody, RevokeInviteBody
from .key_policy import retired_epochs, rotation_due
from .log_state import LogState, space_id_of
from .membership import Member, Policy, Role, SetRoleBody, add_member_body, genesis_body
from .membership_events import MEMBERSHIP_KINDS, MemberChange, member_change
from .messages import Challenge, decode_message
from .presence_channel import PresenceChannel
from .redaction import redact
from .rejections import RejectedEntry, RejectionKind
from .rekey import invite_body, keys_to_give, reissue, rekey_body
from .session import (
    Acked,
    BecameLive,
    BlobReplyReceived,
    ClientSession,
    Notice,
    PresenceReceived,
    Send,
    SessionState,
    Verified,
)
from .shared.feed import ChangeStream
from .shared.kinds import ObjectKind
from .snapshot import SnapshotPayload, content_hash
from .snapshot_keeper import SnapshotKeeper
from .store import LocalStore
from .streams import EventHub, EventStream
from .verifier import LogVerifier, VerifiedEntry

log = logging.getLogger("encspaces.client")

BATCH_DELAY = 0.005  # seconds local edits are merged before they become one entry
MAX_BATCH_UPDATE = MAX_ENTRY_SIZE // 2  # leave room for header, tag and framing
# pycrdt's merge_updates is superlinear in the number of updates (shared/COSTS.md): a fast
# typist's batch is cut into entries of at most this many transactions.
MAX_BATCH_COUNT = 256
# A checkpoint (document and verified state) every this many verified entries, and at close:
# reopening replays only what came after it.
CHECKPOINT_EVERY = 1000
# The largest entry a relay with the default frame size accepts (relay/frames.py).
MAX_SUBMITTED_ENTRY = DEFAULT_MAX_MESSAGE - 1024
MAINTENANCE_INTERVAL = 1.0  # seconds between checks of the time-based policy
RECONNECT_MIN = 0.05
RECONNECT_MAX = 5.0
# Relay refusals that reconnecting cannot cure: the space is failed with the RelayError.
PERMANENT_REFUSALS = {
    "not_a_member", "unknown_space", "rejected", "malformed", "unexpected", "bad_auth", "bad_genesis",
    "wrong_relay", "too_large", "bad_invite", "removed",
}


def encode_space_id(space: bytes) -> str:
    return member_id(space)


def decode_space_id(text: str) -> bytes:
    try:
        return parse_member_id(text)
    except EncspacesError as exc:
        raise EncspacesError(f"not a space id: {text!r}") from exc


def _mark_retrieved(future: asyncio.Future[None]) -> None:
    """The failure is kept in ``Space.error``; nobody need await the first-sync future."""
    if not future.cancelled():
        future.exception()


@dataclass
class _Pending:
    """What is waiting to be written to the local store, written in one transaction."""

    log: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    outbox: list[tuple[int, bytes]] = field(default_factory=list)
    outbox_done_through: int | None = None
    meta: dict[str, bytes] = field(default_factory=dict)
    checkpoint: tuple[int, bytes, bytes] | None = None
    outbox_reset: bool = False  # the outbox was re-issued: replace the stored one
    purge: bool = False  # keys were forgotten: leave no copy in the write-ahead log
    redactions: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, local form) to store

    def __bool__(self) -> bool:
        return bool(self.log or self.outbox or self.meta or self.outbox_done_through is not None
                    or self.checkpoint is not None or self.outbox_reset or self.purge or self.redactions)


class Space:
    """A connected space. Use ``create_space`` or ``connect`` to get one."""

    def __init__(self, url: str, identity: Identity, space: bytes, store: LocalStore) -> None:
        self.url = url
        self.identity = identity
        self.space_bytes = space
        self.id = encode_space_id(space)
        self._store = store
        self._verifier = LogVerifier(space, identity)
        self._document = Document(self._on_local_update)
        self._me = identity.public.sign_key
        self._genesis: bytes | None = None
        # Local edits: updates not yet in an entry, then signed entries not yet in the verified log.
        self._updates: builtins.list[bytes] = []
        self._batch_timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_flush = 0.0  # loop time of the last batch turned into an entry
        self._outbox: builtins.list[Entry] = []
        self._last_author_seq = 0  # newest author_seq we created (in doc already)
        self._sent_through = 0  # author_seq sent on the current connection
        self._send_queue: asyncio.Queue[bytes] | None = None  # one writer keeps submissions in order
        # Connection.
        self._session: ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._first_sync: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first_sync.add_done_callback(_mark_retrieved)
        self._progress = asyncio.Event()
        self.error: EncspacesError | None = None
        self._closed = False
        self.connected = False
        # Persistence.
        self._pending = _Pending()
        self._write_lock = asyncio.Lock()
        self._checkpoint_seq = 0
        self._rotation_queued_for = 0  # the epoch we already queued a policy rotation for
        self._revoking: set[bytes] = set()  # expired invites we already queued a revocation for
        self._conflicts: dict[bytes, str] = {}  # our entries refused as moot -> why (see _control)
        self._redacting: asyncio.Future[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._member_changes: EventHub[MemberChange] = EventHub()
        self._invite: InviteSecret | None = None  # while joining with an invite link
        self._writer: asyncio.Task[None] | None = None
        self._write_wanted = asyncio.Event()
        self.skipped: builtins.list[VerifiedEntry] = self._verifier.skipped
        self.rejected: builtins.list[RejectedEntry] = []  # entries of the log not applied (rejections.py)
        self._rejections: EventHub[RejectedEntry] = EventHub()
        self.snapshots = SnapshotKeeper(
            self._me, self._document, lambda kind, body, seq, head: self._queue_entry(kind, body, (seq, head)),
            self._fail, self._apply_one,
        )
        self.presence = PresenceChannel(identity, lambda: self._verifier, self._send_presence, self._fail,
                                        lambda: self.snapshots.bad_seqs, self.snapshots.peer_says_bad)
        self.files = SpaceFiles(self)  # encrypted files: encspaces/files.py

    # --- public API ------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The newest seq of the verified log."""
        return self._verifier.seq

    @property
    def head(self) -> bytes:
        return self._verifier.head

    @property
    def epoch(self) -> int:
        return self._verifier.state.epoch

    @property
    def members(self) -> dict[str, Member]:
        return {member_id(k): m for k, m in self._verifier.state.members.items()}

    @property
    def unsent(self) -> int:
        """Local edits not yet in the verified log (entries plus an open batch)."""
        return len(self._outbox) + (1 if self._updates else 0)

    @property
    def doc(self) -> pycrdt.Doc[Any]:
        return self._document.doc

    def text(self, name: str) -> SharedText:
        """The shared text ``name`` (created on first write)."""
        return self._document.text(name, self._check_writable)

    def list(self, name: str) -> SharedList:
        """The shared list ``name``: plain values or nested maps and lists."""
        return self._document.list(name, self._check_writable)

    def map(self, name: str) -> SharedMap:
        """The shared map ``name``: a dict-like object."""
        return self._document.map(name, self._check_writable)

    def table(self, name: str) -> SharedTable:
        """The shared table ``name``: rows with generated ids, merged column by column."""
        return self._document.table(name, self._check_writable)

    def objects(self) -> builtins.list[tuple[str, str]]:
        """Every shared object in the space as (name, kind)."""
        return [(name, str(kind)) for name, kind in self._document.objects()]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several edits into one entry (one signature, applied atomically by others).

        Nothing is sent before the block ends, so do not await ``sync()`` inside it.
        """
        self._check_writable()
        with self._document.transaction():
            yield
        self._flush_batch()

    def changes(self, name: str | None = None, kind: ObjectKind | None = None) -> ChangeStream[Change]:
        """Typed change events from now on (local and remote, with the remote author's member id)."""
        return self._document.changes(name, kind)

    # --- membership, roles, invites and keys ----------------------------------------------

    def rejected_entries(self) -> EventStream[RejectedEntry]:
        """Every entry from now on whose payload could not be applied (see ``encspaces.RejectedEntry``).

        Every member rejects the same entries; the space goes on past them. ``rejected`` lists
        those seen since the space was opened.
        """
        return self._rejections.stream()

    def membership_changes(self) -> EventStream[MemberChange]:
        """Every membership change from now on, as verified in the log (add, join, role, removal)."""
        return self._member_changes.stream()

    @property
    def invites(self) -> builtins.list[InviteInfo]:
        """Open invites (not revoked, not used up; expired ones are listed with ``expired``)."""
        now = int(time.time() * 1000)
        return [InviteInfo.of(invite, now) for invite in self._verifier.state.invites.values() if invite.open]

    @property
    def policy(self) -> Policy:
        return self._verifier.state.policy

    async def add_member(
        self, public_identity: PublicIdentity | str, role: str | Role = Role.WRITER, history: bool = True
    ) -> None:
        """Add a member (admins only); ``history`` gives them every retained epoch key, else the current one.

        Returns once the membership entry is verified in the log.
        """
        state = self._require_admin("add members")
        new = PublicIdentity.parse(public_identity) if isinstance(public_identity, str) else public_identity
        if new.sign_key in state.members:
            raise NotPermittedError(f"{new.member_id} is already a member")
        keys = keys_to_give(self._verifier.epoch_keys, state.epoch, history)
        await self._control(Kind.ADD_MEMBER, add_member_body(new, Role(role), keys, history))
        if not history:
            await self.write_snapshot()  # what they cannot decrypt, they start from

    async def remove_member(self, member: str | PublicIdentity, revoke_invites: bool = True) -> None:
        """Remove a member and start a new epoch whose key they never get (admins only).

        Open invites receive every new key, and the removed member may know their links: so by
        default every open invite is revoked first (pass ``revoke_invites=False`` to keep them).
        """
        state = self._require_admin("remove members")
        key = self._member_key(member)
        self._keep_an_admin(state, key, None)
        self._flush_batch()
        if revoke_invites:
            for invite in [k for k, inv in state.invites.items() if inv.open]:
                self._queue_entry(Kind.REVOKE_INVITE, RevokeInviteBody(invite).encode())
        await self._control(Kind.REMOVE_MEMBER, rekey_body(state, remove=key))

    async def set_role(self, member: str | PublicIdentity, role: str | Role) -> None:
        """Change a member's role: admin, writer or reader (admins only)."""
        state = self._require_admin("change roles")
        key, new_role = self._member_key(member), Role(role)
        if state.members[key].role is new_role:
            raise NotPermittedError(f"{member_id(key)} already has role {new_role.value}")
        self._keep_an_admin(state, key, new_role)
        await self._control(Kind.SET_ROLE, SetRoleBody(key, new_role).encode())

    async def rotate_key(self) -> None:
        """Start a new epoch now (admins only); the policy can also make admins' clients do it."""
        await self._control(Kind.ROTATE, rekey_body(self._require_admin("rotate the key")))

    async def set_policy(self, policy: Policy) -> None:
        """Set rotation and retention (admins only); see ``encspaces.Policy``."""
        self._require_admin("set the policy")
        await self._control(Kind.POLICY, policy.encode())

    async def create_invite(
        self, role: str | Role = Role.WRITER, uses: int = 1, expires_in: float | None = 7 * 24 * 3600,
        history: bool = True,
    ) -> str:
        """An invite link to paste in a chat: relay address, space id and a secret the relay never sees.

        ``expires_in`` is in seconds (None: never); ``uses`` is how many people may join with it.
        """
        state = self._require_admin("create invites")
        if uses < 1:
            raise ValueError("an invite needs at least one use")
        secret = InviteSecret.generate()
        expires = None if expires_in is None else int((time.time() + expires_in) * 1000)
        body = InviteBody(secret.invite_key, secret.box_key, Role(role), uses, expires, history, ())
        await self._control(Kind.INVITE, invite_body(body, self._verifier.epoch_keys, state.epoch))
        if not history:
            await self.write_snapshot()  # a newcomer without history starts from it
        return str(InviteLink(self.url, self.space_bytes, secret))

    async def revoke_invite(self, invite: str) -> None:
        """Revoke an invite, named by its id (``space.invites``) or by its link."""
        state = self._require_admin("revoke invites")
        key = InviteLink.parse(invite).secret.invite_key if invite.startswith("esinv") else parse_member_id(invite)
        found = state.invites.get(key)
        if found is None or not found.open:
            raise NotPermittedError(f"no open invite {invite[:20]}… in this space")
        await self._control(Kind.REVOKE_INVITE, RevokeInviteBody(key).encode())

    def _require_admin(self, action: str) -> LogState:
        self._check_writable()
        state = self._verifier.state
        role = state.role_of(self._me)
        if role is None or not role.can_manage:
            raise NotPermittedError(f"only an admin may {action}; your role is {role.value if role else 'none'}")
        return state

    def _member_key(self, member: str | PublicIdentity) -> bytes:
        key = member.sign_key if isinstance(member, PublicIdentity) else (
            PublicIdentity.parse(member).sign_key if member.startswith("esid") else parse_member_id(member))
        if key not in self._verifier.state.members:
            raise NotPermittedError(f"{member_id(key)} is not a member of this space")
        return key

    @staticmethod
    def _keep_an_admin(state: LogState, member: bytes, new_role: Role | None) -> None:
        if state.members[member].role is Role.ADMIN and new_role is not Role.ADMIN and len(state.admins()) == 1:
            raise NotPermittedError(
                f"{member_id(member)} is the last admin of the space: make someone else admin first"
            )

    async def _control(self, kind: Kind, body: bytes) -> None:
        self._flush_batch()
        self._queue_entry(kind, body)
        raw = self._outbox[-1].raw
        await self.sync()
        refused = self._conflicts.pop(raw, None)
        if refused is not None:
            raise NotPermittedError(f"the relay refused it: {refused}")

    # --- history -------------------------------------------------------------------------

    async def history(self, before: int | None = None, limit: int = 100) -> builtins.list[HistoryEntry]:
        """Verified entries, newest first: ``limit`` of them below seq ``before`` (None: from the head).

        Page through a long log by passing the last seq of one page as ``before`` of the next.
        """
        await self._persist()
        rows = await self._store.load_log_page(before, limit)
        return [history_entry(seq, raw) for seq, raw in rows]

    async def at(self, seq: int) -> SpaceView:
        """A read-only view of every shared object as it was once the log reached ``seq``."""
        self._raise_if_failed()
        if not 1 <= seq <= self.seq:
            raise HistoryError(f"seq {seq} is outside the verified log (1..{self.seq})")
        await self._persist()
        rows = await self._store.load_log()
        return rebuild(rows, seq, self._verifier.epoch_keys, self._verifier.forgotten, self.snapshots.bad_seqs)

    async def write_snapshot(self) -> None:
        """Post a snapshot of the document now (members who may write); the policy also does it by itself.

        Useful right after adding someone without history: they start from it.
        """
        self._check_writable()
        await self.sync()  # our own edits in the log: the document is then exactly the verified state
        if self._outbox or self._updates or self._verifier.awaiting_key or self.snapshots.in_gap:
            raise NotPermittedError("the document is not settled (edits in flight or entries not yet readable)")
        payload = SnapshotPayload(self._document.state(), content_hash(self._document.doc)).encode()
        await self._control(Kind.SNAPSHOT, payload)

    async def _persist(self) -> None:
        async with self._write_lock:
            await self._write_pending()

    async def sync(self) -> None:
        """Return once every local edit made before the call is in the verified log."""
        self._raise_if_failed()
        self._flush_batch()
        target = self._last_author_seq
        # min(): re-issuing after a rotation may drop entries it made pointless, renumbering the rest
        while self._verifier.state.author_seqs.get(self._me, 0) < min(target, self._last_author_seq):
            self._raise_if_failed()
            self._progress.clear()
            await self._progress.wait()
        self._raise_if_failed()

    async def flush(self) -> None:
        """Return once every local edit made before the call is durable on this device.

        Such an edit survives a crash or kill of the process and is sent after a restart.
        """
        self._flush_batch()
        async with self._write_lock:
            await self._write_pending()
        self._raise_if_failed()

    async def wait_for_seq(self, seq: int) -> None:
        """Return once the verified log reaches ``seq`` (for instance another member's ``seq``)."""
        self._raise_if_failed()
        while self._verifier.seq < seq:
            self._raise_if_failed()
            self._progress.clear()
            await self._progress.wait()
        self._raise_if_failed()

    async def close(self) -> None:
        """Persist every local edit (unsent ones stay in the outbox for next time) and disconnect."""
        if self._closed:
            return
        self._flush_batch()
        self._closed = True
        self._progress.set()
        await self.presence.stop()
        self.snapshots.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._redacting is not None:
            await asyncio.gather(self._redacting, return_exceptions=True)
        if self._writer is not None:
            self._write_wanted.set()  # the writer finishes what it holds, then returns
            await asyncio.gather(self._writer, return_exceptions=True)
        if self.error is None and self.seq > self._checkpoint_seq:
            self._take_checkpoint()
        async with self._write_lock:
            await self._write_pending()
        await self._store.close()

    async def __aenter__(self) -> Space:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- failure ---------------------------------------------------------------------------

    def _fail(self, exc: EncspacesError) -> None:
        if self.error is None:
            self.error = exc
            log.error("space %s failed: %s: %s", self.id[:12], type(exc).__name__, exc)
        self._progress.set()
        runner = self._runner
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()  # stop applying anything more from this relay
        if not self._first_sync.done():
            self._first_sync.set_exception(exc)

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
        if self._closed:
            raise SpaceClosedError("the space is closed")

    def _check_writable(self) -> None:
        self._raise_if_failed()
        role = self._verifier.state.role_of(self._me)
        if role is None and self._verifier.seq > 0:
            raise NotPermittedError("you are not a member of this space (yet): nothing you write would be accepted")
        if role is not None and not role.can_write:
            raise NotPermittedError(f"your role {role.value} may not write in this space")

    # --- local edits -> entries ------------------------------------------------------------

    def _on_local_update(self, update: bytes) -> None:
        """Batch on the trailing edge only under load: the first edit after a pause goes at once.

        A person typing at human speed then waits for no timer (the edit leaves on the next
        turn of the event loop), while a burst still shares one entry per BATCH_DELAY.
        """
        self._updates.append(update)
        if len(self._updates) >= MAX_BATCH_COUNT:
            self._flush_batch()
        elif self._batch_timer is None:
            loop = asyncio.get_running_loop()
            quiet = loop.time() - self._last_flush >= BATCH_DELAY
            self._batch_timer = loop.call_soon(self._flush_batch) if quiet else \
                loop.call_later(BATCH_DELAY, self._flush_batch)

    def _flush_batch(self) -> None:
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        if not self._updates or self.error is not None:
            return
        self._last_flush = asyncio.get_running_loop().time()
        updates, self._updates = self._updates, []
        try:
            self._entries_from(updates)
        except EntryTooLargeError as exc:
            # One edit too large for any entry (a huge paste): it cannot reach anyone. Say so, and
            # stop: carrying on would let this document drift from everyone else's.
            self._fail(EntryTooLargeError(f"{exc}: split very large edits into smaller ones"))

    def _entries_from(self, updates: builtins.list[bytes]) -> None:
        group: builtins.list[bytes] = []
        size = 0
        for update in updates:
            if group and size + len(update) > MAX_BATCH_UPDATE:
                self._queue_entry(Kind.DATA, pycrdt.merge_updates(*group))
                group, size = [], 0
            group.append(update)
            size += len(update)
        self._queue_entry(Kind.DATA, group[0] if len(group) == 1 else pycrdt.merge_updates(*group))

    def _queue_entry(self, kind: Kind, payload: bytes, parent: tuple[int, bytes] | None = None) -> None:
        """Sign and queue an entry; its parent is our verified head unless given (snapshots)."""
        verifier = self._verifier
        epoch = verifier.state.epoch
        self._last_author_seq += 1
        parent_seq, parent_hash = parent or (verifier.seq, verifier.head)
        entry = build_entry(
            self.identity,
            space=self.space_bytes,
            author_seq=self._last_author_seq,
            epoch=epoch,
            kind=kind,
            parent_seq=parent_seq,
            parent_hash=parent_hash,
            payload=payload,
            epoch_key=verifier.epoch_keys.get(epoch) if kind.is_encrypted else None,
        )
        if len(entry.raw) > MAX_SUBMITTED_ENTRY:
            self._last_author_seq -= 1
            raise EntryTooLargeError(
                f"a {kind.value} entry of {len(entry.raw)} bytes is over the relay's limit of {MAX_SUBMITTED_ENTRY}"
            )
        self._outbox.append(entry)
        self._pending.outbox.append((entry.header.author_seq, entry.raw))
        self._write_wanted.set()
        self._send_outbox()

    def _send_outbox(self) -> None:
        session, queue = self._session, self._send_queue
        if session is None or queue is None or session.state is not SessionState.LIVE:
            return
        unsent = [e.raw for e in self._outbox if e.header.author_seq > self._sent_through]
        if not unsent:
            return
        self._sent_through = self._outbox[-1].header.author_seq
        # Several messages when many entries queued up offline: stay under the frame limit.
        chunk: builtins.list[bytes] = []
        size = 0
        for raw in unsent:
            if chunk and size + len(raw) > DEFAULT_MAX_MESSAGE // 2:
                queue.put_nowait(session.submit(chunk))
                chunk, size = [], 0
            chunk.append(raw)
            size += len(raw)
        queue.put_nowait(session.submit(chunk))

    # --- verified entries -> document ------------------------------------------------------

    def _apply_verified(self, results: builtins.list[VerifiedEntry]) -> None:
        for result in results:
            if not result.late:
                stored = redact(result.entry, self._verifier.forgotten) or result.entry.raw
                self._pending.log.append((result.seq, stored, result.head))
            if result.kind is Kind.GENESIS and self._genesis is None:
                self._genesis = result.entry.raw
            if result.problem is not None and not result.awaiting_key:
                self._reject(result, "undecryptable", result.problem)
            if not self.snapshots.on_entry(result):
                self._apply_one(result)
            if not result.late and result.kind in MEMBERSHIP_KINDS:
                self._member_changes.publish(member_change(result, self._verifier.state))
        mine = self._verifier.state.author_seqs.get(self._me, 0)
        self._last_author_seq = max(self._last_author_seq, mine)
        if self._outbox and self._outbox[0].header.author_seq <= mine:
            self._outbox = [e for e in self._outbox if e.header.author_seq > mine]
            self._pending.outbox_done_through = mine
        removed_at = self._verifier.removed_at
        if removed_at is not None and self._invite is None:  # (with an invite we are coming back)
            self._fail(MembershipRevokedError(f"this device's member was removed from the space at seq {removed_at}"))
        elif self._outbox and self._outbox[0].header.epoch != self.epoch:
            self._reissue_outbox()
        fresh = [r.seq for r in results if not r.late]
        if fresh and self.error is None:
            idle = not self._outbox and not self._updates and not self._verifier.awaiting_key
            self.snapshots.after_frame(fresh[0], fresh[-1], self._verifier.state, idle)
        self._maintain()
        if self.seq - self._checkpoint_seq >= CHECKPOINT_EVERY:
            self._take_checkpoint()
        self._write_wanted.set()
        self._progress.set()

    def _apply_one(self, result: VerifiedEntry) -> None:
        if result.plaintext is None:
            return  # (an undecryptable one was reported by _apply_verified)
        header = result.entry.header
        if header.author == self._me and header.author_seq <= self._last_author_seq:
            return  # our own edit, already in the document
        try:
            self._document.apply_remote(result.plaintext, result.entry.author_id)
        except ValueError as exc:
            self._reject(result, "invalid_update", str(exc))

    def _reject(self, result: VerifiedEntry, kind: RejectionKind, reason: str) -> None:
        rejected = RejectedEntry(result.seq, result.entry.author_id, kind, reason)
        log.warning("%s", rejected)
        self.rejected.append(rejected)
        self._rejections.publish(rejected)

    def _reissue_outbox(self) -> None:
        """The epoch moved under our unsent entries: issue them again under the new one."""
        old, self._outbox = self._outbox, []
        verified_mine = self._verifier.state.author_seqs.get(self._me, 0)
        self._last_author_seq = verified_mine
        self._sent_through = min(self._sent_through, verified_mine)
        self._pending.outbox = []
        self._pending.outbox_reset = True
        for entry in old:
            again = reissue(entry, self._verifier.state, self._verifier.epoch_keys)
            if again is not None:
                self._queue_entry(*again)
        log.info("re-issued %d unsent entries under epoch %d", len(self._outbox), self.epoch)

    def _maintain(self) -> None:
        """Retention (forget old epoch keys) and, for admins, rotation when the policy says it is due."""
        state, verifier = self._verifier.state, self._verifier
        if self.error is not None or state.seq == 0:
            return
        now_ms = int(time.time() * 1000)
        expired = retired_epochs(state, set(verifier.epoch_keys), now_ms)
        if expired:
            verifier.forget_keys(expired)
            self._take_checkpoint()
            self._pending.purge = True
            log.info("forgot the keys of epochs %s (retention)", sorted(expired))
            self._redacting = asyncio.ensure_future(self._redact_store())
        role = state.role_of(self._me)
        if role is Role.ADMIN and self.connected:
            # An expired invite can no longer be used, but would still receive every new key.
            for key, invite in state.invites.items():
                if invite.open and invite.expired_at(now_ms) and key not in self._revoking:
                    self._revoking.add(key)
                    self._queue_entry(Kind.REVOKE_INVITE, RevokeInviteBody(key).encode())
        if role is Role.ADMIN and self._rotation_queued_for != state.epoch and rotation_due(state, now_ms):
            self._rotation_queued_for = state.epoch
            self._queue_entry(Kind.ROTATE, rekey_body(state))

    # --- persistence -----------------------------------------------------------------------

    async def _redact_store(self) -> None:
        """Blank the sealed copies of forgotten keys in the stored log (encspaces.redaction)."""
        async with self._write_lock:
            await self._write_pending()
            forgotten = set(self._verifier.forgotten)
            for seq, raw, _ in await self._store.load_log():
                entry = Entry.decode(raw, local=True)
                local = redact(entry, forgotten)
                if local is not None:
                    self._pending.redactions.append((seq, local))
            self._pending.purge = True
            await self._write_pending()

    def _take_checkpoint(self) -> None:
        """Queue a checkpoint of the verified state and the document, consistent with each other.

        The document also holds our own edits not yet in the log; the open batch is turned into
        outbox entries first, written in the same transaction, so a restored document never
        holds an edit that the outbox would not send.
        """
        if self.snapshots.in_gap:
            return  # the document lacks what a coming snapshot covers: resume from the stored log instead
        self._flush_batch()
        self._pending.checkpoint = (self.seq, self._verifier.export_checkpoint(), self._document.state())
        self._checkpoint_seq = self.seq
        self._write_wanted.set()

    async def _write_pending(self) -> None:
        """Write what accumulated, in one transaction. Callers hold ``_write_lock``."""
        if not self._pending:
            return
        pending, self._pending = self._pending, _Pending()
        await self._store.write(
            meta=pending.meta,
            log=pending.log,
            outbox_add=pending.outbox,
            outbox_done_through=pending.outbox_done_through,
            checkpoint=pending.checkpoint,
            outbox_reset=pending.outbox_reset,
            purge=pending.purge,
            redactions=pending.redactions,
        )

    async def _write_loop(self) -> None:
        """Group writes: whatever accumulated while the previous transaction ran goes in one.

        Never cancelled mid-write (that would lose what it took out of ``_pending``):
        ``close`` sets ``_closed`` and wakes it instead.
        """
        while not self._closed:
            await self._write_wanted.wait()
            self._write_wanted.clear()
            try:
                async with self._write_lock:
                    await self._write_pending()
            except EncspacesError as exc:
                self._fail(exc)
                return

    async def _restore(self) -> None:
        """Rebuild verified state and document from the local store, then re-queue the outbox."""
        checkpoint = await self._store.load_checkpoint()
        after = 0
        if checkpoint is not None:
            after, blob, document = checkpoint
            heads = [crypto.ZERO_HASH, *await self._store.load_heads(after)]
            self._verifier, awaiting = LogVerifier.from_checkpoint(self.space_bytes, self.identity, blob, heads)
            self.skipped = self._verifier.skipped
            self._verifier.resume_awaiting(await self._store.load_entries(awaiting))
            self._document.apply_remote(document, None)
            self._checkpoint_seq = after
        rows = await self._store.load_log(after)
        if rows:
            self._apply_verified(self._verifier.replay_stored(rows))
        self._pending.log.clear()  # already stored
        self._last_author_seq = self._verifier.state.author_seqs.get(self._me, 0)
        for author_seq, raw in await self._store.load_outbox():
            entry = Entry.decode(raw)
            if author_seq <= self._verifier.state.author_seqs.get(self._me, 0):
                continue
            key = self._verifier.epoch_keys.get(entry.header.epoch)
            if entry.header.kind is Kind.DATA and key is not None:
                plaintext = open_body(entry, key)
                if plaintext is not None:
                    self._document.apply_remote(plaintext, None)
            self._outbox.append(entry)
            self._last_author_seq = max(self._last_author_seq, author_seq)

    # --- the connection --------------------------------------------------------------------

    def _start(self, genesis: bytes | None) -> None:
        self._genesis = self._genesis or genesis
        self._writer = asyncio.create_task(self._write_loop(), name=f"encspaces-store-{self.id[:8]}")
        self._runner = asyncio.create_task(self._run(), name=f"encspaces-conn-{self.id[:8]}")
        self._ticker = asyncio.create_task(self._tick(), name=f"encspaces-tick-{self.id[:8]}")
        self.presence.start()

    async def _tick(self) -> None:
        """Time-based policy (retention by age, rotation by age, expired invites) also applies
        when nothing arrives from the relay."""
        while not self._closed:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            if self.connected:
                self._maintain()

    def _send_presence(self, data: bytes) -> bool:
        session, queue = self._session, self._send_queue
        if session is None or queue is None or session.state is not SessionState.LIVE:
            return False
        queue.put_nowait(session.presence(data))
        return True

    async def _run(self) -> None:
        delay = RECONNECT_MIN
        while not self._closed and self.error is None:
            try:
                async with ws_connect(self.url, compression=None, max_size=DEFAULT_MAX_MESSAGE,
                                      open_timeout=10, ping_interval=20, ping_timeout=20) as ws:
                    delay = RECONNECT_MIN
                    await self._serve(ws)
            except VerificationError as exc:
                self._fail(exc)
            except RelayError as exc:
                if exc.code in PERMANENT_REFUSALS:
                    self._fail(exc)
                else:
                    log.info("relay closed the connection: %s", exc)
            except HandshakeError as exc:
                self._fail(exc)
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException) as exc:
                log.info("connection to %s lost: %s", self.url, exc)
                if not self._first_sync.done() and self.seq == 0 and self._genesis is None:
                    self._fail(ConnectionFailedError(f"cannot reach the relay at {self.url}: {exc}"))
            finally:
                self._send_queue = None
                self._session = None
                self.connected = False
                self.presence.went_offline()
                self.files.went_offline()
                self.snapshots.went_offline()
            if self._closed or self.error is not None:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, RECONNECT_MAX)

    async def _serve(self, ws: ClientConnection) -> None:
        session = ClientSession(self.identity, self._verifier, self._genesis, self._invite)
        self._session = session
        self._send_queue = queue = asyncio.Queue[bytes]()
        self._sent_through = self._verifier.state.author_seqs.get(self._me, 0)
        sender = asyncio.create_task(self._send_loop(ws, queue))
        try:
            await self._receive_loop(ws, session)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    @staticmethod
    async def _send_loop(ws: ClientConnection, queue: asyncio.Queue[bytes]) -> None:
        while True:
            data = await queue.get()
            try:
                await ws.send(data)
            except websockets.exceptions.ConnectionClosed:
                return  # the receive loop sees the close and reconnects

    async def _receive_loop(self, ws: ClientConnection, session: ClientSession) -> None:
        async for message in ws:
            if isinstance(message, str):
                raise HandshakeError("the relay sent a text frame; the protocol is binary")
            if self.error is not None:
                return
            for event in session.receive(message, int(time.time() * 1000)):
                if isinstance(event, Send):
                    await ws.send(event.data)
                elif isinstance(event, Verified):
                    self._apply_verified(event.entries)
                    self.presence.verified()
                elif isinstance(event, BecameLive):
                    self.connected = True
                    if not self._first_sync.done():
                        self._first_sync.set_result(None)
                    self._send_outbox()
                    self.snapshots.check_complete()
                    self.presence.became_live()
                    self.files.became_live()
                elif isinstance(event, Acked):
                    # The verified log, not the ack, completes an edit; presence tells peers about it.
                    self.presence.acked(event.head)
                elif isinstance(event, PresenceReceived):
                    self.presence.received(event.data)
                elif isinstance(event, Notice):
                    self._on_notice(event)
                elif isinstance(event, BlobReplyReceived):
                    self.files.received(event.reply)

    def _on_notice(self, notice: Notice) -> None:
        """The relay refused a submission without closing: resend once it can succeed."""
        log.info("relay notice %s: %s", notice.code, notice.message)
        refused = next((e for e in self._outbox if e.header.author_seq == notice.ref), None)
        if notice.code == "conflict" and refused is not None:
            # Another admin's change made ours moot: drop it and number what follows again.
            # What precedes it was in earlier submissions, which the relay took: keep it as is.
            self._conflicts[refused.raw] = notice.message
            keep = [e for e in self._outbox if e.header.author_seq < refused.header.author_seq]
            later = [e for e in self._outbox if e.header.author_seq > refused.header.author_seq]
            self._outbox = keep
            self._last_author_seq = refused.header.author_seq - 1
            self._sent_through = min(self._sent_through, self._last_author_seq)
            self._pending.outbox = [(e.header.author_seq, e.raw) for e in keep]
            self._pending.outbox_reset = True
            for entry in later:
                again = reissue(entry, self._verifier.state, self._verifier.epoch_keys)
                if again is not None:
                    self._queue_entry(*again)
            self._write_wanted.set()
            self._progress.set()
            return
        if self._outbox and self._outbox[0].header.epoch == self.epoch:
            self._sent_through = self._verifier.state.author_seqs.get(self._me, 0)
            self._send_outbox()
        # else: the rotation that ended our epoch is on its way; re-issuing will resend.


async def _open_space(url: str, identity: Identity, space: bytes, data_dir: str | Path) -> Space:
    store = await LocalStore.open(data_dir, space.hex())
    stored = await store.get_meta("member")
    if stored is not None and stored != identity.public.sign_key:
        await store.close()
        raise EncspacesError(f"the local store in {data_dir} belongs to another identity")
    space_obj = Space(url, identity, space, store)
    space_obj._pending.meta.update({"member": identity.public.sign_key, "url": url.encode()})
    return space_obj


async def create_space(url: str, identity: Identity, *, data_dir: str | Path) -> Space:
    """Create a space on the relay at ``url``; the creator is its first admin."""
    try:
        async with ws_connect(url, compression=None, open_timeout=10) as ws:
            first = await asyncio.wait_for(ws.recv(decode=False), 10)
        challenge = decode_message(first)
    except (TimeoutError, OSError, websockets.exceptions.WebSocketException) as exc:
        raise ConnectionFailedError(f"cannot reach the relay at {url}: {exc}") from exc
    if not isinstance(challenge, Challenge):
        raise HandshakeError(f"the relay opened with a {type(challenge).__name__}, expected a challenge")
    genesis = build_entry(
        identity,
        space=b"",
        author_seq=1,
        epoch=1,
        kind=Kind.GENESIS,
        parent_seq=0,
        parent_hash=crypto.ZERO_HASH,
        payload=genesis_body(identity.public, challenge.relay_key, crypto.random_key()),
        epoch_key=None,
    )
    space = await _open_space(url, identity, space_id_of(genesis.raw), data_dir)
    space._verifier.relay_key_hint = challenge.relay_key
    return await _start_and_wait(space, genesis.raw)


async def _start_and_wait(space: Space, genesis: bytes | None, timeout: float = 30.0) -> Space:
    await space._restore()
    space._start(genesis)
    if space.seq > 0:
        return space  # usable from the local store; sync continues in the background
    try:
        await asyncio.wait_for(asyncio.shield(space._first_sync), timeout)
    except BaseException:
        await space.close()
        raise
    return space


async def join(link: str, identity: Identity, *, data_dir: str | Path, timeout: float = 30.0) -> Space:
    """Join a space with an invite link; returns once this device is a verified member.

    The relay lets us in on the strength of the invite's secret (it never sees the secret
    itself), we read the log, then post a join entry that every member checks against the
    invite. A used-up, expired or revoked invite is refused with a RelayError saying which.
    """
    parsed = InviteLink.parse(link)
    space = await _open_space(parsed.url, identity, parsed.space, data_dir)
    space._invite = parsed.secret
    await space._restore()
    space._verifier.invite_secrets[parsed.secret.invite_key] = parsed.secret
    space._start(None)
    try:
        if identity.public.sign_key not in space._verifier.state.members:
            await asyncio.wait_for(asyncio.shield(space._first_sync), timeout)
        if identity.public.sign_key not in space._verifier.state.members:
            proof = parsed.secret.join_proof(parsed.space, identity.public.sign_key, identity.public.box_key)
            await asyncio.wait_for(
                space._control(Kind.JOIN, JoinBody(parsed.secret.invite_key, identity.public.box_key, proof).encode()),
                timeout,
            )
    except BaseException:
        await space.close()
        raise
    return space


class connect:
    """Open a space: ``async with connect(url, identity, space_id, data_dir=...) as space``."""

    def __init__(self, url: str, identity: Identity, space_id: str, *, data_dir: str | Path) -> None:
        self._args = (url, identity, decode_space_id(space_id), data_dir)
        self._space: Space | None = None

    async def _open(self) -> Space:
        url, identity, space, data_dir = self._args
        return await _start_and_wait(await _open_space(url, identity, space, data_dir), None)

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> Space:
        self._space = await self._open()
        return self._space

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._space is not None:
            await self._space.close()


__all__ = ["Space", "connect", "create_space"]
