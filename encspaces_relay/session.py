"""One connection from first byte to close: challenge, hello, welcome, catch-up, submissions.

Everything a client sends is hostile until proven otherwise: each message is size-checked,
strictly decoded and matched against the one step of the flow that may accept it. Any
problem is a Refusal: the client gets an Error frame saying why and the connection closes;
nothing of the refused message reaches the room, so other connections and the stored log
are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from encspaces.core.codes import RefusalCode
from encspaces.core.entry import Entry, Kind
from encspaces.core.identity import member_id
from encspaces.core.messages import (
    CHALLENGE_SIZE,
    BlobGet,
    BlobPut,
    Challenge,
    CheckpointReq,
    ConsistencyReq,
    Hello,
    InclusionReq,
    Message,
    Presence,
    Submit,
    decode_message,
)
from encspaces.errors import ProtocolError, RuleError

from .catchup import catch_up_and_subscribe
from .frames import max_entry_size
from .handshake import check_hello
from .inline import InlineConnection
from .peer import Peer, PeerGoneError
from .proofs import Pacer, answer_proof
from .refusals import Refusal, internal, too_large, unavailable
from .room import Room, Submission

if TYPE_CHECKING:
    from .server import RelayServer

log = logging.getLogger(__name__)

# How the log names a connection's end, by its close code (the one sent or received first).
_CLOSE_NAMES: dict[int, str] = {
    CloseCode.NORMAL_CLOSURE: "closed normally",
    CloseCode.GOING_AWAY: "closed, going away",
    CloseCode.ABNORMAL_CLOSURE: "connection lost",
    CloseCode.INTERNAL_ERROR: "closed on an internal error",
}
_VERIFY_SLICE = 64  # signatures checked between two yields to the event loop (~5 ms)


class Session:
    def __init__(self, server: RelayServer, ws: InlineConnection, number: int, address: str = "") -> None:
        self.server = server
        self.connection = ws
        self.config = server.config
        self.peer = Peer(ws, number, server.config, server.metrics, server.backlog, server.unsent)
        self.address = address
        self.room: Room | None = None
        self.proof_pacer = Pacer()

    def _fields(self, **more: object) -> dict[str, object]:
        """The structured fields of this connection's log lines (JSON logs)."""
        fields: dict[str, object] = {"peer": self.peer.name, **more}
        if self.room is not None:
            fields["space"] = member_id(self.room.space)
        return fields

    async def run(self) -> None:
        peer = self.peer
        log.info("%s: open from %s", peer.name, _address(peer.ws), extra=self._fields(address=_address(peer.ws)))
        try:
            await self._run()
        except Refusal as refusal:
            log.info("%s: refused: %s: %s", peer.name, refusal.code, refusal.message,
                     extra=self._fields(code=refusal.code))
            await peer.refuse(refusal)
        except (ConnectionClosed, PeerGoneError):
            pass
        except Exception:
            log.exception("%s: unexpected error", peer.name, extra=self._fields())
            await peer.refuse(internal("unexpected relay error"))
        finally:
            if self.room is not None:
                self.room.unsubscribe(peer)
                self.server.release_room(self.room)
            self.server.backlog.forget(peer.ws)
            self.server.unsent.forget(peer)
            await peer.finish()
            self._log_close()

    def _log_close(self) -> None:
        """One line per connection end; a client going away normally is no error (info, not 1011)."""
        ws = self.peer.ws
        if ws.protocol.state is not State.CLOSED:
            log.info("%s: closed", self.peer.name, extra=self._fields())
            return
        code = ws.close_code
        reason = f", {ws.close_reason}" if ws.close_reason else ""
        what = _CLOSE_NAMES.get(CloseCode.ABNORMAL_CLOSURE if code is None else code, "closed")
        level = logging.WARNING if code == CloseCode.INTERNAL_ERROR else logging.INFO
        log.log(level, "%s: %s (code %s%s)", self.peer.name, what, code, reason, extra=self._fields(close_code=code))

    async def _run(self) -> None:
        ws = self.peer.ws
        server = self.server
        nonce = os.urandom(CHALLENGE_SIZE)
        await ws.send(Challenge(server.public_key, nonce).encode())
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                data = await ws.recv()
        except TimeoutError:
            raise Refusal(RefusalCode.TIMEOUT, f"no hello within {self.config.handshake_timeout:g} s") from None
        hello = self._decode(data)
        if not isinstance(hello, Hello):
            raise Refusal(RefusalCode.UNEXPECTED, f"expected a hello, got a {_kind(hello)} message")
        admission = check_hello(
            hello,
            relay_key=server.public_key,
            nonce=nonce,
            now_ms=int(time.time() * 1000),
            max_skew_ms=self.config.max_clock_skew_ms,
            max_entry_size=max_entry_size(self.config.max_frame),
        )
        room = await server.open_room(admission, self.address)
        self.room = room
        head, anchor = await room.admit(admission.member, admission.since_seq, admission.invite, admission.auth,
                                        self.peer)
        self.peer.member = admission.member
        _set_read_limit(ws, 2 * self.config.max_frame)  # admitted: the full limit from the next message on
        log.info("%s: admitted %s to %s, since seq %d (relay at %d)", self.peer.name,
                 member_id(admission.member)[:12], room.label, admission.since_seq, head.seq,
                 extra=self._fields(member=member_id(admission.member), seq=head.seq))
        await ws.send(server.encode_welcome(room.space, head, anchor))
        await catch_up_and_subscribe(room, self.peer, admission.since_seq, fast=admission.fast,
                                     anchored=admission.anchored)
        self.connection.message_done()  # the hello
        self.connection.on_message = self._inline
        try:
            async for data in ws:
                self.peer.heard = True  # alive: the keepalive need not ping it this round
                if not await self._live(room, data):
                    return
                self.connection.message_done()
        finally:
            self.connection.on_message = None

    async def _live(self, room: Room, data: bytes | str) -> bool:
        """One message of the admitted connection, in its task; False once the peer failed."""
        ws = self.peer.ws
        server = self.server
        message = self._decode(data)
        if isinstance(message, Presence):
            self._forward_presence(room, message)
            return True
        if isinstance(message, (BlobPut, BlobGet)):
            # Answered in order, with backpressure: a connection has one blob request in the works.
            assert self.peer.member is not None
            await ws.send((await server.blobs.answer(room.state, self.peer.member, message)).encode())
            return True
        if isinstance(message, (CheckpointReq, ConsistencyReq, InclusionReq)):
            # Answered in order, like blob requests: one proof in the works per connection.
            await self.proof_pacer.wait()
            await ws.send(await answer_proof(server, room, message))
            return True
        if not isinstance(message, Submit):
            raise Refusal(RefusalCode.UNEXPECTED, f"expected a submit or presence, got a {_kind(message)} message")
        # In line while the relay has its limit of entries verified and not yet committed: this
        # connection is not read on meanwhile (encspaces_relay/backlog.py).
        weight = await server.backlog.take(len(message.entries), ws)
        try:
            entries = await self._check_entries(message.entries)
            room.claim_writer(self.peer)
            await self.peer.inflight.take()
        except BaseException:
            server.backlog.give(weight)
            raise
        if self.peer.failed:
            self.peer.answered(weight)
            return False
        if not room.submit(Submission(self.peer, entries, weight)):
            self.peer.answered(weight)
            if room.failed:
                raise internal("the space is being reloaded after a storage failure: reconnect and resubmit")
            raise unavailable()
        return True

    def _inline(self, data: bytes) -> bool:
        """One message of the admitted connection as websockets parses it (encspaces_relay/inline.py).

        Handles a presence update, and a Submit whose checks pass and whose places in the backlog
        and in flight are free now: True. Anything else is left to the task (False), which
        waits, refuses or answers it as above; nothing of it was kept here.
        """
        peer, room, backlog = self.peer, self.room, self.server.backlog
        if room is None or peer.failed or room.closed or room.failed:
            return False
        try:
            message = self._decode(data)
        except Exception:  # a Refusal (or a fault) the task meets again and answers
            return False
        if isinstance(message, Presence):
            peer.heard = True
            self._forward_presence(room, message)
            return True
        if not isinstance(message, Submit):
            return False
        ws = self.connection
        count = len(message.entries)
        if ws.spent + count > _VERIFY_SLICE:
            return False  # no more signatures in this read of the socket than the task checks in a slice
        weight = backlog.try_take(count)  # taken before the signatures are checked, as above
        if weight is None:
            return False
        if not peer.inflight.try_take():
            backlog.give(weight)
            return False
        try:
            entries = self._check_slice(message.entries)
            room.claim_writer(peer)
        except Exception:  # a Refusal (or a fault) the task meets again and answers
            peer.answered(weight)
            return False
        ws.spent += count
        peer.heard = True
        room.submit(Submission(peer, entries, weight))  # open: checked above, and nothing ran since
        return True

    def _forward_presence(self, room: Room, presence: Presence) -> None:
        if self.peer.presence_allowed():
            room.forward_presence(self.peer, self.server.encode_presence(room.space, presence))
        else:
            log.debug("%s: presence over the rate limit, dropped", self.peer.name)

    def _decode(self, data: str | bytes) -> Message:
        if isinstance(data, str):
            raise Refusal(RefusalCode.MALFORMED,
                          "text frames are not part of the protocol: messages are binary msgpack")
        admitted = self.peer.member is not None
        limit = self.config.max_frame if admitted else self.config.hello_limit
        if len(data) > limit:
            raise too_large(f"a message of {len(data)} bytes is over the limit of {limit}"
                            f"{'' if admitted else ' before admission (a hello)'}")
        try:
            return decode_message(data, max_size=limit)
        except ProtocolError as exc:
            raise Refusal(RefusalCode.MALFORMED, str(exc)) from exc

    async def _check_entries(self, raws: list[bytes]) -> list[Entry]:
        entries: list[Entry] = []
        for start in range(0, len(raws), _VERIFY_SLICE):
            if start:
                await asyncio.sleep(0)  # a 4096-entry submit is ~0.3 s of Ed25519: let others run
            entries += self._check_slice(raws[start:start + _VERIFY_SLICE])
        return entries

    def _check_slice(self, raws: list[bytes]) -> list[Entry]:
        """At most ``_VERIFY_SLICE`` entries, checked without a pause."""
        return [self._check_entry(raw) for raw in raws]

    def _check_entry(self, raw: bytes) -> Entry:
        """What can be checked without the log: size, form, signature, and that the member wrote it."""
        limit = max_entry_size(self.config.max_frame)
        if len(raw) > limit:
            raise too_large(f"an entry of {len(raw)} bytes is over the limit of {limit} (it must fit in one frame)")
        try:
            entry = Entry.decode(raw)
            entry.check_signature()
        except RuleError as exc:
            raise Refusal(RefusalCode.REJECTED, str(exc)) from exc
        if entry.header.kind is Kind.JOIN:
            skew = entry.header.time_ms - int(time.time() * 1000)
            if abs(skew) > self.config.max_clock_skew_ms:
                # Clients judge an invite's expiry by the join's own time: keep that time honest.
                raise Refusal(RefusalCode.REJECTED,
                              f"{entry.describe()}: its time is {skew / 1000:+.0f} s from the relay's "
                              "clock: check the device's clock")
        if entry.header.author != self.peer.member:
            raise Refusal(RefusalCode.REJECTED,
                          f"{entry.describe()}: a connection may only submit its own member's entries")
        return entry


def _kind(message: Message) -> str:
    return type(message).__name__.lower()


def _set_read_limit(ws: ServerConnection, limit: int) -> None:
    """Change the size at which websockets stops reading a message, on a live connection.

    websockets has no call for it, but its parser reads the limit from the protocol object
    before each frame: ``max_message_size`` in websockets 17 (``max_size`` is tried as an
    older name). If neither exists this fails loudly; the after-admission test catches it.
    """
    protocol = ws.protocol
    name = "max_message_size" if hasattr(protocol, "max_message_size") else "max_size"
    if not hasattr(protocol, name):
        raise RuntimeError("this websockets version keeps its message size limit elsewhere")
    setattr(protocol, name, limit)


def _address(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
    except (TypeError, ValueError):
        return "unknown address"
    return f"{host}:{port}"
