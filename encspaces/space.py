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
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

import pycrdt
import websockets
from websockets.asyncio.client import connect as ws_connect

from . import faults
from .arguments import int_argument
from .connection import Connection
from .connection_state import ConnectionChange, ConnectionState
from .core import crypto
from .core.encoding import DEFAULT_MAX_MESSAGE
from .core.entry import Entry, Kind, build_entry, open_body
from .core.head import SignedHead
from .core.identity import Identity, PublicIdentity, member_id, parse_member_id
from .core.invites import MAX_INVITE_USES, InviteBody, InviteInfo, InviteLink, InviteSecret, JoinBody, RevokeInviteBody
from .core.log_state import LogState, space_id_of
from .core.membership import Member, Policy, Role, SetRoleBody, add_member_body, genesis_body
from .core.membership_events import MEMBERSHIP_KINDS, MemberChange, member_change
from .core.messages import BlobReply, Challenge, Error, decode_message
from .core.outbox import Backoff, Conflict, GiveUp, Outbox, Refresh, Rename, Upkeep, backoff_delay
from .core.redaction import redact
from .core.rejections import RejectedEntry, RejectionKind
from .core.rekey import invite_body, keys_to_give, rekey_body
from .core.session import (
    ClientSession,
    Notice,
)
from .core.verifier import LogVerifier, VerifiedEntry
from .deadline import check_timeout, deadline
from .document import (
    Change,
    Document,
    SharedList,
    SharedMap,
    SharedTable,
    SharedText,
)
from .errors import (
    ArgumentTypeError,
    EncspacesError,
    EntryTooLargeError,
    EpochKeyMissingError,
    HandshakeError,
    HistoryError,
    InvalidArgumentError,
    MalformedIdError,
    MembershipRevokedError,
    NotPermittedError,
    OperationTimeoutError,
    RelayError,
    ResubmitLimitError,
    SpaceClosedError,
    StoreError,
)
from .files import SpaceFiles
from .history import HistoryEntry, SpaceView, history_entry, rebuild
from .options import DEFAULT_TIMEOUT, SpaceOptions, check_options
from .persistence import Persistence
from .presence_channel import PresenceChannel
from .relay_url import check_relay_url, connect_failure, connect_options
from .shared.feed import ChangeStream
from .shared.kinds import ObjectKind
from .snapshot import SnapshotPayload, content_hash
from .snapshot_keeper import SnapshotKeeper
from .store import STORE_FILE, LocalStore
from .streams import EventHub, EventStream
from .supervision import TaskOwner

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Timeouts, batching, policy intervals and the clock are SpaceOptions fields (encspaces/options.py).
INVITE_META = "invite"  # the store's meta key for the secret of the invite this device joined with


def encode_space_id(space: bytes) -> str:
    return member_id(space)


def decode_space_id(text: str) -> bytes:
    try:
        return parse_member_id(text)
    except EncspacesError as exc:
        raise MalformedIdError(f"not a space id: {text!r}") from exc


def _mark_retrieved(future: asyncio.Future[None]) -> None:
    """The failure is kept in ``Space.error``; nobody need await the first-sync future."""
    if not future.cancelled():
        future.exception()


@dataclass(eq=False)
class _Action:
    """The entries one admin action queued, followed through re-issue, and why the relay refused one."""

    raws: builtins.list[bytes] = field(default_factory=builtins.list)
    refused: str | None = None

    def renamed(self, old: bytes, new: bytes | None) -> None:
        """Entry ``old`` was re-issued as ``new`` (None: dropped)."""
        if old in self.raws:
            self.raws.remove(old)
            if new is not None:
                self.raws.append(new)


class _Host:
    """The space as its parts see it: ``SpaceHost`` (encspaces/host.py) over the space's private state."""

    def __init__(self, space: Space) -> None:
        self._space = space

    @property
    def identity(self) -> Identity:
        return self._space.identity

    @property
    def space_bytes(self) -> bytes:
        return self._space.space_bytes

    @property
    def url(self) -> str:
        return self._space.url

    @property
    def options(self) -> SpaceOptions:
        return self._space.options

    @property
    def verifier(self) -> LogVerifier:
        return self._space._verifier

    @property
    def tasks(self) -> TaskOwner:
        return self._space._tasks

    @property
    def document(self) -> Document:
        return self._space._document

    @property
    def spool_dir(self) -> Path:
        return self._space._store.path.parent

    @property
    def closed(self) -> bool:
        return self._space._closed

    @property
    def error(self) -> EncspacesError | None:
        return self._space.error

    def live_session(self) -> ClientSession | None:
        return self._space._connection.live_session()

    def send(self, data: bytes) -> None:
        self._space._connection.send(data)

    def fail(self, exc: EncspacesError) -> None:
        self._space._fail(exc)

    def raise_if_failed(self) -> None:
        self._space._raise_if_failed()

    def check_writable(self) -> None:
        self._space._check_writable()

    async def sync(self) -> None:
        await self._space.sync()

    def queue_entry(self, kind: Kind, payload: bytes, parent: tuple[int, bytes] | None = None) -> Entry:
        return self._space._queue_entry(kind, payload, parent)

    @property
    def snapshot_gap(self) -> bool:
        return self._space.snapshots.in_gap

    def flush_batch(self) -> None:
        self._space._flush_batch()

    def send_outbox(self) -> None:
        self._space._send_outbox()

    def apply_entry(self, result: VerifiedEntry) -> None:
        self._space._apply_one(result)

    @property
    def genesis(self) -> bytes | None:
        return self._space._genesis

    @property
    def invite(self) -> InviteSecret | None:
        return self._space._invite

    @property
    def opening(self) -> bool:
        space = self._space
        return not space._first_sync.done() and space.seq == 0

    def connection_started(self) -> None:
        space = self._space
        space._box.connection_started(space._verifier.state.author_seqs.get(space._me, 0))

    def on_verified(self, entries: builtins.list[VerifiedEntry]) -> None:
        self._space._apply_verified(entries)
        self._space.presence.verified()

    def on_live(self) -> None:
        space = self._space
        space._set_connected(True)
        if not space._first_sync.done():
            space._first_sync.set_result(None)
        space._send_outbox()
        space.snapshots.check_complete()
        space.presence.became_live()
        space.files.became_live()

    def on_acked(self, head: SignedHead | None) -> None:
        self._space.presence.acked(head)

    def on_presence(self, data: bytes) -> None:
        self._space.presence.received(data)

    def on_notice(self, notice: Notice) -> None:
        self._space._on_notice(notice)

    def on_blob_reply(self, reply: BlobReply) -> None:
        self._space.files.received(reply)

    def on_offline(self) -> None:
        space = self._space
        space._set_connected(False)
        space.presence.went_offline()
        space.files.went_offline()
        space.snapshots.went_offline()


class Space:
    """A space this device is a member of: its shared objects, members and files.

    Get one from ``connect``, ``create_space`` or ``join``; ``close()`` it (or use it as an
    async context manager) so unsent edits are persisted for next time. Edits apply to the
    local document at once and reach the relay in the background; ``sync()`` waits until
    they are in the verified log. Once the relay is caught misbehaving (or this member is
    removed) the space fails for good: ``error`` holds why and every later call raises it.

    Admin actions (``add_member``, ``remove_member``, ``set_role``, ``rotate_key``, ``set_policy``,
    ``create_invite``, ``revoke_invite``, ``write_snapshot``) queue their entries at once (kept in
    the durable outbox while the relay is unreachable) and return when those are in the verified
    log. Each takes ``timeout=`` in seconds (None, the default: wait as long as it takes). If the
    timeout expires, or the calling task is cancelled, first:

    - an action none of whose entries was yet handed to the relay is withdrawn: taken out of the
      outbox and the local store, our later entries numbered again, so it is never published;
      a timeout raises ``OperationTimeoutError`` saying "withdrawn";
    - an action already submitted cannot be recalled: the log decides whether it takes effect,
      and ``OperationTimeoutError`` says "submitted; it may still take effect: check
      space.members/invites".

    A cancellation re-raises ``CancelledError`` after the same withdrawal.
    """

    def __init__(
        self, url: str, identity: Identity, space: bytes, store: LocalStore, options: SpaceOptions | None = None,
    ) -> None:
        self.options = check_options(options)
        self._clock = self.options.clock
        self.url = url
        self.identity = identity
        self.space_bytes = space
        self.id = encode_space_id(space)
        self._tasks = TaskOwner(self._fail, self.id[:8])  # every background task and timer of this space
        self._store = store
        self._verifier = LogVerifier(space, identity)
        self._writable = False  # _check_writable passed, and the verified log has not moved since
        self._document = Document(self._on_local_update)
        self._me = identity.public.sign_key
        self._genesis: bytes | None = None
        # Local edits: updates not yet in an entry, then signed entries not yet in the verified log.
        self._updates: builtins.list[bytes] = []
        self._batch_timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_flush = 0.0  # loop time of the last batch turned into an entry
        # Signed entries not yet in the verified log: numbering, write-before-send, freshness,
        # renumbering, re-issue and refusal backoff are kept by the pure core/outbox.py.
        self._box = Outbox(identity, space, self.options.max_entry)
        # Connection: the runner, its session and the one writer to the socket (encspaces/connection.py).
        self._host = _Host(self)  # what the parts see of this space (encspaces/host.py)
        self._connection = Connection(self._host)
        self._first_sync: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first_sync.add_done_callback(_mark_retrieved)
        self._progress = asyncio.Event()
        self.error: EncspacesError | None = None
        self._closed = False
        self._connected = False
        self._state_changed = asyncio.Event()  # connected, failed or closed changed: wakes wait_connected
        self._connection_changes: EventHub[ConnectionChange] = EventHub()
        # The local store's writes: pending batch, writer, checkpoints, redaction (encspaces/persistence.py).
        self._persistence = Persistence(self._host, store, self._box)
        self._upkeep = Upkeep()  # the policy's revocations and rotations, each asked for once
        self._actions: builtins.list[_Action] = []  # admin actions in progress (see _control)
        self._resend_timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._member_changes: EventHub[MemberChange] = EventHub()
        self._invite: InviteSecret | None = None  # while joining with an invite link
        self.skipped: builtins.list[VerifiedEntry] = self._verifier.skipped
        self.rejected: builtins.list[RejectedEntry] = []  # entries of the log not applied (rejections.py)
        self._rejections: EventHub[RejectedEntry] = EventHub()
        self.snapshots = SnapshotKeeper(self._host)
        self.presence = PresenceChannel(self._host)
        options = self.options
        self.presence.min_interval, self.presence.heartbeat = options.presence_min_interval, options.presence_heartbeat
        self.presence.peer_timeout, self.presence.tick = options.presence_peer_timeout, options.presence_tick
        self.presence.withhold_timeout = options.presence_withhold_timeout
        self.files = SpaceFiles(self._host)  # encrypted files: encspaces/files.py

    # --- public API ------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The newest seq of the verified log."""
        return self._verifier.seq

    @property
    def head(self) -> bytes:
        """The hash of the verified log at ``seq``: two members with the same head saw the same history."""
        return self._verifier.head

    @property
    def relay_seq(self) -> int:
        """The newest seq the relay has announced in a head it signed (0 before it answered).

        ``seq`` is below it while this device catches up (the relay's welcome announces its
        head): ``seq / relay_seq`` is how far a catch-up is.
        """
        head, session = self._verifier.latest_head, self._connection.session
        return max(0 if head is None else head.seq, 0 if session is None else session.target_seq)

    @property
    def state(self) -> LogState:
        """The verified log's state as the rules see it (members, roles, invites, heads, policy), for
        applications and tests that check membership rules. Read it; never modify it."""
        return self._verifier.state

    @property
    def epoch(self) -> int:
        """The current key epoch; it moves on at every rotation and removal."""
        return self._verifier.state.epoch

    @property
    def members(self) -> dict[str, Member]:
        """Member id -> ``Member`` (role, who added them, when), as of the verified log."""
        return {member_id(k): m for k, m in self._verifier.state.members.items()}

    @property
    def epoch_keys(self) -> Mapping[int, bytes]:
        """The content keys this device holds, epoch -> key (a read-only view): the epochs it can
        still open. Retention removes a key from here once its epoch is retired."""
        return MappingProxyType(self._verifier.epoch_keys)

    @property
    def forgotten_epochs(self) -> frozenset[int]:
        """The epochs whose keys retention made this device delete (it can never open them again)."""
        return frozenset(self._verifier.forgotten)

    @property
    def connected(self) -> bool:
        """True while the session with the relay is live (caught up, edits flowing)."""
        return self._connected

    @property
    def unsent(self) -> int:
        """Local edits not yet in the verified log (entries plus an open batch)."""
        return len(self._box.entries) + (1 if self._updates else 0)

    @property
    def doc(self) -> pycrdt.Doc[Any]:
        """The underlying pycrdt document, for integrations; edit through the shared objects instead."""
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
        """Typed change events from now on (local and remote, with the remote author's member id).

        Like every stream of a space it ends when the space closes (after the buffered events),
        raises the space's error once the space fails, and can be ended by ``aclose()``.
        """
        return self._document.changes(name, kind)

    # --- the connection as events ------------------------------------------------------------

    def connection_changes(self) -> EventStream[ConnectionChange]:
        """Every change of the connection from now on: connected, disconnected, failed (see ConnectionChange)."""
        return self._connection_changes.stream()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once the space is connected (``timeout`` in seconds, None: no limit).

        Raises the space's error if it fails meanwhile, ``SpaceClosedError`` if it is closed,
        ``OperationTimeoutError`` when the time runs out.
        """
        async with deadline(timeout, lambda: f"wait_connected: not connected to the relay at {self.url}"):
            while True:
                self._raise_if_failed()
                if self._connected:
                    return
                self._state_changed.clear()
                await self._state_changed.wait()

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        self._state_changed.set()
        if self.error is None and not self._closed:
            state = ConnectionState.CONNECTED if connected else ConnectionState.DISCONNECTED
            self._connection_changes.publish(ConnectionChange(state))

    def _end_streams(self, error: EncspacesError | None) -> None:
        """End every stream handed out: after the buffered events, iteration stops (or raises ``error``)."""
        self._state_changed.set()
        self._connection_changes.end(error)
        self._member_changes.end(error)
        self.presence.end_changes(error)
        self._document.end_changes(error)

    # --- membership, roles, invites and keys ----------------------------------------------

    def rejected_entries(self) -> EventStream[RejectedEntry]:
        """Every entry from now on whose payload could not be applied (see ``encspaces.RejectedEntry``).

        Every member rejects the same entries; the space goes on past them. ``rejected`` lists
        those seen since the space was opened.
        """
        return self._rejections.stream()

    def membership_changes(self) -> EventStream[MemberChange]:
        """Every membership change from now on, as verified in the log (add, join, role, removal).

        The stream ends with ``aclose()``, when the space closes, or (raising its error) when it fails.
        """
        return self._member_changes.stream()

    @property
    def invites(self) -> builtins.list[InviteInfo]:
        """Open invites (not revoked, not used up; expired ones are listed with ``expired``)."""
        now = self._clock.now_ms()
        return [InviteInfo.of(invite, now) for invite in self._verifier.state.invites.values() if invite.open]

    @property
    def policy(self) -> Policy:
        """The rotation, retention and snapshot policy in force (``set_policy`` changes it)."""
        return self._verifier.state.policy

    async def add_member(
        self, public_identity: PublicIdentity | str, role: str | Role = Role.WRITER, history: bool = True,
        *, timeout: float | None = None,
    ) -> None:
        """Add a member (admins only); ``history`` gives them every retained epoch key, else the current one.

        Returns once the membership entry is verified in the log. ``timeout``: seconds to wait
        (None: as long as it takes); what a timeout or cancellation does is said on ``Space``.
        """
        state = self._require_admin("add members")
        if not isinstance(public_identity, (str, PublicIdentity)):
            raise ArgumentTypeError(f"a member is a PublicIdentity or its string, not {type(public_identity).__name__}")
        new = PublicIdentity.parse(public_identity) if isinstance(public_identity, str) else public_identity
        if new.sign_key in state.members:
            raise NotPermittedError(f"{new.member_id} is already a member")
        keys = keys_to_give(self._verifier.epoch_keys, state.epoch, history)
        body = add_member_body(new, Role(role), keys, history)

        async def steps(action: _Action) -> None:
            await self._control(Kind.ADD_MEMBER, body, action)
            if not history:
                await self._write_snapshot(action)  # what they cannot decrypt, they start from

        await self._admin("add_member", timeout, steps)

    async def remove_member(
        self, member: str | PublicIdentity, revoke_invites: bool = True, *, timeout: float | None = None
    ) -> None:
        """Remove a member and start a new epoch whose key they never get (admins only).

        Open invites receive every new key, and the removed member may know their links: so by
        default every open invite is revoked in the same call (pass ``revoke_invites=False`` to
        keep them). The revocations and the removal are queued together and the removal's new
        key goes to every member who stays and to no revoked invite: one rotation, not two.
        ``timeout``: as for every admin action (see ``Space``).
        """
        state = self._require_admin("remove members")
        key = self._member_key(member)
        self._keep_an_admin(state, key, None)
        revoking = [k for k, inv in state.invites.items() if inv.open] if revoke_invites else []
        entries = [(Kind.REVOKE_INVITE, RevokeInviteBody(k).encode()) for k in revoking]
        entries.append((Kind.REMOVE_MEMBER, rekey_body(state, remove=key, revoking=revoking)))
        await self._admin("remove_member", timeout, lambda action: self._control_all(entries, action))

    async def set_role(self, member: str | PublicIdentity, role: str | Role, *, timeout: float | None = None) -> None:
        """Change a member's role: admin, writer or reader (admins only). ``timeout``: see ``Space``."""
        state = self._require_admin("change roles")
        key, new_role = self._member_key(member), Role(role)
        if state.members[key].role is new_role:
            raise NotPermittedError(f"{member_id(key)} already has role {new_role.value}")
        self._keep_an_admin(state, key, new_role)
        body = SetRoleBody(key, new_role).encode()
        await self._admin("set_role", timeout, lambda action: self._control(Kind.SET_ROLE, body, action))

    async def rotate_key(self, *, timeout: float | None = None) -> None:
        """Start a new epoch now (admins only); the policy can also make admins' clients do it.

        ``timeout``: see ``Space``.
        """
        body = rekey_body(self._require_admin("rotate the key"))
        await self._admin("rotate_key", timeout, lambda action: self._control(Kind.ROTATE, body, action))

    async def set_policy(self, policy: Policy, *, timeout: float | None = None) -> None:
        """Set rotation and retention (admins only); see ``encspaces.Policy``. ``timeout``: see ``Space``."""
        self._require_admin("set the policy")
        body = policy.encode()
        await self._admin("set_policy", timeout, lambda action: self._control(Kind.POLICY, body, action))

    async def create_invite(
        self, role: str | Role = Role.WRITER, uses: int = 1, expires_in: float | None = 7 * 24 * 3600,
        history: bool = True, *, timeout: float | None = None,
    ) -> str:
        """An invite link to paste in a chat: relay address, space id and a secret the relay never sees.

        ``expires_in`` is in seconds (None: never); ``uses`` is how many people may join with it.
        ``timeout``: see ``Space``; an invite withdrawn on timeout or cancellation is never
        published, so the link nobody received never works.
        """
        state = self._require_admin("create invites")
        if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_INVITE_USES:
            raise InvalidArgumentError(f"an invite's uses are an int in [1, {MAX_INVITE_USES}], not {uses!r}")
        secret = InviteSecret.generate()
        expires = None if expires_in is None else int((self._clock.wall() + expires_in) * 1000)
        invite = InviteBody(secret.invite_key, secret.box_key, Role(role), uses, expires, history, ())
        body = invite_body(invite, self._verifier.epoch_keys, state.epoch)

        async def steps(action: _Action) -> str:
            await self._control(Kind.INVITE, body, action)
            if not history:
                await self._write_snapshot(action)  # a newcomer without history starts from it
            return str(InviteLink(self.url, self.space_bytes, secret))

        return await self._admin("create_invite", timeout, steps)

    async def revoke_invite(self, invite: str, *, timeout: float | None = None) -> None:
        """Revoke an invite, named by its id (``space.invites``) or by its link, and start a new epoch.

        An open invite holds the current epoch key (its entry, and every rotation since, sealed it
        to the link), so whoever has the link may hold it too: the revocation is followed, in the
        same call, by a rotation whose key goes to the members only. Once the revocation is in the
        log the relay closes the connections it let in with that invite and refuses them after.
        ``timeout``: see ``Space``.
        """
        state = self._require_admin("revoke invites")
        if not isinstance(invite, str):
            raise ArgumentTypeError(f"an invite is named by its id or link (a str), not {type(invite).__name__}")
        key = InviteLink.parse(invite).secret.invite_key if invite.startswith("esinv") else parse_member_id(invite)
        found = state.invites.get(key)
        if found is None or not found.open:
            raise NotPermittedError(f"no open invite {invite[:20]}… in this space")
        entries = [(Kind.REVOKE_INVITE, RevokeInviteBody(key).encode()),
                   (Kind.ROTATE, rekey_body(state, revoking=[key]))]
        await self._admin("revoke_invite", timeout, lambda action: self._control_all(entries, action))

    def _require_admin(self, action: str) -> LogState:
        self._check_writable()
        state = self._verifier.state
        role = state.role_of(self._me)
        if role is None or not role.can_manage:
            raise NotPermittedError(f"only an admin may {action}; your role is {role.value if role else 'none'}")
        return state

    def _member_key(self, member: str | PublicIdentity) -> bytes:
        if not isinstance(member, (str, PublicIdentity)):
            raise ArgumentTypeError(f"a member is named by a member id, a PublicIdentity or its string, "
                                    f"not {type(member).__name__}")
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

    async def _control(self, kind: Kind, body: bytes, action: _Action | None = None) -> None:
        await self._control_all([(kind, body)], action)

    async def _control_all(self, entries: builtins.list[tuple[Kind, bytes]], action: _Action | None = None) -> None:
        """Queue control entries back to back and return once they are in the verified log.

        Without ``action`` (a join) it runs as an action of its own, withdrawn if cancelled.
        """
        if action is None:
            await self._admin(entries[0][0].value, None, lambda own: self._control_all(entries, own))
            return
        self._flush_batch()
        for kind, body in entries:
            action.raws.append(self._queue_entry(kind, body).raw)
        await self.sync()
        if action.refused is not None:
            raise NotPermittedError(f"the relay refused it: {action.refused}")

    async def _admin(self, what: str, timeout: float | None, steps: Callable[[_Action], Awaitable[_T]]) -> _T:
        """Run an admin action's ``steps`` within ``timeout`` seconds (None: as long as it takes);
        on timeout or cancellation, withdraw it if nothing of it was submitted (see ``Space``)."""
        check_timeout(timeout)
        action = _Action()
        self._actions.append(action)
        limit = asyncio.timeout(timeout)
        try:
            async with limit:
                return await steps(action)
        except asyncio.CancelledError:
            self._withdraw(action)
            raise
        except TimeoutError as exc:
            if not limit.expired():
                raise
            outcome = self._withdraw(action)
            await self._persistence.persist()  # the withdrawal is on disk before the caller hears of it
            raise OperationTimeoutError(f"{what} timed out after {timeout:g} s: {outcome}") from exc
        finally:
            self._actions.remove(action)

    def _withdraw(self, action: _Action) -> str:
        """Take ``action``'s queued entries out of the outbox unless one was submitted; says what happened."""
        outcome, renames = self._box.withdraw(action.raws, self._verifier.state, self._verifier.epoch_keys)
        if renames:
            self._renumbered(renames)
        return outcome.value

    def _renumbered(self, renames: builtins.list[Rename]) -> None:
        """The outbox was numbered again (entries dropped or re-issued): the stored one is replaced,
        and the admin actions waiting for the old entries follow the new ones."""
        self._persistence.pending.outbox = [(e.header.author_seq, e.raw) for e in self._box.entries]
        self._persistence.pending.outbox_reset = True
        for old, new in renames:
            if new is not None and faults.ARMED:
                faults.reached("built")
            for action in self._actions:
                action.renamed(old, new)
        self._persistence.wake()
        self._progress.set()

    # --- history -------------------------------------------------------------------------

    async def history(self, before: int | None = None, limit: int = 100) -> builtins.list[HistoryEntry]:
        """Verified entries, newest first: ``limit`` of them below seq ``before`` (None: from the head).

        Page through a long log by passing the last seq of one page as ``before`` of the next.
        """
        if before is not None:
            int_argument(before, "before")
        int_argument(limit, "limit")
        await self._persistence.persist()
        rows = await self._store.load_log_page(before, limit)
        return [history_entry(seq, raw) for seq, raw in rows]

    async def at(self, seq: int) -> SpaceView:
        """A read-only view of every shared object as it was once the log reached ``seq``."""
        int_argument(seq, "seq")
        self._raise_if_failed()
        if not 1 <= seq <= self.seq:
            raise HistoryError(f"seq {seq} is outside the verified log (1..{self.seq})")
        await self._persistence.persist()
        rows = await self._store.load_log()
        return rebuild(rows, seq, self._verifier.epoch_keys, self._verifier.forgotten, self.snapshots.bad_seqs)

    async def write_snapshot(self, *, timeout: float | None = None) -> None:
        """Post a snapshot of the document now (members who may write); the policy also does it by itself.

        Useful right after adding someone without history: they start from it. ``timeout``: see ``Space``.
        """
        self._check_writable()
        await self._admin("write_snapshot", timeout, self._write_snapshot)

    async def _write_snapshot(self, action: _Action) -> None:
        await self.sync()  # our own edits in the log: the document is then exactly the verified state
        if self._box.entries or self._updates or self._verifier.awaiting_key or self.snapshots.in_gap:
            raise NotPermittedError("the document is not settled (edits in flight or entries not yet readable)")
        payload = SnapshotPayload(self._document.state(), content_hash(self._document.doc)).encode()
        await self._control(Kind.SNAPSHOT, payload, action)

    async def sync(self, timeout: float | None = None) -> None:
        """Return once every local edit made before the call is in the verified log.

        ``timeout`` in seconds (None: no limit); on expiry ``OperationTimeoutError`` says how
        far the log got. The edits stay queued and are still sent.
        """
        self._raise_if_failed()
        self._flush_batch()
        target = self._box.last_author_seq

        def what() -> str:
            verified = self._verifier.state.author_seqs.get(self._me, 0)
            return (f"sync: waited for this device's entries through author_seq {target} to reach the verified "
                    f"log, which holds them through {verified} ({'connected' if self.connected else 'not connected'})")

        async with deadline(timeout, what):
            # min(): re-issuing after a rotation may drop entries it made pointless, renumbering the rest
            while self._verifier.state.author_seqs.get(self._me, 0) < min(target, self._box.last_author_seq):
                self._raise_if_failed()
                self._progress.clear()
                await self._progress.wait()
        self._raise_if_failed()

    async def flush(self, timeout: float | None = None) -> None:
        """Return once every local edit made before the call is durable on this device.

        Such an edit survives a crash or kill of the process and is sent after a restart.
        ``timeout`` in seconds (None: no limit): on expiry the write still completes in the
        background (a store write is never cut in half).
        """
        check_timeout(timeout)
        self._flush_batch()
        write = self._tasks.spawn(self._persistence.persist(), "the store writer (flush)", cancel_on_close=False)
        async with deadline(timeout, lambda: f"flush: writing to the local store {self._store.path}"):
            await asyncio.shield(write)
        self._raise_if_failed()

    async def wait_for_seq(self, seq: int, timeout: float | None = None) -> None:
        """Return once the verified log reaches ``seq`` (for instance another member's ``seq``).

        ``timeout`` in seconds (None: no limit).
        """
        int_argument(seq, "seq")
        self._raise_if_failed()
        async with deadline(timeout, lambda: f"wait_for_seq: waited for seq {seq}, the verified log is at {self.seq}"):
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
        self._end_streams(None)
        await self.presence.stop()
        self.snapshots.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self._connection.stop()
        await self._persistence.stop()
        await self._tasks.close()  # whatever else is still running (timers, a flush's write) ends here
        await self._persistence.write_last()
        await self._store.close()

    async def __aenter__(self) -> Space:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- failure ---------------------------------------------------------------------------

    def _fail(self, exc: EncspacesError) -> None:
        first = self.error is None
        if first:
            self.error = exc
            log.error("space %s failed: %s: %s", self.id[:12], type(exc).__name__, exc)
        self._progress.set()
        self._connection.stop_applying()  # stop applying anything more from this relay
        if not self._first_sync.done():
            self._first_sync.set_exception(exc)
        if first:
            if not self._closed:
                self._connection_changes.publish(ConnectionChange(ConnectionState.FAILED, exc))
            self._end_streams(exc)

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error
        if self._closed:
            raise SpaceClosedError("the space is closed")

    def _check_keys(self) -> None:
        """A member must hold the current epoch's key: without it nothing new reads or writes, so fail."""
        state, keys = self._verifier.state, self._verifier.epoch_keys
        if self.error is None and state.seq > 0 and state.epoch not in keys and state.role_of(self._me) is not None:
            self._fail(EpochKeyMissingError(
                f"this device holds no key for epoch {state.epoch}, the space's current one (it holds epochs "
                f"{sorted(keys) or 'none'}): it can neither read nor write new entries"
            ))

    def _check_writable(self) -> None:
        # Called before every keystroke: what it checks (role, current epoch and its key) changes
        # only with the verified log, so a pass holds until the log moves or the space fails.
        if self._writable and self.error is None and not self._closed:
            return
        self._raise_if_failed()
        self._check_keys()
        self._raise_if_failed()
        role = self._verifier.state.role_of(self._me)
        if role is None and self._verifier.seq > 0:
            raise NotPermittedError("you are not a member of this space (yet): nothing you write would be accepted")
        if role is not None and not role.can_write:
            raise NotPermittedError(f"your role {role.value} may not write in this space")
        self._writable = True

    # --- local edits -> entries ------------------------------------------------------------

    def _on_local_update(self, update: bytes) -> None:
        """Batch on the trailing edge only under load: the first edit after a pause goes at once.

        A person typing at human speed then waits for no timer (the edit leaves on the next
        turn of the event loop), while a burst still shares one entry per ``options.batch_delay``.
        """
        self._updates.append(update)
        if faults.ARMED:
            faults.reached("edit")
        if len(self._updates) >= self.options.max_batch_count:
            self._flush_batch()
        elif self._batch_timer is None:
            delay = self.options.batch_delay
            quiet = asyncio.get_running_loop().time() - self._last_flush >= delay
            self._batch_timer = self._tasks.later(0 if quiet else delay, self._flush_batch, "the edit batcher")

    def _flush_batch(self) -> None:
        if self._batch_timer is not None:
            self._tasks.cancel(self._batch_timer)
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
        if sum(len(update) for update in updates) <= self.options.max_batch_update:
            self._queue_entry(Kind.DATA, _merged(updates))  # the usual case: one entry
            return
        group: builtins.list[bytes] = []
        size = 0
        for update in updates:
            if group and size + len(update) > self.options.max_batch_update:
                self._queue_entry(Kind.DATA, _merged(group))
                group, size = [], 0
            group.append(update)
            size += len(update)
        self._queue_entry(Kind.DATA, _merged(group))

    def _queue_entry(self, kind: Kind, payload: bytes, parent: tuple[int, bytes] | None = None) -> Entry:
        """Sign and queue an entry; its parent is our verified head unless given (snapshots)."""
        entry = self._box.build(kind, payload, self._verifier.state, self._verifier.epoch_keys, parent)
        if faults.ARMED:
            faults.reached("built")
        self._persistence.pending.outbox.append((entry.header.author_seq, entry.raw))
        self._persistence.wake()  # sent once the write that stores it commits (persistence.py)
        return entry

    def _send_outbox(self) -> None:
        session, send = self._connection.live_session(), self._connection.send
        if session is None:
            return
        decision = self._box.to_send(self._clock.now_ms(), self._verifier.fresh_ms,
                                    int(self.options.freshness_limit * 1000))
        if isinstance(decision, Refresh):
            send(b"")  # the send loop reconnects: a fresh welcome, or a catch-up
            return
        if decision is None:
            return
        unsent = [e.raw for e in decision.entries]
        # Several messages when many entries queued up offline: stay under the frame limit.
        chunk: builtins.list[bytes] = []
        size = 0
        for raw in unsent:
            if chunk and size + len(raw) > DEFAULT_MAX_MESSAGE // 2:
                send(session.submit(chunk))
                chunk, size = [], 0
            chunk.append(raw)
            size += len(raw)
        send(session.submit(chunk))

    # --- verified entries -> document ------------------------------------------------------

    def _apply_verified(self, results: builtins.list[VerifiedEntry]) -> None:
        self._writable = False  # roles, epochs and keys may change: check again at the next edit
        self.snapshots.begin_batch(results, not self._updates, max(
            (e.header.author_seq for e in self._box.entries if e.header.kind is Kind.DATA), default=0))
        for result in results:
            if not result.late:
                stored = redact(result.entry, self._verifier.forgotten) or result.entry.raw
                self._persistence.pending.log.append((result.seq, stored, result.head))
            if result.kind is Kind.GENESIS and self._genesis is None:
                self._genesis = result.entry.raw
            if result.problem is not None and not result.awaiting_key:
                self._reject(result, "undecryptable", result.problem)
            if not self.snapshots.on_entry(result):
                self._apply_one(result)
            self.snapshots.after_entry(result, self._verifier.state)
            if not result.late and result.kind in MEMBERSHIP_KINDS:
                self._member_changes.publish(member_change(result, self._verifier.state))
        done = self._box.verified(self._verifier.state.author_seqs.get(self._me, 0))
        if done is not None:
            self._persistence.pending.outbox_done_through = done
        removed_at = self._verifier.removed_at
        if self._verifier.key_failure is not None:
            self._fail(self._verifier.key_failure)  # an admin handed us a key the log did not commit to
        elif removed_at is not None and self._invite is None:  # (with an invite we are coming back)
            self._fail(MembershipRevokedError(f"this device's member was removed from the space at seq {removed_at}"))
        elif self._box.needs_reissue(self.epoch):
            self._reissue_outbox()
        self._check_keys()
        self._maintain()
        if self.seq - self._persistence.checkpoint_seq >= self.options.checkpoint_every:
            self._persistence.take_checkpoint()
        self._persistence.wake()
        self._progress.set()

    def _apply_one(self, result: VerifiedEntry) -> None:
        if result.plaintext is None:
            return  # (an undecryptable one was reported by _apply_verified)
        header = result.entry.header
        if header.author == self._me and header.author_seq <= self._box.last_author_seq:
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
        self._renumbered(self._box.reissue_all(self._verifier.state, self._verifier.epoch_keys))
        log.info("re-issued %d unsent entries under epoch %d", len(self._box.entries), self.epoch)

    def _maintain(self) -> None:
        """Retention (forget old epoch keys) and, for admins, rotation when the policy says it is due."""
        state, verifier = self._verifier.state, self._verifier
        if self.error is not None:
            return
        plan = self._upkeep.plan(state, set(verifier.epoch_keys), self._me, self.connected, self._clock.now_ms())
        if plan.forget:
            verifier.forget_keys(set(plan.forget))
            self._persistence.take_checkpoint()
            self._persistence.pending.purge = True
            log.info("forgot the keys of epochs %s (retention)", sorted(plan.forget))
            self._persistence.start_redaction()
        for key in plan.revoke:
            self._queue_entry(Kind.REVOKE_INVITE, RevokeInviteBody(key).encode())
        if plan.rotate:
            self._queue_entry(Kind.ROTATE, rekey_body(state))

    # --- restoring from the local store ----------------------------------------------------

    async def _restore(self) -> None:
        """Rebuild verified state and document from the local store, then re-queue the outbox."""
        checkpoint = await self._store.load_checkpoint()
        self._writable = False
        after = 0
        if checkpoint is not None:
            after, blob, document = checkpoint
            heads = [crypto.ZERO_HASH, *await self._store.load_heads(after)]
            self._verifier, awaiting = LogVerifier.from_checkpoint(self.space_bytes, self.identity, blob, heads)
            self.skipped = self._verifier.skipped
            self._verifier.resume_awaiting(await self._store.load_entries(awaiting))
            self._document.apply_remote(document, None)
            self._persistence.checkpoint_seq = after
        stored_invite = await self._load_invite()
        for secret in (self._invite, stored_invite):
            if secret is not None:
                self._verifier.invite_secrets[secret.invite_key] = secret  # keys sealed to the invite
        rows = await self._store.load_log(after)
        if rows:
            self._apply_verified(self._verifier.replay_stored(rows))
        if (self._invite is None and stored_invite is not None and self._verifier.removed_at is None
                and self._me not in self._verifier.state.members):
            self._invite = stored_invite  # a join that was interrupted: finish it
        self._persistence.pending.log.clear()  # already stored
        mine = self._verifier.state.author_seqs.get(self._me, 0)
        restored: builtins.list[Entry] = []
        for author_seq, raw in await self._store.load_outbox():
            entry = Entry.decode(raw)
            if author_seq <= mine:
                continue
            key = self._verifier.epoch_keys.get(entry.header.epoch)
            if entry.header.kind is Kind.DATA and key is not None:
                plaintext = open_body(entry, key)
                if plaintext is not None:
                    self._document.apply_remote(plaintext, None)
            restored.append(entry)
        self._box.restored(restored, mine)  # all of it came from the store: durable

    async def _load_invite(self) -> InviteSecret | None:
        stored = await self._store.get_meta(INVITE_META)
        if stored is None:
            return None
        if len(stored) != 32:
            raise StoreError(f"the local store {self._store.path} holds an invite secret of {len(stored)} bytes, "
                             "expected 32")
        return InviteSecret(stored)

    # --- the connection --------------------------------------------------------------------

    def _start(self, genesis: bytes | None) -> None:
        self._genesis = self._genesis or genesis
        self.snapshots.attesting = True  # from here on entries come from the relay, not our own store
        self._persistence.start()  # the store writer: never cancelled mid-write (close() waits for it)
        self._connection.start()
        self._ticker = self._tasks.spawn(self._tick(), "the maintenance ticker")
        self.presence.start(self._tasks)

    async def _tick(self) -> None:
        """Time-based policy (retention by age, rotation by age, expired invites) also applies
        when nothing arrives from the relay."""
        while not self._closed:
            await asyncio.sleep(self.options.maintenance_interval)
            if self.connected:
                self._maintain()

    def _send_presence(self, data: bytes) -> bool:
        return self._connection.send_live(lambda session: session.presence(data))

    def _on_notice(self, notice: Notice) -> None:
        """The relay refused a submission without closing: resend once it can succeed."""
        log.info("relay notice %s: %s", notice.code, notice.message)
        decision = self._box.refused(notice.code, notice.ref, self._verifier.state, self._verifier.epoch_keys,
                                     self.options.resubmit_limit)
        if isinstance(decision, Conflict):
            # Another admin's change made ours moot: it was dropped, what follows numbered again.
            for action in self._actions:
                if decision.entry.raw in action.raws:
                    action.refused = notice.message
            self._renumbered(builtins.list(decision.renames))
        elif isinstance(decision, GiveUp):
            self._fail(ResubmitLimitError(notice.code, (
                f"the relay refused our entries {decision.refusals} times in a row ({notice.message}) without "
                f"delivering anything that changes epoch {decision.epoch} or our author_seq {decision.author_seq}")))
        elif isinstance(decision, Backoff):
            delay = backoff_delay(decision.attempt, self.options.resubmit_min, self.options.resubmit_max,
                                  random.random())
            self._resend_timer = self._tasks.later(delay, self._resend, "the resubmission after a refusal")

    def _resend(self) -> None:
        """Send the outbox again after a refusal (its backoff ran out)."""
        self._resend_timer = None
        self._box.resend(self._verifier.state.author_seqs.get(self._me, 0))
        if self._closed or self.error is not None:
            return
        self._send_outbox()


def _merged(updates: builtins.list[bytes], fan_in: int = 16) -> bytes:
    """One update for the batch. pycrdt's merge is superlinear in the number of updates: merging
    groups of 16 first, then those, gives the same bytes at about 0.7 µs an update instead of
    1.25 (256 updates of the B4 trace)."""
    while len(updates) > 1:
        updates = [part[0] if len(part) == 1 else pycrdt.merge_updates(*part)
                   for part in (updates[i : i + fan_in] for i in range(0, len(updates), fan_in))]
    return updates[0]


async def _open_space(
    url: str, identity: Identity, space: bytes, data_dir: str | Path, tls: SSLContext | None = None,
    options: SpaceOptions | None = None,
) -> Space:
    store = await LocalStore.open(data_dir, space.hex())
    stored = await store.get_meta("member")
    if stored is not None and stored != identity.public.sign_key:
        await store.close()
        raise StoreError(f"the local store in {data_dir} belongs to another identity")
    space_obj = Space(url, identity, space, store, options)
    space_obj._connection.tls = tls
    space_obj._persistence.pending.meta.update({"member": identity.public.sign_key, "url": url.encode()})
    return space_obj


async def create_space(
    url: str, identity: Identity, *, data_dir: str | Path, timeout: float | None = DEFAULT_TIMEOUT,
    ssl: SSLContext | None = None, options: SpaceOptions | None = None,
) -> Space:
    """Create a space on the relay at ``url``; the creator is its first admin.

    ``timeout`` in seconds (None: no limit) bounds the whole call; on expiry it raises
    ``OperationTimeoutError`` and leaves nothing open. ``ssl``: for a ``wss://`` relay whose
    certificate the system does not trust (a private CA), the context that trusts it.
    ``options``: the space's settings (``SpaceOptions``; None: the defaults).
    """
    check_timeout(timeout)
    options = check_options(options)
    check_relay_url(url, ssl)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with deadline(timeout, lambda: f"create_space: waited for the relay at {url} to open a session"):
        try:
            async with ws_connect(url, compression=None, open_timeout=None, **connect_options(url, ssl)) as ws:
                first = await ws.recv(decode=False)
            challenge = decode_message(first)
        except (OSError, EOFError, websockets.exceptions.WebSocketException) as exc:
            raise connect_failure(url, exc) from exc
    if isinstance(challenge, Error):  # refused at once (busy, shutting down...)
        raise RelayError(challenge.code, challenge.message)
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
        time_ms=options.clock.now_ms(),
    )
    space = await _open_space(url, identity, space_id_of(genesis.raw), data_dir, ssl, options)
    space._verifier.relay_key_hint = challenge.relay_key
    left = None if timeout is None else max(0.0, timeout - (loop.time() - started))
    return await _start_and_wait(space, genesis.raw, left, "create_space")


async def _start_and_wait(space: Space, genesis: bytes | None, timeout: float | None, call: str) -> Space:
    await space._restore()
    space._start(genesis)
    if space.seq > 0:
        return space  # usable from the local store; sync continues in the background
    try:
        async with deadline(timeout, lambda: f"{call}: waited for the first sync with the relay at {space.url}"):
            await asyncio.shield(space._first_sync)
    except BaseException:
        await space.close()
        raise
    return space


async def join(
    link: str, identity: Identity, *, data_dir: str | Path, timeout: float | None = DEFAULT_TIMEOUT,
    ssl: SSLContext | None = None, options: SpaceOptions | None = None,
) -> Space:
    """Join a space with an invite link; returns once this device is a verified member.

    The relay lets us in on the strength of the invite's secret (it never sees the secret
    itself), we read the log, then post a join entry that every member checks against the
    invite. A used-up, expired or revoked invite is refused with a RelayError saying which.
    When it returns, what this device needs to use ``data_dir`` again (the invite's secret,
    which opens the keys sealed to the invite, and a checkpoint holding them) is durable.
    ``timeout`` in seconds (None: no limit) bounds the whole call (``OperationTimeoutError``).
    ``ssl`` and ``options``: as for ``create_space``.
    """
    check_timeout(timeout)
    parsed = InviteLink.parse(link)
    check_relay_url(parsed.url, ssl)
    space = await _open_space(parsed.url, identity, parsed.space, data_dir, ssl, check_options(options))
    space._invite = parsed.secret
    # Written with (or before) the join entry: a restart replays the invite's sealed keys with it.
    space._persistence.pending.meta[INVITE_META] = parsed.secret.secret
    await space._restore()
    space._start(None)
    me = identity.public.sign_key
    try:
        async with deadline(timeout, lambda: f"join: waited to become a member of space {space.id} "
                                             f"through the relay at {parsed.url}"):
            if me not in space._verifier.state.members:
                await asyncio.shield(space._first_sync)
            if me not in space._verifier.state.members:
                if any(e.header.kind is Kind.JOIN for e in space._box.entries):
                    await space.sync()  # an interrupted join's entry, resent from the store
                else:
                    proof = parsed.secret.join_proof(parsed.space, me, identity.public.box_key)
                    await space._control(Kind.JOIN, JoinBody(parsed.secret.invite_key, identity.public.box_key,
                                                             proof).encode())
            space._persistence.take_checkpoint()  # the keys opened through the invite, durable before we return
            await space.flush()
    except BaseException:
        await space.close()
        raise
    return space


async def open_local(identity: Identity, space_id: str, *, data_dir: str | Path) -> SpaceView:
    """The shared objects of ``space_id`` as this device holds them in ``data_dir``, without the relay.

    A read-only snapshot (writing raises ``ReadOnlyError``): the verified log through ``view.seq``
    plus this device's own edits not yet sent, as ``connect`` would restore them. It never
    connects. Like every opening of a space, closing the store again keeps the bookkeeping that
    opening did (a checkpoint; what the key policy retires or makes due); nothing is sent. Raises
    ``StoreError`` when ``data_dir`` holds no copy of the space or one of another identity.
    """
    space = decode_space_id(space_id)
    if not (Path(data_dir) / space.hex() / STORE_FILE).exists():
        raise StoreError(f"this device holds no copy of space {space_id} in {data_dir}")
    opened = await _open_space("", identity, space, data_dir)  # no relay: the URL is never used
    opened._persistence.pending.meta.clear()  # the stored relay URL and member stay as they are
    try:
        await opened._restore()
    finally:
        await opened.close()
    return SpaceView(opened.seq, opened._document)


class connect:
    """Open a space: ``async with connect(url, identity, space_id, data_dir=...) as space``.

    ``timeout`` in seconds (None: no limit) bounds the wait for the first sync of a new data dir.
    ``ssl`` and ``options``: as for ``create_space``.
    """

    def __init__(
        self, url: str, identity: Identity, space_id: str, *, data_dir: str | Path,
        timeout: float | None = DEFAULT_TIMEOUT, ssl: SSLContext | None = None, options: SpaceOptions | None = None,
    ) -> None:
        check_timeout(timeout)
        self._options = check_options(options)
        check_relay_url(url, ssl)
        self._ssl = ssl
        self._args = (url, identity, decode_space_id(space_id), data_dir)
        self._timeout = timeout
        self._space: Space | None = None

    async def _open(self) -> Space:
        """With a local copy the space opens at once (sync continues in the background); a new
        data dir waits for the first sync, bounded by ``timeout`` seconds (None: no limit)."""
        url, identity, space, data_dir = self._args
        opened = await _open_space(url, identity, space, data_dir, self._ssl, self._options)
        return await _start_and_wait(opened, None, self._timeout, "connect")

    def __await__(self) -> Generator[Any, None, Space]:
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
