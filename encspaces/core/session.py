"""The client side of one relay connection as an explicit state machine, without I/O.

The asyncio layer feeds it every message it receives and sends what it returns; the
handshake, the switch from catch-up to live, and every verification happen here, so the
whole protocol is testable with bytes alone.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias

from ..errors import (
    AnchorStateError,
    HandshakeError,
    MalformedFrameError,
    MissingBodiesError,
    ProtocolError,
    RelayError,
)
from . import crypto
from .head import SignedHead
from .identity import Identity, member_id
from .invites import InviteSecret
from .messages import (
    PROTOCOL_VERSION,
    Ack,
    AnchorState,
    AuthStatement,
    BlobAck,
    BlobData,
    BlobGet,
    BlobMissing,
    BlobPut,
    BlobRefused,
    BlobReply,
    Challenge,
    CheckpointNote,
    Consistency,
    Entries,
    Error,
    Hello,
    Inclusion,
    Message,
    Presence,
    ProofRefused,
    ProofReply,
    ProofRequest,
    Submit,
    Welcome,
    decode_message,
)
from .verifier import LogVerifier, VerifiedEntry

# A batch of queued Entries frames verified as one (``ClientSession.receive_all``) holds at most
# this many entries and bytes of frames, so one batch never holds the event loop much longer
# than one frame does (a relay's catch-up frame holds up to 1,024 entries by default).
MAX_BATCH_ENTRIES = 256
MAX_BATCH_BYTES = 1 << 20


class SessionState(enum.Enum):
    AWAITING_CHALLENGE = "awaiting challenge"
    AWAITING_WELCOME = "awaiting welcome"
    CATCHING_UP = "catching up"
    LIVE = "live"
    FAILED = "failed"


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Verified:
    entries: list[VerifiedEntry]


@dataclass(frozen=True)
class Anchored:
    """A new device installed the relay's log state at the anchor ``seq``: everything after it is held
    until an agreed snapshot covers it (the device's state there is the relay's word until then)."""

    seq: int


@dataclass(frozen=True)
class BecameLive:
    """Catch-up reached the head the relay announced: submitting is safe from here on."""


@dataclass(frozen=True)
class Acked:
    results: list[tuple[int, int]]
    head: SignedHead | None = None


@dataclass(frozen=True)
class PresenceReceived:
    """A peer's presence message, still sealed: the space opens and checks it."""

    data: bytes


@dataclass(frozen=True)
class BlobReplyReceived:
    """The relay's answer to one of our blob requests: the space's files layer matches it by id."""

    reply: BlobReply


@dataclass(frozen=True)
class CheckpointReceived:
    """A signed checkpoint from the relay (in its welcome, pushed once cosigned, or asked for
    with ``id``): unverified bytes, for the space's witness tracking to check."""

    note: bytes
    id: int | None = None


@dataclass(frozen=True)
class ProofReplyReceived:
    """The relay's answer to one of our proof requests, matched by id; unverified."""

    reply: ProofReply


@dataclass(frozen=True)
class Notice:
    """A refusal that does not end the connection (entries under an epoch that just ended)."""

    code: str
    message: str
    ref: int | None = None  # the author_seq of our refused entry


Event: TypeAlias = (
    Send | Verified | Anchored | BecameLive | Acked | PresenceReceived | Notice | BlobReplyReceived | CheckpointReceived
    | ProofReplyReceived
)


class ClientSession:
    """One connection: handshake, then verified frames. Create a new one per connection."""

    def __init__(
        self, identity: Identity, verifier: LogVerifier, genesis: bytes | None = None,
        invite: InviteSecret | None = None,
    ) -> None:
        self.identity = identity
        self.verifier = verifier
        self.genesis = genesis
        self.invite = invite  # a newcomer's invite, shown to the relay until we are a member
        self.state = SessionState.AWAITING_CHALLENGE
        self.target_seq = 0

    def receive(self, data: bytes, now_ms: int) -> list[Event]:
        """Handle one message from the relay; raises a specific EncspacesError on anything wrong."""
        return self._guarded(lambda: self._handle(self._decode(data), now_ms))

    def receive_all(self, messages: Iterable[bytes], now_ms: int) -> Iterator[list[Event]]:
        """Handle messages that were queued together, in their order, one list of events per step.

        A run of contiguous Entries frames (each starting right after the previous one's last
        seq) is verified as one frame: its entries under the newest frame's signed head, so a
        device that fell behind checks one relay signature, and applies and stores once, per
        run instead of per frame (docs/PROTOCOL.md, "Frames queued together"). Anything else
        (another message, a gap, an empty frame, the caps) ends the run; each message is then
        handled as ``receive`` would. The steps are yielded as they are handled, so whatever an
        earlier step returned is the caller's before a later one raises.
        """
        for step in batched(messages):
            if isinstance(step, bytes):
                yield self.receive(step, now_ms)  # malformed: the precise error, after what came before
            else:
                yield self._guarded(partial(self._handle, step, now_ms))

    def _guarded(self, handle: Callable[[], list[Event]]) -> list[Event]:
        if self.state is SessionState.FAILED:
            raise HandshakeError("this session has failed; open a new connection")
        try:
            return handle()
        except BaseException:
            self.state = SessionState.FAILED
            raise

    def _decode(self, data: bytes) -> Message:
        try:
            return decode_message(data)
        except ProtocolError as exc:
            raise MalformedFrameError(f"the relay sent a malformed message in state {self.state.value}: {exc}") from exc

    def _handle(self, message: Message, now_ms: int) -> list[Event]:
        if isinstance(message, Error):
            if not message.fatal and self.state is SessionState.LIVE:
                return [Notice(message.code, message.message, message.ref)]
            raise RelayError(message.code, message.message)
        if self.state is SessionState.AWAITING_CHALLENGE and isinstance(message, Challenge):
            return [Send(self._hello(message, now_ms))]
        if self.state is SessionState.AWAITING_WELCOME and isinstance(message, Welcome):
            self.verifier.check_welcome(message)
            self.target_seq = message.head.seq
            return self._maybe_live([] if message.checkpoint is None else [CheckpointReceived(message.checkpoint)])
        if self.state in (SessionState.CATCHING_UP, SessionState.LIVE):
            if isinstance(message, Entries):
                live = self.state is SessionState.LIVE
                return self._maybe_live([Verified(self.verifier.verify_frame(message, live=live))])
            if isinstance(message, AnchorState) and self.state is SessionState.CATCHING_UP and self.verifier.sparse:
                self.verifier.install_anchor(message.seq, message.state)
                return self._maybe_live([Anchored(message.seq)])
            if isinstance(message, Ack):
                if message.head is not None:
                    self.verifier.note_signed_head(message.head)
                return [Acked(message.results, message.head)]
            if isinstance(message, Presence):
                return [PresenceReceived(message.data)]
            if isinstance(message, (BlobAck, BlobData, BlobMissing, BlobRefused)):
                return [BlobReplyReceived(message)]
            if isinstance(message, CheckpointNote):
                return [CheckpointReceived(message.note, message.id)]
            if isinstance(message, (Consistency, Inclusion, ProofRefused)):
                return [ProofReplyReceived(message)]
        raise MalformedFrameError(f"unexpected {type(message).__name__.lower()} message in state {self.state.value}")

    def _hello(self, challenge: Challenge, now_ms: int) -> bytes:
        if challenge.version != PROTOCOL_VERSION:
            raise HandshakeError(f"the relay speaks protocol version {challenge.version}, we speak {PROTOCOL_VERSION}")
        known = self.verifier.relay_key
        if known is not None and challenge.relay_key != known:
            raise HandshakeError(
                f"the relay presents key {member_id(challenge.relay_key)}, but this space is pinned to "
                f"{member_id(known)}: wrong relay, or an impostor"
            )
        self.verifier.relay_key_hint = self.verifier.relay_key_hint or challenge.relay_key
        auth = AuthStatement(
            space=self.verifier.space,
            member=self.identity.public.sign_key,
            relay_key=challenge.relay_key,
            nonce=challenge.nonce,
            time_ms=now_ms,
        ).encode()
        self.state = SessionState.AWAITING_WELCOME
        newcomer = self.invite is not None and self.identity.public.sign_key not in self.verifier.state.device_owner
        return Hello(
            auth=auth,
            signature=self.identity.sign(crypto.CTX_AUTH, auth),
            since_seq=self.verifier.seq,
            since_head=self.verifier.head,
            genesis=self.genesis if self.verifier.seq == 0 else None,
            invite=(self.invite.invite_key, self.invite.auth_proof(auth)) if newcomer and self.invite else None,
            fast=self.verifier.seq == 0,  # a new device starts from the newest snapshot
            anchored=self.verifier.seq == 0,  # and at its anchor
        ).encode()

    def _maybe_live(self, events: list[Event]) -> list[Event]:
        if self.state is not SessionState.LIVE and self.verifier.seq >= self.target_seq:
            anchor = self.verifier.anchor
            if anchor is not None and self.verifier.sparse:
                raise MissingBodiesError(
                    f"the relay sent entries up to seq {self.verifier.seq} as digests, and no log state for the "
                    "anchor they lead to")
            if anchor is not None:  # (the relay starts a device at an anchor only for a snapshot that covers it)
                raise AnchorStateError(
                    f"the relay started this device at the anchor at seq {anchor.seq}, but its catch-up ended at "
                    f"seq {self.verifier.seq} without an agreed snapshot whose attesters state that log state")
            self.verifier.settle_unpinned()  # stripped entries no agreed snapshot vouched for
            self.state = SessionState.LIVE
            events.append(BecameLive())
        elif self.state is SessionState.AWAITING_WELCOME:
            self.state = SessionState.CATCHING_UP
        return events

    def presence(self, data: bytes) -> bytes:
        if self.state is not SessionState.LIVE:
            raise HandshakeError(f"cannot send presence in state {self.state.value}")
        return Presence(data).encode()

    def submit(self, entries: list[bytes]) -> bytes:
        if self.state is not SessionState.LIVE:
            raise HandshakeError(f"cannot submit in state {self.state.value}")
        return Submit(entries).encode()

    def proof_request(self, request: ProofRequest) -> bytes:
        """A checkpoint, consistency or inclusion request: allowed from the welcome on (catching up too)."""
        if self.state not in (SessionState.CATCHING_UP, SessionState.LIVE):
            raise HandshakeError(f"cannot send a proof request in state {self.state.value}")
        return request.encode()

    def blob_request(self, request: BlobPut | BlobGet) -> bytes:
        if self.state is not SessionState.LIVE:
            raise HandshakeError(f"cannot send a blob request in state {self.state.value}")
        return request.encode()


def batched(messages: Iterable[bytes]) -> Iterator[Message | bytes]:
    """The messages decoded, in order, each run of contiguous Entries frames merged into one
    (``merge_frames``) within the caps; a message that does not decode is passed on as bytes.
    Lazy: a message is decoded only once everything before it was taken."""
    run: list[Entries] = []
    entries = size = 0
    for data in messages:
        try:
            message: Message | None = decode_message(data)
        except ProtocolError:
            message = None
        if run and not (
            isinstance(message, Entries) and message.entries
            and message.first_seq == run[-1].first_seq + len(run[-1].entries)
            and entries + len(message.entries) <= MAX_BATCH_ENTRIES and size + len(data) <= MAX_BATCH_BYTES
        ):
            yield merge_frames(run)
            run, entries, size = [], 0, 0
        if isinstance(message, Entries) and message.entries:
            run.append(message)
            entries, size = entries + len(message.entries), size + len(data)
        else:
            yield data if message is None else message
    if run:
        yield merge_frames(run)


def merge_frames(frames: list[Entries]) -> Entries:
    """Contiguous frames as one: their entries, from the first one's seq, under the newest head.

    The newest head's signature covers the hash chain through every entry, so verifying the
    merged frame checks every entry as verifying each frame would; the heads of the frames
    before it are dropped unchecked (never kept, never the verified head).
    """
    if len(frames) == 1:
        return frames[0]
    return Entries(frames[0].first_seq, [entry for frame in frames for entry in frame.entries], frames[-1].head)
