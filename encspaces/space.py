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
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from ssl import SSLContext
from types import MappingProxyType, TracebackType
from typing import Any

import pycrdt
import websockets
from websockets.asyncio.client import connect as ws_connect

from . import faults
from .admin import AdminActions
from .arguments import int_argument
from .connection import Connection
from .connection_state import ConnectionChange, ConnectionState
from .core import crypto
from .core.batch_window import BatchWindow
from .core.client_ids import NONCE_SIZE, derive_client_id, split_plaintext
from .core.devices import CERT_PREFIX, DeviceCertificate, PairingRequest, device_in_use_message
from .core.encoding import DEFAULT_MAX_MESSAGE, as_bytes, as_list, pack, unpack
from .core.entry import Entry, Kind, build_entry, open_body, stored_digest
from .core.head import SignedHead
from .core.identity import Identity, PublicIdentity, decode_space_id, member_id
from .core.invites import InviteInfo, InviteLink, InviteSecret, JoinBody, RevokeInviteBody
from .core.log_state import LogState, space_id_of
from .core.membership import Member, Policy, Role, genesis_body
from .core.membership_events import MEMBERSHIP_KINDS, MemberChange, member_change
from .core.messages import BlobReply, Challenge, Error, Message, ProofReply, decode_message
from .core.outbox import Backoff, Conflict, GiveUp, Outbox, Refresh, Rename, Upkeep, backoff_delay
from .core.redaction import redact
from .core.rejections import RejectedEntry, RejectionKind
from .core.rekey import rekey_body
from .core.session import (
    ClientSession,
    Notice,
)
from .core.verifier import LogVerifier, VerifiedEntry
from .core.witness_policy import Witness, WitnessPolicy
from .core.witnessing import WitnessStatus
from .data_payload import Unusable, foreign_items, read_data, write_data
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
    ConnectionFailedError,
    DeviceKeyInUseError,
    EncspacesError,
    EntryTooLargeError,
    EpochKeyMissingError,
    ForeignClientIdError,
    HandshakeError,
    HistoryError,
    InvalidArgumentError,
    MembershipRevokedError,
    NotPermittedError,
    ProtocolError,
    RelayError,
    ResubmitLimitError,
    SpaceClosedError,
    StoreError,
)
from .evidence_keeper import EvidenceKeeper
from .files import SpaceFiles
from .history import HistoryEntry, SpaceView, history_entry, rebuild
from .local_batch import LocalBatch
from .options import DEFAULT_TIMEOUT, SpaceOptions, check_options
from .persistence import Persistence
from .presence_channel import PresenceChannel
from .relay_url import RelayUrls, connect_failure, connect_options, none_reachable, relay_urls
from .shared.feed import ChangeStream
from .shared.kinds import ObjectKind
from .snapshot_keeper import SnapshotKeeper
from .store import SESSIONS_KEPT, SESSIONS_META, STORE_FILE, LocalStore
from .streams import EventHub, EventStream
from .supervision import TaskOwner
from .witness_watch import WitnessWatch

log = logging.getLogger(__name__)

# Timeouts, batching, policy intervals and the clock are SpaceOptions fields (encspaces/options.py).
INVITE_META = "invite"  # the store's meta key for the secret of the invite this device joined with


def encode_space_id(space: bytes) -> str:
    return member_id(space)


def _mark_retrieved(future: asyncio.Future[None]) -> None:
    """The failure is kept in ``Space.error``; nobody need await the first-sync future."""
    if not future.cancelled():
        future.exception()


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
    def urls(self) -> tuple[str, ...]:
        return self._space.urls

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

    def check_writable(self, need_write: bool = True) -> None:
        self._space._check_writable(need_write)

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

    @property
    def unsent(self) -> int:
        return self._space.unsent

    @property
    def awaiting_log(self) -> Entry | None:
        return self._space._box.awaiting_log()

    def renumbered(self, renames: builtins.list[Rename]) -> None:
        self._space._renumbered(renames)

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
        space._evidence.connected()
        space._witnesses.connection_started()

    def on_verified(self, entries: builtins.list[VerifiedEntry]) -> None:
        self._space._apply_verified(entries)
        self._space.presence.verified()
        self._space._evidence.verified()
        self._space._witnesses.verified()

    def on_anchored(self, seq: int) -> None:
        self._space.snapshots.anchored(seq)
        if faults.ARMED:
            faults.reached("anchored")

    def on_live(self) -> None:
        space = self._space
        space._set_connected(True)
        if not space._first_sync.done():
            space._first_sync.set_result(None)
        space._send_outbox()
        space.snapshots.check_complete()
        space.presence.became_live()
        space.files.became_live()
        space._witnesses.live()

    def on_acked(self, head: SignedHead | None) -> None:
        self._space.presence.acked(head)
        self._space._evidence.acked(head)

    def on_presence(self, data: bytes) -> None:
        self._space.presence.received(data)

    def on_notice(self, notice: Notice) -> None:
        self._space._on_notice(notice)

    def on_blob_reply(self, reply: BlobReply) -> None:
        self._space.files.received(reply)

    def on_checkpoint(self, note: bytes, ref: int | None) -> None:
        self._space._witnesses.checkpoint(note, ref)

    def on_proof_reply(self, reply: ProofReply) -> None:
        self._space._witnesses.proof_reply(reply)

    def on_offline(self) -> None:
        space = self._space
        space._set_connected(False)
        space._evidence.disconnected()
        space.presence.went_offline()
        space.files.went_offline()

    def on_device_in_use(self, refusal: RelayError) -> None:
        space = self._space
        space._device_in_use = DeviceKeyInUseError(str(refusal))


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
        self, urls: tuple[str, ...], identity: Identity, space: bytes, store: LocalStore,
        options: SpaceOptions | None = None,
    ) -> None:
        self.options = check_options(options)
        self._clock = self.options.clock
        self.urls = urls  # every relay this space may use (a cluster's, for failover), in order
        self.identity = identity
        self.space_bytes = space
        self.id = encode_space_id(space)
        self._tasks = TaskOwner(self._fail, self.id[:8])  # every background task and timer of this space
        self._store = store
        self._verifier = LogVerifier(space, identity)
        self._verifier.own_entry = self._held_entry
        self._writable = False  # _check_writable passed, and the verified log has not moved since
        self._me = identity.public.sign_key
        # This session's Yjs client id, derived from our key and a fresh nonce (core/client_ids.py).
        self._client_nonce = crypto.random_bytes(NONCE_SIZE)
        self._document = Document(self._on_local_update, derive_client_id(self._me, self._client_nonce))
        # The nonces of this device's earlier sessions (store.SESSIONS_META), this one's added at _start.
        self._sessions: builtins.list[bytes] = []
        self._device_in_use: DeviceKeyInUseError | None = None
        self._foreign: set[bytes] = set()  # entries by our key that we did not write, until applied
        self._genesis: bytes | None = None
        # Local edits: updates not yet in an entry, then signed entries not yet in the verified log.
        self._updates = LocalBatch()
        self._updates.begin_at(self._document.doc)
        self._batch_timer: asyncio.TimerHandle | asyncio.Handle | None = None
        # When the open batch leaves (loop time): at once after a pause, a growing window in a burst.
        self._batch_window = BatchWindow(self.options.batch_delay, self.options.max_batch_delay)
        # Signed entries not yet in the verified log: numbering, what waits for its write, freshness,
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
        # Whether _restore completed: a space whose restore failed part-way holds a verifier and a
        # document that may not match, and closing it must write nothing (no checkpoint of them).
        self._restored = False
        self._connected = False
        self._state_changed = asyncio.Event()  # connected, failed or closed changed: wakes wait_connected
        self._connection_changes: EventHub[ConnectionChange] = EventHub()
        # The local store's writes: pending batch, writer, checkpoints, redaction (encspaces/persistence.py).
        self._persistence = Persistence(self._host, store, self._box)
        # Relay-signed heads kept, heads past ours held to a deadline, evidence written (evidence_keeper.py).
        self._evidence = EvidenceKeeper(self._host, store, self._persistence)
        self._upkeep = Upkeep()  # the policy's revocations and rotations, each asked for once
        # Admin actions: pre-checks, queuing, timeouts and withdrawal (encspaces/admin.py).
        self._admin = AdminActions(self._host, self._box, self._persistence)
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
        self._witnesses = WitnessWatch(self._host)  # the witnessed log: encspaces/witness_watch.py

    # --- public API ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The relay URL in use: of ``urls``, the one connected to, or tried next while offline."""
        return self._connection.url

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
        """Member id -> ``Member`` (role, who added them, when, and their ``devices``), as of the verified log.

        A member is a person: the id is the person key's. A member from before devices existed
        has one self-certified device whose id is the member id.
        """
        return {member_id(k): m for k, m in self._verifier.state.members.items()}

    @property
    def person_id(self) -> str:
        """The member id of this device's person (``members`` is keyed by it)."""
        person = self._verifier.state.person_of(self._me)
        return member_id(person) if person is not None else self.identity.person_id

    @property
    def device_id(self) -> str:
        """This device's id: its signing key, the author of every entry it writes."""
        return self.identity.member_id

    @property
    def device_certificate(self) -> DeviceCertificate | None:
        """This device's certificate as the verified log holds it (None: self-certified, or not in the
        space): a paired device that connected before installing its certificate learns it here
        (``identity.with_certificate(space.device_certificate)``)."""
        state = self._verifier.state
        person = state.device_owner.get(self._me)
        device = None if person is None else state.members[person].device(self._me)
        return None if device is None else device.cert

    @property
    def device_in_use(self) -> DeviceKeyInUseError | None:
        """Set once the log held an entry by this device key that this device did not write: the
        identity file is used on another machine too. The space goes on (this device's unsent
        entries are numbered after the other machine's), but each machine needs its own device."""
        return self._device_in_use

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
        """The underlying pycrdt document, for integrations; edit through the shared objects instead.

        Once taken, the space keeps this very document for good (it no longer rebuilds its
        document for speed, see ``Document._relayout``), so an integration may hold it. Its
        texts then follow local edits made through it too (``SharedText.watch_local``), so
        ``text(name)`` positions stay exact beside them.
        """
        return self._document.hand_out()

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
        """Every membership change from now on, as verified in the log (add, join, role, removal,
        and a member's device added or removed: ``MemberChange.device``).

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

    @property
    def witness_policy(self) -> WitnessPolicy:
        """The witnesses in force and their quorum (``WitnessPolicy.NONE``: no witnesses)."""
        return self._verifier.state.witness_policy

    @property
    def witnessed_seq(self) -> int | None:
        """How far the log this device verified is witnessed: the largest seq N such that a quorum
        of the space's witnesses each cosigned a checkpoint of size >= N consistent with it (so
        every member is shown the same log through N). None for a space without witnesses."""
        return self._verifier.witness.witnessed_seq

    @property
    def witness_status(self) -> WitnessStatus:
        """``witnessed_seq`` with how many of how many witnesses vouch for it, for status lines."""
        return self._witnesses.status()

    async def set_witnesses(
        self, witnesses: Iterable[Witness], quorum: int | None = None, *, timeout: float | None = None
    ) -> None:
        """Replace the space's witnesses (admins only); an empty list removes them.

        The change is an entry of the log, so it is itself witnessed under the policy before it:
        members count the new witnesses' cosignatures only from a checkpoint past that entry.
        ``quorum`` defaults to a majority. ``timeout``: see ``Space``.
        """
        await self._admin.set_witnesses(WitnessPolicy.of(witnesses, quorum), timeout)

    async def add_member(
        self, public_identity: PublicIdentity | DeviceCertificate | str, role: str | Role = Role.WRITER,
        history: bool = True, *, timeout: float | None = None,
    ) -> None:
        """Add a member (admins only); ``history`` gives them every retained epoch key, else the current one.

        ``public_identity``: a self-certified device (``PublicIdentity``, ``esid1.…``), or a person's
        certified first device (``DeviceCertificate``, ``escert1.…``, what ``Identity.public_string``
        gives for a device made by ``encspaces init``): the member is then the person.
        Returns once the membership entry is verified in the log. ``timeout``: seconds to wait
        (None: as long as it takes); what a timeout or cancellation does is said on ``Space``.
        """
        await self._admin.add_member(public_identity, role, history, timeout)

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
        await self._admin.remove_member(member, revoke_invites, timeout)

    async def add_device(
        self, device: DeviceCertificate | str, history: bool = True, *, timeout: float | None = None,
    ) -> None:
        """Admit a new device of this device's person into the space, sealing the epoch keys to it.

        ``device``: its certificate (``Person.certify``; ``encspaces.add_device`` makes it and calls
        this in every space). Any member may add their own devices, whatever their role; the
        device gets the person's role. ``history``: every retained epoch key, else the current one.
        ``timeout``: as for every admin action (see ``Space``).
        """
        await self._admin.add_device(device, history, timeout)

    async def remove_device(self, device: str, *, timeout: float | None = None) -> None:
        """Remove a device (lost, sold, stolen) and start a new epoch whose key it never gets.

        Its person stays a member with their other devices and keeps the role. An admin may
        remove anyone's device; a person removes their own with a device holding the person key
        (its signature, the revocation, is in the entry). A person's last device cannot be
        removed: remove the member instead. ``timeout``: see ``Space``.
        """
        await self._admin.remove_device(device, timeout)

    async def set_role(self, member: str | PublicIdentity, role: str | Role, *, timeout: float | None = None) -> None:
        """Change a member's role: admin, writer or reader (admins only). ``timeout``: see ``Space``."""
        await self._admin.set_role(member, role, timeout)

    async def rotate_key(self, *, timeout: float | None = None) -> None:
        """Start a new epoch now (admins only); the policy can also make admins' clients do it.

        ``timeout``: see ``Space``.
        """
        await self._admin.rotate_key(timeout)

    async def set_policy(self, policy: Policy, *, timeout: float | None = None) -> None:
        """Set rotation and retention (admins only); see ``encspaces.Policy``. ``timeout``: see ``Space``."""
        await self._admin.set_policy(policy, timeout)

    async def create_invite(
        self, role: str | Role = Role.WRITER, uses: int = 1, expires_in: float | None = 7 * 24 * 3600,
        history: bool = True, *, timeout: float | None = None,
    ) -> str:
        """An invite link to paste in a chat: relay address, space id and a secret the relay never sees.

        ``expires_in`` is in seconds (None: never); ``uses`` is how many people may join with it.
        ``timeout``: see ``Space``; an invite withdrawn on timeout or cancellation is never
        published, so the link nobody received never works.
        """
        return await self._admin.create_invite(role, uses, expires_in, history, timeout)

    async def revoke_invite(self, invite: str, *, timeout: float | None = None) -> None:
        """Revoke an invite, named by its id (``space.invites``) or by its link, and start a new epoch.

        An open invite holds the current epoch key (its entry, and every rotation since, sealed it
        to the link), so whoever has the link may hold it too: the revocation is followed, in the
        same call, by a rotation whose key goes to the members only. Once the revocation is in the
        log the relay closes the connections it let in with that invite and refuses them after.
        ``timeout``: see ``Space``.
        """
        await self._admin.revoke_invite(invite, timeout)

    def _renumbered(self, renames: builtins.list[Rename]) -> None:
        """The outbox was numbered again (entries dropped or re-issued): the stored one is replaced,
        and the admin actions waiting for the old entries follow the new ones."""
        self._persistence.pending.outbox = [(e.header.author_seq, e.raw) for e in self._box.entries]
        self._persistence.pending.outbox_reset = True
        for old, new in renames:
            if new is not None and faults.ARMED:
                faults.reached("built")
            self._admin.renamed(old, new)
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
        return rebuild(rows, seq, self._verifier.epoch_keys, self._verifier.forgotten, self.snapshots.bad_seqs,
                       self._verifier.state.client_ids_bound)

    async def write_snapshot(self, *, timeout: float | None = None) -> None:
        """Post a snapshot of the document now (members who may write); the policy also does it by itself.

        Useful right after adding someone without history: they start from it. ``timeout``: see ``Space``.
        """
        await self._admin.write_snapshot(timeout)

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
        self._document.close()  # else pycrdt's observers keep this whole Space alive (Document.close)
        if self._restored:
            self._evidence.closing()
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
        self._witnesses.wake()  # join/connect waiting for the witnesses raise it
        self._connection.stop_applying()  # stop applying anything more from this relay
        if not self._first_sync.done():
            self._first_sync.set_exception(exc)
        if first:
            self._evidence.failed(exc)  # a fork, rollback or withholding: its proof, completed and stored
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

    def _check_writable(self, need_write: bool = True) -> None:
        # Called before every keystroke: what it checks (role, current epoch and its key) changes
        # only with the verified log, so a pass holds until the log moves or the space fails.
        if need_write and self._writable and self.error is None and not self._closed:
            return
        self._raise_if_failed()
        self._check_keys()
        self._raise_if_failed()
        role = self._verifier.state.role_of(self._me)
        if role is None and self._verifier.seq > 0:
            raise NotPermittedError("you are not a member of this space (yet): nothing you write would be accepted")
        if need_write and role is not None and not role.can_write:
            raise NotPermittedError(f"your role {role.value} may not write in this space")
        self._writable = need_write  # a pass for any role (need_write=False) says nothing of writing

    # --- local edits -> entries ------------------------------------------------------------

    def _on_local_update(self, update: bytes) -> None:
        """Batch on the trailing edge only under load: the first edit after a pause goes at once.

        A person typing at human speed then waits for no timer (the edit leaves on the next
        turn of the event loop), while a burst shares one entry per window: ``options.batch_delay``
        at first, doubling while the burst goes on up to ``options.max_batch_delay``
        (``core/batch_window.py`` says why). A batch that reached ``options.max_batch_count``
        transactions leaves on the next turn of the event loop, as the first edit after a pause
        does: outside the transaction this update comes from, where its update can be read
        from the document instead of merged (``local_batch.py``).
        """
        held = self._updates.add(update)
        if faults.ARMED:
            faults.reached("edit")
        if held == self.options.max_batch_count:
            if self._batch_timer is not None:
                self._tasks.cancel(self._batch_timer)
            self._batch_timer = self._tasks.later(0.0, self._flush_batch, "the edit batcher")
        elif self._batch_timer is None:
            delay = self._batch_window.opened(asyncio.get_running_loop().time())
            self._batch_timer = self._tasks.later(delay, self._flush_batch, "the edit batcher")

    def _flush_batch(self) -> None:
        if self._batch_timer is not None:
            self._tasks.cancel(self._batch_timer)
            self._batch_timer = None
        if not self._updates or self.error is not None:
            return
        self._batch_window.flushed(asyncio.get_running_loop().time())
        bound = self._verifier.state.client_ids_bound
        try:
            for update in self._updates.take(self._document.doc, self.options.max_batch_update):
                if bound:
                    self._check_own_clients(update)
                self._queue_entry(Kind.DATA, write_data(update, bound, self._client_nonce))
            self._send_outbox()  # beside the write that stores them, once this session's nonce is (outbox.py)
        except ForeignClientIdError as exc:
            self._fail(exc)
        except EntryTooLargeError as exc:
            # One edit too large for any entry (a huge paste): it cannot reach anyone. Say so, and
            # stop: carrying on would let this document drift from everyone else's.
            self._fail(EntryTooLargeError(f"{exc}: split very large edits into smaller ones"))

    def _check_own_clients(self, update: bytes) -> None:
        """Raise ForeignClientIdError if ``update`` holds items under a client id not this session's."""
        mine = self._document.client_id
        foreign = foreign_items(update, mine)
        if foreign is not None:
            raise ForeignClientIdError(
                f"local edits hold items under Yjs client id {foreign[1]}"
                f"{f' and {foreign[0] - 1} more' if foreign[0] > 1 else ''}, not this session's {mine}: "
                "an update from another document was applied through Space.doc; every member would reject "
                "the entry, so nothing of the batch was sent (copy content through the space's objects instead)")

    def _queue_entry(self, kind: Kind, payload: bytes, parent: tuple[int, bytes] | None = None) -> Entry:
        """Sign and queue an entry; its parent is our verified head unless given (snapshots)."""
        entry = self._box.build(kind, payload, self._verifier.state, self._verifier.epoch_keys, parent)
        if faults.ARMED:
            faults.reached("built")
        self._persistence.pending.outbox.append((entry.header.author_seq, entry.raw))
        self._persistence.wake()  # stored at once; sent when stored, or before for an edit (core/outbox.py)
        return entry

    def _send_outbox(self) -> None:
        session, send = self._connection.live_session(), self._connection.send
        if session is None:
            return
        decision = self._box.to_send(self._clock.now_ms(), self._verifier.fresh_ms,
                                    int(self.options.freshness_limit * 1000), self._verifier.state.client_ids_bound)
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
        self._evidence.sent()  # our oldest entry in flight is held to the deadline from now

    # --- verified entries -> document ------------------------------------------------------

    def _apply_verified(self, results: builtins.list[VerifiedEntry]) -> None:
        if self._box.last_author_seq > 0:  # (a fresh store cannot tell its own old entries from others')
            self._check_own_entries(results)
        self._writable = False  # roles, epochs and keys may change: check again at the next edit
        self.snapshots.begin_batch(results, not self._updates, max(
            (e.header.author_seq for e in self._box.entries if e.header.kind is Kind.DATA), default=0))
        rows, forgotten, keeper, state = self._persistence.pending.log, self._verifier.forgotten, self.snapshots, \
            self._verifier.state
        for result in results:
            if result.stripped:
                # An encrypted entry without its body (thousands in a catch-up a snapshot covers):
                # stored as it came (only control bodies hold sealed keys to redact), never late,
                # undecryptable, a genesis or a membership change; the keeper is all it concerns.
                rows.append((result.seq, result.entry.raw, result.head))
                keeper.on_entry(result)
                keeper.after_entry(result, state)
                continue
            if not result.late:
                stored = redact(result.entry, forgotten) or result.entry.raw
                rows.append((result.seq, stored, result.head))
            if result.kind is Kind.GENESIS and self._genesis is None:
                self._genesis = result.entry.raw
            if result.problem is not None and not result.awaiting_key:
                self._reject(result, "undecryptable", result.problem)
            if not keeper.on_entry(result):
                self._apply_one(result)
            keeper.after_entry(result, state)
            if not result.late and result.kind in MEMBERSHIP_KINDS:
                self._member_changes.publish(member_change(result, state))
        if self._verifier.pruned:  # a new device's entries up to its anchor, known by digest alone
            rows.extend(self._verifier.pruned)
            rows.sort(key=lambda row: row[0])
            self._verifier.pruned = []
        if not self._updates:
            # Others' clocks moved: the next batch begins here (else it is merged: local_batch.py).
            self._updates.begin_at(self._document.doc)
        done = self._box.verified(self._verifier.state.author_seqs.get(self._me, 0))
        if done is not None:
            self._persistence.pending.outbox_done_through = done
        removal = self._removal()
        if self._verifier.key_failure is not None:
            self._fail(self._verifier.key_failure)  # an admin handed us a key the log did not commit to
        elif removal is not None:
            self._fail(removal)
        elif self._box.needs_reissue(self.epoch):
            self._reissue_outbox()
        self._check_keys()
        self._maintain()
        if self._verifier.settled_anchor is not None \
                or self.seq - self._persistence.checkpoint_seq >= self.options.checkpoint_every:
            # (a start at an anchor that a snapshot just covered is stored with a checkpoint past it)
            self._persistence.take_checkpoint()
        self._persistence.wake()
        self._progress.set()

    def _removal(self) -> MembershipRevokedError | None:
        """The error of this device's removal, if the verified log holds it (and no invite brings it back)."""
        removed_at = self._verifier.removed_at
        if removed_at is None or self._invite is not None:  # (with an invite we are coming back)
            return None
        device = member_id(self._me)
        who = "this device was" if self._me in self._verifier.state.removed_devices else "this device's member was"
        return MembershipRevokedError(
            f"{who} removed from space {self.id} at seq {removed_at} (device {device}): it reads and writes "
            "nothing new there; encspaces.open_local still reads what it had",
            space=self.id, device=device, seq=removed_at)

    def _held_entry(self, author_seq: int) -> bytes | None:
        """The bytes of our entry ``author_seq`` as this device signed them, while the outbox holds it:
        the verifier need not check our signature on those very bytes again (``LogVerifier._verify_entry``)."""
        entries = self._box.entries
        if not entries:
            return None
        index = author_seq - entries[0].header.author_seq  # the outbox numbers without a gap
        if 0 <= index < len(entries) and entries[index].header.author_seq == author_seq:
            return entries[index].raw
        return next((e.raw for e in entries if e.header.author_seq == author_seq), None)

    def _check_own_entries(self, results: builtins.list[VerifiedEntry]) -> None:
        """Entries by this device key that the outbox does not hold. An edit under the nonce of one
        of our sessions left before a crash took its write (core/outbox.py): ours, said in the log.
        Any other is another machine's: the key is used there too. Not a relay fault (the signature
        is ours) and not fatal: say so (``device_in_use``). Either way our unsent entries are
        numbered after them, and they are applied like anyone else's (``_apply_one``)."""
        mine = [r for r in results if not r.late and r.entry.header.author == self._me and r.kind is not Kind.GENESIS]
        if not mine:
            return
        ours = {e.raw for e in self._box.entries}
        foreign = [r for r in mine if r.entry.raw not in ours]
        if not foreign:
            return
        self._foreign.update(r.entry.raw for r in foreign)
        elsewhere = [r for r in foreign if not self._of_our_sessions(r)]
        if elsewhere:
            first = elsewhere[0]
            self._device_in_use = DeviceKeyInUseError(
                f"seq {first.seq}: the log holds {len(elsewhere)} entr{'y' if len(elsewhere) == 1 else 'ies'} by "
                f"this device (author_seq {first.entry.header.author_seq}) that this device did not write: "
                + device_in_use_message(self._me, f"space {self.id[:12]}"))
            log.warning("%s", self._device_in_use)
        if len(elsewhere) < len(foreign):
            log.info("space %s: %d edit(s) of this device from seq %d reached the relay but not the local store "
                     "(the process ended beside their write): applied from the log", self.id[:12],
                     len(foreign) - len(elsewhere), foreign[0].seq)
        if self._box.entries:
            in_log = {r.entry.raw for r in results}
            self._renumbered(self._box.displaced(in_log, self._verifier.state, self._verifier.epoch_keys))

    def _of_our_sessions(self, result: VerifiedEntry) -> bool:
        """A data entry written under the nonce of one of this device's sessions (store.SESSIONS_META)."""
        if result.kind is not Kind.DATA or result.plaintext is None or not self._verifier.state.client_ids_bound:
            return False
        split = split_plaintext(result.plaintext)
        return split is not None and split[0] in self._sessions

    def _apply_one(self, result: VerifiedEntry) -> None:
        if result.plaintext is None:
            return  # (an undecryptable one was reported by _apply_verified)
        header = result.entry.header
        # Read (and so its client id claimed, client_ids.py) also when it is our own edit: our
        # device must know it wrote first under its client id, as every other device does.
        update = read_data(result.plaintext, self._verifier.state.client_ids_bound, self._verifier.client_owners,
                           header.author)
        if isinstance(update, Unusable):
            self._reject(result, update.kind, update.reason)
            return
        if header.author == self._me and header.author_seq <= self._box.last_author_seq:
            if not self._foreign or result.entry.raw not in self._foreign:
                return  # our own edit, already in the document
            self._foreign.discard(result.entry.raw)  # another machine's, with our key: not in our document
        try:
            self._document.apply_remote(update, result.entry.author_id)
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
            self._verifier.own_entry = self._held_entry
            if self._verifier.tree_missing or self._verifier.state.anchors_missing:
                stored = await self._store.load_log(0, after)  # (read once for both)
                if self._verifier.tree_missing:  # a checkpoint from before the Merkle tree: rebuilt once
                    self._verifier.rebuild_tree([stored_digest(raw) for _, raw, _ in stored])
                if self._verifier.state.anchors_missing:  # a checkpoint from before anchors: rebuilt once
                    self._verifier.rebuild_anchors(stored)
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
                and self._me not in self._verifier.state.device_owner):
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
                    bound = self._verifier.state.client_ids_bound
                    update = plaintext[NONCE_SIZE:] if bound else plaintext  # (our own: written by write_data)
                    self._document.apply_remote(update, None)
            restored.append(entry)
        self._box.restored(restored, mine)  # all of it came from the store: durable
        self._sessions = _stored_sessions(await self._store.get_meta(SESSIONS_META))
        await self._evidence.restore()
        self._restored = True

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
        # This session's nonce with the earlier ones, durable before any of its edits leaves (outbox.py).
        self._sessions = [*self._sessions[-(SESSIONS_KEPT - 1):], self._client_nonce]
        self._persistence.pending.meta[SESSIONS_META] = pack(self._sessions)
        self._persistence.start()  # the store writer: never cancelled mid-write (close() waits for it)
        self._connection.start()
        self._ticker = self._tasks.spawn(self._tick(), "the maintenance ticker")
        self.presence.start(self._tasks)
        self._witnesses.start()

    async def _tick(self) -> None:
        """Time-based policy (retention by age, rotation by age, expired invites) also applies
        when nothing arrives from the relay."""
        while not self._closed:
            await asyncio.sleep(self.options.maintenance_interval)
            self._evidence.tick()  # heads the relay signed past ours, held to the withholding deadline
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
            self._admin.refused(decision.entry.raw, notice.message)
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


RELAYS_META = "relays"  # the store's meta key for the space's relay URLs (msgpack list of str)


async def _open_space(
    urls: tuple[str, ...], identity: Identity, space: bytes, data_dir: str | Path, tls: SSLContext | None = None,
    options: SpaceOptions | None = None,
) -> Space:
    store = await LocalStore.open(data_dir, space.hex())
    try:
        stored = await store.get_meta("member")
        if stored is not None and stored != identity.public.sign_key:
            raise StoreError(f"the local store in {data_dir} belongs to another identity")
    except BaseException:
        await store.close()  # (else this copy stays locked until the process ends)
        raise
    space_obj = Space(urls, identity, space, store, options)
    space_obj._connection.tls = tls
    space_obj._persistence.pending.meta.update({"member": identity.public.sign_key, "url": urls[0].encode(),
                                                RELAYS_META: pack(list(urls))})
    return space_obj


async def create_space(
    url: RelayUrls, identity: Identity, *, data_dir: str | Path, timeout: float | None = DEFAULT_TIMEOUT,
    ssl: SSLContext | None = None, options: SpaceOptions | None = None,
    witnesses: Iterable[Witness] | None = None, quorum: int | None = None,
) -> Space:
    """Create a space on the relay at ``url``; the creator is its first admin.

    ``url``: one relay's URL, or a list of a cluster's relays (docs/cluster.md): the first that
    answers creates the space, and the space fails over between them in turn whenever its
    connection is lost.

    ``witnesses``: the space's witnesses (``Witness``, e.g. ``Witness.from_vkey(key, url)``),
    written into its genesis entry; a checkpoint counts as witnessed once ``quorum`` of them
    cosigned it (default: a majority). Without witnesses the space works as before and says so
    (``witness_policy`` is ``WitnessPolicy.NONE``); they are strongly recommended: they let
    members detect a relay that forks, rolls back or withholds the log.

    ``timeout`` in seconds (None: no limit) bounds the whole call; on expiry it raises
    ``OperationTimeoutError`` and leaves nothing open. ``ssl``: for a ``wss://`` relay whose
    certificate the system does not trust (a private CA), the context that trusts it.
    ``options``: the space's settings (``SpaceOptions``; None: the defaults).
    """
    check_timeout(timeout)
    options = check_options(options)
    urls = relay_urls(url, ssl)
    witness_policy = WitnessPolicy.of(witnesses, quorum)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with deadline(timeout, lambda: f"create_space: waited for the relay at {' or '.join(urls)} to open "
                                         "a session"):
        answered, challenge = await _first_challenge(urls, ssl, options.open_timeout)
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
        payload=genesis_body(identity.public, challenge.relay_key, crypto.random_key(), witness_policy,
                             identity.certificate),
        epoch_key=None,
        time_ms=options.clock.now_ms(),
    )
    space = await _open_space(urls, identity, space_id_of(genesis.raw), data_dir, ssl, options)
    space._connection.start_at(answered)
    space._verifier.relay_key_hint = challenge.relay_key
    left = None if timeout is None else max(0.0, timeout - (loop.time() - started))
    return await _start_and_wait(space, genesis.raw, left, "create_space")


async def _first_challenge(urls: tuple[str, ...], tls: SSLContext | None, open_timeout: float) -> tuple[str, Message]:
    """The first frame (the challenge) of the first of ``urls`` that answers with one, and its URL.

    With several relays each gets ``open_timeout`` seconds, so that one that hangs does not keep
    the others from being tried; one relay alone has the caller's whole timeout. A relay that
    refuses at once (busy, shutting down) is passed over too; if every relay fails, a refusal
    is raised before "could not reach".
    """
    failures: builtins.list[ConnectionFailedError] = []
    refusals: builtins.list[RelayError] = []
    limit = open_timeout if len(urls) > 1 else None
    for url in urls:
        try:
            async with asyncio.timeout(limit), ws_connect(url, compression=None, open_timeout=None,
                                                          **connect_options(url, tls)) as ws:
                first = decode_message(await ws.recv(decode=False))
        except (OSError, EOFError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            failures.append(connect_failure(url, exc))
            continue
        if isinstance(first, Error):
            refusals.append(RelayError(first.code, first.message))
            continue
        return url, first
    if refusals:
        raise refusals[0]
    raise none_reachable(failures)


def _stored_sessions(stored: bytes | None) -> builtins.list[bytes]:
    if stored is None:
        return []
    try:
        nonces = as_list(unpack(stored, what="stored sessions"), "stored sessions")
        return [as_bytes(nonce, "stored session nonce", NONCE_SIZE) for nonce in nonces]
    except ProtocolError as exc:
        raise StoreError(f"the nonces of this device's sessions do not decode: {exc}") from exc


async def _start_and_wait(space: Space, genesis: bytes | None, timeout: float | None, call: str) -> Space:
    try:
        await space._restore()
        removal = space._removal()
        if removal is not None:
            # The device's own copy holds its removal: a space that could only ever be failed is
            # not opened (nothing connects); the caller gets the reason, naming space and device.
            space._fail(removal)
            raise removal
        space._start(genesis)
        if space.seq > 0:
            return space  # usable from the local store; sync continues in the background
        async with deadline(timeout, lambda: f"{call}: waited for the first sync with the relay at {space.url}"):
            await asyncio.shield(space._first_sync)
            # A new device accepts the log only once it is consistent with the witnesses' newest.
            await space._witnesses.wait_settled()
    except BaseException:
        await space.close()
        raise
    return space


async def join(
    link: str, identity: Identity, *, data_dir: str | Path, timeout: float | None = DEFAULT_TIMEOUT,
    ssl: SSLContext | None = None, options: SpaceOptions | None = None, relays: RelayUrls | None = None,
) -> Space:
    """Join a space with an invite link; returns once this device is a verified member.

    The relay lets us in on the strength of the invite's secret (it never sees the secret
    itself), we read the log, then post a join entry that every member checks against the
    invite. A used-up, expired or revoked invite is refused with a RelayError saying which.
    When it returns, what this device needs to use ``data_dir`` again (the invite's secret,
    which opens the keys sealed to the invite, and a checkpoint holding them) is durable.
    ``timeout`` in seconds (None: no limit) bounds the whole call (``OperationTimeoutError``).
    The link names the relay, or a cluster's relays, to fail over between; ``relays`` (one URL
    or a list), when given, replaces them. ``ssl`` and ``options``: as for ``create_space``.
    """
    check_timeout(timeout)
    parsed = InviteLink.parse(link)
    urls = relay_urls(parsed.urls if relays is None else relays, ssl)
    space = await _open_space(urls, identity, parsed.space, data_dir, ssl, check_options(options))
    space._invite = parsed.secret
    # Written with (or before) the join entry: a restart replays the invite's sealed keys with it.
    space._persistence.pending.meta[INVITE_META] = parsed.secret.secret
    me = identity.public.sign_key
    try:
        await space._restore()
        space._start(None)
        async with deadline(timeout, lambda: f"join: waited to become a member of space {space.id} "
                                             f"through the relay at {' or '.join(urls)}"):
            if me not in space._verifier.state.device_owner:
                await asyncio.shield(space._first_sync)
            # Accept the log only once it is consistent with what the witnesses report (a relay
            # cannot show a new device an old or forked log), before writing anything to it.
            await space._witnesses.wait_settled()
            if me not in space._verifier.state.device_owner:
                if any(e.header.kind is Kind.JOIN for e in space._box.entries):
                    await space.sync()  # an interrupted join's entry, resent from the store
                else:
                    proof = parsed.secret.join_proof(parsed.space, me, identity.public.box_key)
                    await space._admin.control(Kind.JOIN, JoinBody(parsed.secret.invite_key, identity.public.box_key,
                                                             proof, identity.certificate).encode())
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
    opened = await _open_space(("",), identity, space, data_dir)  # no relay: the URL is never used
    opened._persistence.pending.meta.clear()  # the stored relay URL and member stay as they are
    try:
        await opened._restore()
    finally:
        await opened.close()
    return SpaceView(opened.seq, opened._document)


class connect:
    """Open a space: ``async with connect(url, identity, space_id, data_dir=...) as space``.

    ``url``: one relay's URL or a list of a cluster's relays, tried in turn (see ``create_space``).
    ``timeout`` in seconds (None: no limit) bounds the wait for the first sync of a new data dir.
    ``ssl`` and ``options``: as for ``create_space``.

    A device whose copy in ``data_dir`` already holds its own removal (``remove_member`` of its
    member, or ``remove_device`` of it) gets ``MembershipRevokedError`` naming the space, the
    device and the seq of the removal, and nothing stays open (``encspaces.open_local`` still
    reads what it had). A removal this device has not verified yet fails the opened space as
    soon as it catches up to it; a new data dir of a removed device is refused by the relay
    (``RelayError`` ``not_a_member``).
    """

    def __init__(
        self, url: RelayUrls, identity: Identity, space_id: str, *, data_dir: str | Path,
        timeout: float | None = DEFAULT_TIMEOUT, ssl: SSLContext | None = None, options: SpaceOptions | None = None,
    ) -> None:
        check_timeout(timeout)
        self._options = check_options(options)
        urls = relay_urls(url, ssl)
        self._ssl = ssl
        self._args = (urls, identity, decode_space_id(space_id), data_dir)
        self._timeout = timeout
        self._space: Space | None = None

    async def _open(self) -> Space:
        """With a local copy the space opens at once (sync continues in the background); a new
        data dir waits for the first sync, bounded by ``timeout`` seconds (None: no limit)."""
        urls, identity, space, data_dir = self._args
        opened = await _open_space(urls, identity, space, data_dir, self._ssl, self._options)
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


async def add_device(
    spaces: Iterable[Space], device: PairingRequest | DeviceCertificate | str, *, name: str | None = None,
    history: bool = True, timeout: float | None = None,
) -> DeviceCertificate:
    """Certify a new device of this person and admit it into every space of ``spaces`` it is not in yet.

    ``device``: the pairing string the new device shows (``esdev1.…``, ``Identity.pairing_request``)
    or a certificate made before. The spaces' identity must hold the person key (``Identity.person``:
    the person's first device, or a device made before devices existed). Returns the certificate:
    give it to the new device (``Identity.with_certificate``; the CLI prints it as ``escert1.…``)
    so that it can join further spaces and show its person. ``name`` overrides the name the
    pairing string carries; ``history`` and ``timeout`` are as for ``Space.add_device``, per space.
    """
    spaces = builtins.list(spaces)
    if isinstance(device, str):
        device = DeviceCertificate.parse(device) if device.strip().startswith(CERT_PREFIX) \
            else PairingRequest.parse(device)
    if isinstance(device, DeviceCertificate):
        cert = device
    elif isinstance(device, PairingRequest):
        if not spaces:
            raise InvalidArgumentError("add_device needs at least one space (its identity certifies the device)")
        person = spaces[0].identity.person
        if person is None:
            raise NotPermittedError("this device does not hold its person key: add devices from the person's first "
                                    "device (or import the person key: `encspaces identity import-person`)")
        cert = person.certify(device, name, issued_ms=spaces[0].options.clock.now_ms())
    else:
        raise ArgumentTypeError(f"a device is a pairing string, PairingRequest or DeviceCertificate, not "
                                f"{type(device).__name__}")
    for space in spaces:
        if cert.device not in space.state.device_owner:
            await space.add_device(cert, history, timeout=timeout)
    return cert
