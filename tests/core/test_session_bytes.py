"""ClientSession driven with bytes alone, in the style of h11 and websockets' sans-I/O tests.

Each test feeds the session the exact bytes a relay would send (built with the core's message
classes and the relay's signing key held by ``FakeSpace``) and asserts the exact bytes and events
it returns and the state it is in. Anything wrong moves it to FAILED with a specific error, and
a failed session accepts nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import nacl.signing
import pytest

from encspaces.core import crypto
from encspaces.core.codes import RefusalCode
from encspaces.core.encoding import pack
from encspaces.core.identity import Identity
from encspaces.core.invites import InviteSecret, verify_auth_proof
from encspaces.core.membership import Role
from encspaces.core.messages import (
    PROTOCOL_VERSION,
    Ack,
    AnchorState,
    BlobAck,
    BlobData,
    BlobGet,
    BlobMissing,
    BlobPut,
    BlobRefused,
    Challenge,
    CheckpointNote,
    CheckpointReq,
    Consistency,
    ConsistencyReq,
    Entries,
    Error,
    Hello,
    Inclusion,
    InclusionReq,
    Message,
    Presence,
    ProofRefused,
    Submit,
    Welcome,
    decode_message,
)
from encspaces.core.session import (
    MAX_BATCH_ENTRIES,
    Acked,
    BecameLive,
    BlobReplyReceived,
    CheckpointReceived,
    ClientSession,
    Event,
    Notice,
    PresenceReceived,
    ProofReplyReceived,
    Send,
    SessionState,
    Verified,
)
from encspaces.core.verifier import LogVerifier
from encspaces.errors import (
    AuthorSignatureError,
    ChainError,
    EncspacesError,
    ForkError,
    HandshakeError,
    MalformedFrameError,
    ProtocolError,
    RelayError,
    RelaySignatureError,
    RollbackError,
    SpaceIdError,
)
from encspaces_relay.handshake import check_hello

from .fakes import FIXED_TIME_MS, FakeSpace, reencode

NONCE = bytes(range(32))
NOW = FIXED_TIME_MS + 5_000  # the device's clock when it answers the challenge
S = SessionState


# --- what the relay sends ------------------------------------------------------------------


def challenge(fs: FakeSpace, *, key: bytes | None = None, version: int = PROTOCOL_VERSION) -> bytes:
    return Challenge(fs.relay_pk if key is None else key, NONCE, version).encode()


def welcome(fs: FakeSpace, seq: int, anchor: int | None = None, *, key: nacl.signing.SigningKey | None = None) -> bytes:
    return Welcome(fs.signed(seq, key=key), None if anchor is None else fs.signed(anchor, key=key)).encode()


def frame(fs: FakeSpace, first: int, last: int | None = None) -> bytes:
    return fs.frame(first, last).encode()


# --- the client's side ---------------------------------------------------------------------


def new_device(
    fs: FakeSpace, identity: Identity, *, genesis: bytes | None = None, invite: InviteSecret | None = None
) -> ClientSession:
    """A device with an empty store, as the SDK makes it: no relay key known before the challenge."""
    return ClientSession(identity, LogVerifier(fs.space, identity), genesis, invite)


def device(fs: FakeSpace, identity: Identity, through: int) -> ClientSession:
    """A device that verified the log through seq ``through`` before (its store)."""
    return ClientSession(identity, fs.verifier(identity, through=through))


def expected_hello(
    fs: FakeSpace, identity: Identity, *, since: int, genesis: bytes | None = None,
    invite: InviteSecret | None = None,
) -> bytes:
    """The hello's exact wire bytes, spelled out as a msgpack map (Ed25519 signatures are deterministic)."""
    auth = pack([fs.space, identity.public.sign_key, fs.relay_pk, NONCE, NOW])
    return pack({
        "t": "hello",
        "auth": auth,
        "sig": identity.sign(crypto.CTX_AUTH, auth),
        "since": since,
        "since_head": fs.heads[since],
        "genesis": genesis,
        "invite": None if invite is None else [invite.invite_key, invite.auth_proof(auth)],
        "fast": since == 0,
        "anchored": since == 0,
    })


def admitted(fs: FakeSpace, hello: bytes) -> Hello:
    """The relay's own admission check accepts the hello (encspaces_relay/handshake.py)."""
    message = decode_message(hello)
    assert isinstance(message, Hello)
    check_hello(message, relay_key=fs.relay_pk, nonce=NONCE, now_ms=NOW, max_skew_ms=60_000,
                max_entry_size=1 << 20)
    return message


def fails(session: ClientSession, data: bytes, error: type[EncspacesError], *fragments: str) -> EncspacesError:
    """``data`` raises exactly ``error`` (naming every fragment), the session is FAILED and stays so."""
    with pytest.raises(EncspacesError) as info:
        session.receive(data, NOW)
    assert type(info.value) is error, f"expected {error.__name__}, got {type(info.value).__name__}: {info.value}"
    for fragment in fragments:
        assert fragment in str(info.value)
    assert session.state is S.FAILED
    assert_dead(session)
    return info.value


def assert_dead(session: ClientSession) -> None:
    """A failed session takes no message (not even a valid challenge) and sends nothing."""
    for data in (Challenge(bytes(32), NONCE).encode(), b"\xc1"):
        with pytest.raises(HandshakeError, match="this session has failed; open a new connection"):
            session.receive(data, NOW)
    with pytest.raises(HandshakeError, match="cannot submit in state failed"):
        session.submit([b"x"])
    with pytest.raises(HandshakeError, match="cannot send presence in state failed"):
        session.presence(b"x")
    with pytest.raises(HandshakeError, match="cannot send a blob request in state failed"):
        session.blob_request(BlobGet(1, bytes(32)))
    assert session.state is S.FAILED


# --- the handshake -------------------------------------------------------------------------


def test_a_new_device_answers_the_challenge_with_a_signed_hello() -> None:
    fs = FakeSpace()
    session = new_device(fs, fs.bob)
    assert session.state is S.AWAITING_CHALLENGE
    events = session.receive(challenge(fs), NOW)
    hello = expected_hello(fs, fs.bob, since=0)
    assert events == [Send(hello)]
    assert session.state is S.AWAITING_WELCOME
    message = admitted(fs, hello)
    assert crypto.verify(fs.bob.public.sign_key, crypto.CTX_AUTH, message.auth, message.signature)
    assert message.fast and message.anchored and message.genesis is None and message.invite is None
    # No key was pinned yet: the device takes the challenge's until the genesis pins one.
    assert session.verifier.relay_key == fs.relay_pk


def test_a_device_that_verified_says_where_its_log_stands() -> None:
    fs = FakeSpace()
    fs.write(fs.alice, b"one")
    session = device(fs, fs.bob, through=fs.seq)
    [sent] = session.receive(challenge(fs), NOW)
    assert sent == Send(expected_hello(fs, fs.bob, since=4))
    message = admitted(fs, sent.data)
    assert (message.since_seq, message.since_head, message.fast) == (4, fs.heads[4], False)


def test_the_creator_sends_its_genesis_only_while_its_log_is_empty() -> None:
    fs = FakeSpace(with_members=False)
    creating = new_device(fs, fs.alice, genesis=fs.genesis.raw)
    [sent] = creating.receive(challenge(fs), NOW)
    assert sent == Send(expected_hello(fs, fs.alice, since=0, genesis=fs.genesis.raw))
    assert check_hello(admitted(fs, sent.data), relay_key=fs.relay_pk, nonce=NONCE, now_ms=NOW,
                       max_skew_ms=60_000, max_entry_size=1 << 20).genesis == fs.genesis
    # Reconnecting after the genesis was verified: no create any more.
    again = ClientSession(fs.alice, fs.verifier(fs.alice, through=1), fs.genesis.raw)
    assert again.receive(challenge(fs), NOW) == [Send(expected_hello(fs, fs.alice, since=1))]


def test_a_newcomer_proves_its_invite_in_the_hello() -> None:
    fs = FakeSpace()
    invite = InviteSecret.generate()
    session = new_device(fs, fs.dave, invite=invite)
    [sent] = session.receive(challenge(fs), NOW)
    assert sent == Send(expected_hello(fs, fs.dave, since=0, invite=invite))
    message = admitted(fs, sent.data)
    assert message.invite is not None
    key, proof = message.invite
    assert key == invite.invite_key and verify_auth_proof(key, message.auth, proof)
    # The proof is bound to this handshake's auth statement: it answers no other nonce.
    other = pack([fs.space, fs.dave.public.sign_key, fs.relay_pk, bytes(32), NOW])
    assert not verify_auth_proof(key, other, proof)
    # A newcomer is admitted to read: it catches up and goes live like anyone, reading no body.
    assert session.receive(welcome(fs, fs.seq), NOW) == []
    assert session.state is S.CATCHING_UP
    [verified, live] = session.receive(frame(fs, 1), NOW)
    assert isinstance(verified, Verified) and live == BecameLive()
    assert [v.seq for v in verified.entries] == [1, 2, 3]
    assert session.state is S.LIVE


def test_a_newcomer_still_shows_its_invite_when_it_read_part_of_the_log() -> None:
    fs = FakeSpace()
    invite = InviteSecret.generate()
    session = ClientSession(fs.dave, fs.verifier(fs.dave, through=2), invite=invite)
    assert session.receive(challenge(fs), NOW) == [Send(expected_hello(fs, fs.dave, since=2, invite=invite))]


def test_once_a_member_the_invite_is_no_longer_shown() -> None:
    fs = FakeSpace()
    invite = InviteSecret.generate()
    fs.add(fs.dave, Role.WRITER)  # as its join would make it
    session = ClientSession(fs.dave, fs.verifier(fs.dave, through=fs.seq), invite=invite)
    assert session.receive(challenge(fs), NOW) == [Send(expected_hello(fs, fs.dave, since=fs.seq))]


def test_a_relay_key_other_than_the_pinned_one_is_refused() -> None:
    fs = FakeSpace()
    session = device(fs, fs.bob, through=3)  # pinned by the genesis it verified
    impostor = bytes(nacl.signing.SigningKey.generate().verify_key)
    fails(session, challenge(fs, key=impostor), HandshakeError, "but this space is pinned to", "wrong relay")
    # A device that knows the key only as a hint (from an invite link, say) pins it as well.
    hinted = ClientSession(fs.dave, LogVerifier(fs.space, fs.dave, fs.relay_pk))
    fails(hinted, challenge(fs, key=impostor), HandshakeError, "wrong relay, or an impostor")


def test_a_new_device_trusts_the_challenge_only_until_the_genesis_pins_the_key() -> None:
    fs = FakeSpace()
    impostor_key = nacl.signing.SigningKey.generate()
    impostor = bytes(impostor_key.verify_key)
    session = new_device(fs, fs.bob)
    [sent] = session.receive(challenge(fs, key=impostor), NOW)
    assert isinstance(sent, Send)
    assert session.receive(welcome(fs, fs.seq, key=impostor_key), NOW) == []
    lie = Entries(1, fs.raws, fs.signed(fs.seq, key=impostor_key)).encode()
    fails(session, lie, SpaceIdError, "the space's genesis pins relay key", "but this relay presents")
    assert session.verifier.seq == 0


def test_another_protocol_version_is_refused() -> None:
    fs = FakeSpace()
    fails(new_device(fs, fs.bob), challenge(fs, version=PROTOCOL_VERSION + 1), HandshakeError,
          f"the relay speaks protocol version {PROTOCOL_VERSION + 1}, we speak {PROTOCOL_VERSION}")


# --- welcome, catching up, live ------------------------------------------------------------


def handshaken(session: ClientSession, fs: FakeSpace) -> ClientSession:
    [sent] = session.receive(challenge(fs), NOW)
    assert isinstance(sent, Send)
    return session


def test_welcome_then_catching_up_then_live() -> None:
    fs = FakeSpace()
    for i in range(3):
        fs.write(fs.alice, f"edit {i}".encode())
    session = handshaken(new_device(fs, fs.bob), fs)
    assert session.receive(welcome(fs, 6), NOW) == []
    assert (session.state, session.target_seq) == (S.CATCHING_UP, 6)
    [first] = session.receive(frame(fs, 1, 4), NOW)
    assert isinstance(first, Verified) and [v.seq for v in first.entries] == [1, 2, 3, 4]
    assert session.state is S.CATCHING_UP
    second, live = session.receive(frame(fs, 5, 6), NOW)
    assert isinstance(second, Verified) and live == BecameLive()
    assert [(v.seq, v.plaintext) for v in second.entries] == [(5, b"edit 1"), (6, b"edit 2")]
    assert [v.entry.raw for v in first.entries + second.entries] == fs.raws
    assert session.state is S.LIVE and session.verifier.seq == 6


def test_a_device_already_at_the_head_goes_live_on_the_welcome() -> None:
    fs = FakeSpace()
    session = handshaken(device(fs, fs.bob, through=3), fs)
    assert session.receive(welcome(fs, 3, anchor=3), NOW) == [BecameLive()]
    assert session.state is S.LIVE


def test_a_device_behind_catches_up_from_its_anchor() -> None:
    fs = FakeSpace()
    fs.write(fs.alice)
    session = handshaken(device(fs, fs.bob, through=2), fs)
    assert session.receive(welcome(fs, 4, anchor=2), NOW) == []
    assert session.state is S.CATCHING_UP
    verified, live = session.receive(frame(fs, 3), NOW)
    assert isinstance(verified, Verified) and [v.seq for v in verified.entries] == [3, 4]
    assert live == BecameLive()


@pytest.mark.parametrize(("make", "error", "fragment"), [
    (lambda fs: welcome(fs, 3), MalformedFrameError, "sent no signed head for our seq 2"),
    (lambda fs: welcome(fs, 3, anchor=1), MalformedFrameError, "the anchor is the relay's head at seq 1"),
    (lambda fs: welcome(fs, 1), RollbackError, "the relay's log ends at seq 1, but it already signed seq 2"),
    (lambda fs: Welcome(fs.signed(3), fs.signed(2, head=bytes(32))).encode(), ForkError, "at seq 2"),
    (lambda fs: welcome(fs, 3, anchor=2, key=nacl.signing.SigningKey.generate()), RelaySignatureError,
     "the relay's signature does not verify"),
    (lambda fs: Welcome(fs.signed(3, space=bytes(32)), fs.signed(2)).encode(), RelaySignatureError,
     "is for space"),
])
def test_a_false_welcome_fails_the_session(
    make: Callable[[FakeSpace], bytes], error: type[EncspacesError], fragment: str
) -> None:
    fs = FakeSpace()
    session = handshaken(device(fs, fs.bob, through=2), fs)
    fails(session, make(fs), error, fragment)
    assert session.verifier.seq == 2


def test_a_welcome_to_an_empty_log_fails_a_new_device() -> None:
    """A space's id is its genesis's hash: its log is never empty, so a head at seq 0 is a lie.

    Before the check, a new device went live on it with nothing verified (``connect`` would
    return an empty space as synced), and any impostor could sign it: no key is pinned yet.
    """
    fs = FakeSpace()
    for key in (fs.relay_key, nacl.signing.SigningKey.generate()):
        session = new_device(fs, fs.bob)
        assert session.receive(challenge(fs, key=bytes(key.verify_key)), NOW) != []
        fails(session, welcome(fs, 0, key=key), MalformedFrameError,
              "welcome: the relay's head is at seq 0, but a space's log always holds its genesis at seq 1")
        assert session.verifier.seq == 0


def test_a_false_frame_fails_the_session_and_applies_nothing() -> None:
    fs = FakeSpace()
    fs.write(fs.alice)
    session = live(fs, through=3)
    # Seq 4 carried under a head chained from elsewhere: the chain check names both hashes.
    forged = Entries(4, [fs.raws[3]], fs.signed(4, head=bytes(32))).encode()
    fails(session, forged, ChainError, "do not chain from our head at seq 3")
    assert session.verifier.seq == 3


def test_a_frame_that_skips_seqs_fails_the_session() -> None:
    fs = FakeSpace()
    fs.write(fs.alice)
    fs.write(fs.alice)
    session = live(fs, through=3)
    fails(session, frame(fs, 5), ChainError, "seqs 4..4 are missing")


# --- live: verified frames, submissions, acks, presence, blobs -----------------------------


def live(fs: FakeSpace, identity: Identity | None = None, through: int | None = None) -> ClientSession:
    seq = fs.seq if through is None else through
    session = handshaken(device(fs, identity or fs.bob, through=seq), fs)
    assert session.receive(welcome(fs, seq, anchor=seq), NOW) == [BecameLive()]
    return session


def test_live_frames_are_verified_and_submissions_acked_with_a_signed_head() -> None:
    fs = FakeSpace()
    session = live(fs)
    entry = fs.make(fs.bob, b"mine")
    assert session.submit([entry.raw]) == pack({"t": "submit", "entries": [entry.raw]})
    seq = fs.sequence(entry)  # the relay sequences it, then sends it to every subscriber and acks
    [verified] = session.receive(frame(fs, seq), NOW)
    assert isinstance(verified, Verified) and [(v.seq, v.plaintext) for v in verified.entries] == [(4, b"mine")]
    head = fs.signed(seq)
    assert session.receive(Ack([(1, 4)], head).encode(), NOW) == [Acked([(1, 4)], head)]
    assert session.verifier.fresh_ms == head.time_ms  # the ack's head counts towards freshness
    assert session.receive(Ack([(2, 5)]).encode(), NOW) == [Acked([(2, 5)], None)]
    assert session.state is S.LIVE


def test_an_ack_ahead_of_the_verified_log_counts_once_the_log_reaches_it() -> None:
    fs = FakeSpace()
    session = live(fs)
    before = session.verifier.fresh_ms
    entry = fs.write(fs.bob, b"mine")
    head = fs.signed(fs.seq)
    assert session.receive(Ack([(entry.header.author_seq, fs.seq)], head).encode(), NOW) == [
        Acked([(1, 4)], head)]
    assert session.verifier.fresh_ms == before  # not verified through seq 4 yet
    session.receive(frame(fs, 4), NOW)
    assert session.verifier.fresh_ms == head.time_ms


@pytest.mark.parametrize(("make", "error", "fragment"), [
    (lambda fs: Ack([(1, 3)], fs.signed(3, key=nacl.signing.SigningKey.generate())), RelaySignatureError,
     "signed head at seq 3"),
    (lambda fs: Ack([(1, 3)], fs.signed(3, head=bytes(32))), ForkError, "at seq 3"),
    (lambda fs: Ack([(1, 2)], fs.signed(2)), RollbackError, "the relay's log ends at seq 2"),
])
def test_an_ack_with_a_false_head_fails_the_session(
    make: Callable[[FakeSpace], Ack], error: type[EncspacesError], fragment: str
) -> None:
    fs = FakeSpace()
    session = live(fs)
    fails(session, make(fs).encode(), error, fragment)


def test_presence_and_blob_requests_and_replies_when_live() -> None:
    fs = FakeSpace()
    session = live(fs)
    assert session.presence(b"sealed") == pack({"t": "presence", "data": b"sealed"})
    assert session.receive(Presence(b"a peer's").encode(), NOW) == [PresenceReceived(b"a peer's")]
    digest = crypto.blob_hash(b"chunk")
    put = BlobPut(7, digest, b"chunk")
    assert session.blob_request(put) == pack({"t": "blob_put", "id": 7, "hash": digest, "data": b"chunk"})
    assert session.blob_request(BlobGet(8, digest)) == pack({"t": "blob_get", "id": 8, "hash": digest})
    for reply in (BlobAck(7, digest), BlobData(8, digest, b"chunk"), BlobMissing(9, digest),
                  BlobRefused(10, digest, "quota", "full")):
        assert session.receive(reply.encode(), NOW) == [BlobReplyReceived(reply)]
    assert session.state is S.LIVE


def test_checkpoints_and_proof_requests_and_replies_from_the_welcome_on() -> None:
    fs = FakeSpace()
    session = handshaken(device(fs, fs.bob, through=2), fs)
    with_checkpoint = Welcome(fs.signed(3), fs.signed(2), checkpoint=b"signed note\n").encode()
    assert session.receive(with_checkpoint, NOW) == [CheckpointReceived(b"signed note\n")]
    assert session.state is S.CATCHING_UP
    request = ConsistencyReq(5, 2, 3)
    assert session.proof_request(request) == pack({"t": "consistency_req", "id": 5, "first": 2, "second": 3})
    assert session.proof_request(InclusionReq(6, 1, 3)) == pack({"t": "inclusion_req", "id": 6, "seq": 1, "size": 3})
    assert session.proof_request(CheckpointReq(7)) == pack({"t": "checkpoint_req", "id": 7})
    for reply in (Consistency(5, 2, 3, [bytes(32)]), Inclusion(6, 1, 3, [bytes(32)] * 2),
                  ProofRefused(8, "bad_range", "seq 4 is not in a tree of 3")):
        assert session.receive(reply.encode(), NOW) == [ProofReplyReceived(reply)]
    assert session.receive(CheckpointNote(b"n\n", 7).encode(), NOW) == [CheckpointReceived(b"n\n", 7)]
    assert session.receive(CheckpointNote(b"pushed\n").encode(), NOW) == [CheckpointReceived(b"pushed\n", None)]
    # A welcome without the field decodes as before (older relays).
    assert decode_message(Welcome(fs.signed(3), None).encode()) == Welcome(fs.signed(3), None, None)


def test_proof_messages_are_checked_field_by_field() -> None:
    for bad, fragment in [
        (pack({"t": "consistency", "id": 1, "first": 1, "second": 2, "proof": [b"short"]}), "consistency proof hash"),
        (pack({"t": "inclusion", "id": 1, "seq": 1, "size": 2, "proof": [bytes(32)] * 65}), "at most 64"),
        (pack({"t": "inclusion_req", "id": 1, "seq": 0, "size": 2}), "inclusion_req seq"),
        (pack({"t": "consistency_req", "id": 1 << 32, "first": 0, "second": 2}), "consistency_req id"),
        (pack({"t": "checkpoint", "note": "text"}), "checkpoint note"),
    ]:
        with pytest.raises(ProtocolError, match=fragment):
            decode_message(bad)


@pytest.mark.parametrize("send", [
    lambda s: s.submit([b"x"]), lambda s: s.presence(b"x"), lambda s: s.blob_request(BlobGet(1, bytes(32))),
])
@pytest.mark.parametrize("state", [S.AWAITING_CHALLENGE, S.AWAITING_WELCOME, S.CATCHING_UP])
def test_nothing_is_sent_before_live(send: Callable[[ClientSession], bytes], state: SessionState) -> None:
    fs = FakeSpace()
    session = in_state(fs, state)
    with pytest.raises(HandshakeError, match=f"in state {state.value}"):
        send(session)
    assert session.state is state  # the caller's mistake, not the relay's: the session goes on


# --- errors from the relay -----------------------------------------------------------------


@pytest.mark.parametrize("code", [c for c in RefusalCode if not c.fatal])
def test_a_non_fatal_error_when_live_is_a_notice(code: RefusalCode) -> None:
    fs = FakeSpace()
    session = live(fs)
    data = Error(code, "under epoch 1", fatal=False, ref=4).encode()
    assert session.receive(data, NOW) == [Notice(code, "under epoch 1", 4)]
    assert session.state is S.LIVE
    assert session.receive(Error(code, "no ref", fatal=False).encode(), NOW) == [Notice(code, "no ref", None)]


@pytest.mark.parametrize("state", [S.AWAITING_CHALLENGE, S.AWAITING_WELCOME, S.CATCHING_UP])
def test_a_non_fatal_error_before_live_fails_the_session(state: SessionState) -> None:
    fs = FakeSpace()
    error = fails(in_state(fs, state), Error(RefusalCode.STALE_EPOCH, "early", fatal=False).encode(), RelayError)
    assert isinstance(error, RelayError) and (error.code, error.relay_message) == ("stale_epoch", "early")


@pytest.mark.parametrize("state", [S.AWAITING_CHALLENGE, S.AWAITING_WELCOME, S.CATCHING_UP, S.LIVE])
@pytest.mark.parametrize("code", [RefusalCode.BUSY, RefusalCode.BAD_AUTH, RefusalCode.REMOVED, "a_future_code"])
def test_a_fatal_error_fails_the_session_with_its_code(state: SessionState, code: str) -> None:
    fs = FakeSpace()
    error = fails(in_state(fs, state), Error(code, "why", fatal=True).encode(), RelayError, f"{code}: why")
    assert isinstance(error, RelayError) and error.code == code and type(error.code) is str


# --- every message in every state ----------------------------------------------------------


def in_state(fs: FakeSpace, state: SessionState) -> ClientSession:
    """bob's device in ``state``: seq 2 verified, the relay at seq 3."""
    session = device(fs, fs.bob, through=2)
    if state is S.AWAITING_CHALLENGE:
        return session
    handshaken(session, fs)
    if state is S.AWAITING_WELCOME:
        return session
    if state is S.CATCHING_UP:
        assert session.receive(welcome(fs, 3, anchor=2), NOW) == []
    else:
        assert session.receive(welcome(fs, 2, anchor=2), NOW) == [BecameLive()]
    assert session.state is state
    return session


def _messages(fs: FakeSpace) -> dict[str, bytes]:
    """One valid message of every kind, as the relay at seq 3 (for bob at seq 2) would send it."""
    digest = crypto.blob_hash(b"chunk")
    return {
        "challenge": challenge(fs),
        "welcome": welcome(fs, 3, anchor=2),
        "entries": frame(fs, 3),
        "ack": Ack([(1, 3)], fs.signed(3)).encode(),
        "presence": Presence(b"sealed").encode(),
        "bloback": BlobAck(1, digest).encode(),
        "blobdata": BlobData(1, digest, b"chunk").encode(),
        "blobmissing": BlobMissing(1, digest).encode(),
        "blobrefused": BlobRefused(1, digest, "quota", "full").encode(),
        "checkpointnote": CheckpointNote(b"a note\n").encode(),
        "consistency": Consistency(1, 1, 3, [bytes(32)]).encode(),
        "inclusion": Inclusion(1, 1, 3, [bytes(32), bytes(32)]).encode(),
        "proofrefused": ProofRefused(1, "beyond_head", "past 3").encode(),
        # Only to a device catching up to an anchor (none here).
        "anchorstate": AnchorState(100, b"state").encode(),
        # What only a client sends: never valid from the relay.
        "hello": Hello(b"auth", bytes(64), 0, bytes(32)).encode(),
        "submit": Submit([fs.raws[0]]).encode(),
        "blobput": BlobPut(1, digest, b"chunk").encode(),
        "blobget": BlobGet(1, digest).encode(),
        "checkpointreq": CheckpointReq(1).encode(),
        "consistencyreq": ConsistencyReq(1, 1, 3).encode(),
        "inclusionreq": InclusionReq(1, 1, 3).encode(),
    }


_AFTER_WELCOME = {"entries", "ack", "presence", "bloback", "blobdata", "blobmissing", "blobrefused",
                  "checkpointnote", "consistency", "inclusion", "proofrefused"}
ACCEPTED = {
    S.AWAITING_CHALLENGE: {"challenge"},
    S.AWAITING_WELCOME: {"welcome"},
    S.CATCHING_UP: _AFTER_WELCOME,
    S.LIVE: _AFTER_WELCOME,
}
KINDS = ["challenge", "welcome", "entries", "ack", "presence", "bloback", "blobdata", "blobmissing", "blobrefused",
         "checkpointnote", "consistency", "inclusion", "proofrefused", "anchorstate",
         "hello", "submit", "blobput", "blobget", "checkpointreq", "consistencyreq", "inclusionreq"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("state", list(ACCEPTED))
def test_every_message_in_every_state(state: SessionState, kind: str) -> None:
    fs = FakeSpace()
    session = in_state(fs, state)
    data = _messages(fs)[kind]
    if kind in ACCEPTED[state]:
        session.receive(data, NOW)
        assert session.state is not S.FAILED
    else:
        fails(session, data, MalformedFrameError, f"unexpected {kind} message in state {state.value}")


MALFORMED = {
    "not msgpack": b"\xc1",
    "not a map": pack([1, 2]),
    "no kind": pack({"x": 1}),
    "unknown kind": pack({"t": "hi"}),
    "missing field": pack({"t": "entries", "first": 1}),
    "wrong type": pack({"t": "ack", "results": "all"}),
    "empty frame": pack({"t": "entries", "first": 1, "entries": [], "head": [b"", b""]}),
    "empty": b"",
    "trailing bytes": Presence(b"x").encode() + b"\x00",
}


@pytest.mark.parametrize("what", sorted(MALFORMED))
@pytest.mark.parametrize("state", list(ACCEPTED))
def test_a_malformed_message_fails_the_session_in_every_state(state: SessionState, what: str) -> None:
    fs = FakeSpace()
    fails(in_state(fs, state), MALFORMED[what], MalformedFrameError,
          f"the relay sent a malformed message in state {state.value}")


def test_the_matrix_covers_every_message_kind() -> None:
    """Each kind of message the wire has (messages.Message) is in the matrix above, or is an error."""
    assert {kind.__name__.lower() for kind in get_args(Message)} == {*KINDS, "error"}
    assert set(_messages(FakeSpace())) == set(KINDS)


# --- frames queued together: verified as one batch -----------------------------------------


def queued(session: ClientSession, messages: list[bytes]) -> list[list[Event]]:
    return list(session.receive_all(messages, NOW))


def test_queued_frames_are_verified_as_one_frame_under_the_newest_head() -> None:
    fs = FakeSpace()
    session = live(fs)
    for i in range(3):
        fs.write(fs.alice, f"edit {i}".encode())
    [[verified]] = queued(session, [frame(fs, 4, 4), frame(fs, 5, 5), frame(fs, 6, 6)])
    assert isinstance(verified, Verified)
    assert [(v.seq, v.plaintext) for v in verified.entries] == [(4, b"edit 0"), (5, b"edit 1"), (6, b"edit 2")]
    assert session.verifier.seq == 6 and session.verifier.verified_head == fs.signed(6)


def test_only_the_newest_head_of_a_batch_is_checked_and_kept() -> None:
    """An intermediate frame's head is never verified (one signature per batch): even a head no
    relay signed passes behind a valid newest head, and it is never taken as the verified head.
    Every entry is still under the newest head's signature, through the recomputed chain."""
    fs = FakeSpace()
    session = live(fs)
    fs.write(fs.alice)
    fs.write(fs.alice)
    unsigned = Entries(4, [fs.raws[3]], fs.signed(4, key=nacl.signing.SigningKey.generate())).encode()
    [[verified]] = queued(session, [unsigned, frame(fs, 5, 5)])
    assert isinstance(verified, Verified) and [v.seq for v in verified.entries] == [4, 5]
    assert session.verifier.verified_head == fs.signed(5)
    alone = live(fs, through=3)  # the same frame alone: its head is checked, and refused
    fails(alone, unsigned, RelaySignatureError, "the relay's signature does not verify")


def test_a_batch_whose_newest_head_is_false_fails_whole_and_applies_nothing() -> None:
    fs = FakeSpace()
    session = live(fs)
    fs.write(fs.alice)
    fs.write(fs.alice)
    forged = Entries(5, [fs.raws[4]], fs.signed(5, key=nacl.signing.SigningKey.generate())).encode()
    with pytest.raises(RelaySignatureError, match="the relay's signature does not verify"):
        queued(session, [frame(fs, 4, 4), forged])
    assert session.state is S.FAILED and session.verifier.seq == 3
    assert_dead(session)


def test_a_false_entry_inside_a_batch_fails_it_whole_naming_its_seq() -> None:
    fs = FakeSpace()
    session = live(fs)
    fs.force(reencode(fs.make(fs.alice), signature=bytes(64)))  # a lying relay, under honest-looking heads
    fs.force(fs.make(fs.bob).raw)
    with pytest.raises(AuthorSignatureError, match="at seq 4"):
        queued(session, [frame(fs, 4, 4), frame(fs, 5, 5)])
    assert session.state is S.FAILED and session.verifier.seq == 3


def test_a_gap_ends_the_batch_and_fails_as_a_frame_alone_would() -> None:
    fs = FakeSpace()
    session = live(fs)
    for _ in range(3):
        fs.write(fs.alice)
    steps = session.receive_all([frame(fs, 4, 4), frame(fs, 6, 6)], NOW)
    [verified] = next(steps)  # seq 4 is the caller's before the gap fails the session
    assert isinstance(verified, Verified) and [v.seq for v in verified.entries] == [4]
    with pytest.raises(ChainError, match=r"seqs 5\.\.5 are missing"):
        next(steps)
    assert session.state is S.FAILED and session.verifier.seq == 4


def test_an_ack_between_queued_frames_keeps_its_place() -> None:
    fs = FakeSpace()
    session = live(fs)
    fs.write(fs.alice)
    entry = fs.write(fs.bob, b"mine")
    fs.write(fs.alice)
    fs.write(fs.alice)
    ack = Ack([(entry.header.author_seq, 5)], fs.signed(5))
    steps = queued(session, [frame(fs, 4, 4), frame(fs, 5, 5), ack.encode(), frame(fs, 6, 6), frame(fs, 7, 7)])
    assert [[type(e) for e in step] for step in steps] == [[Verified], [Acked], [Verified]]
    assert [[v.seq for v in step[0].entries] for step in steps if isinstance(step[0], Verified)] == [[4, 5], [6, 7]]
    assert steps[1] == [Acked([(1, 5)], fs.signed(5))]


def test_a_malformed_message_after_queued_frames_fails_after_they_are_handed_over() -> None:
    fs = FakeSpace()
    session = live(fs)
    fs.write(fs.alice)
    steps = session.receive_all([frame(fs, 4, 4), b"\xc1"], NOW)
    [verified] = next(steps)
    assert isinstance(verified, Verified)
    with pytest.raises(MalformedFrameError, match="the relay sent a malformed message in state live"):
        next(steps)
    assert session.state is S.FAILED


def test_a_batch_stops_at_its_cap() -> None:
    fs = FakeSpace()
    session = live(fs)
    for _ in range(MAX_BATCH_ENTRIES + 1):
        fs.write(fs.alice)
    frames = [frame(fs, seq, seq) for seq in range(4, fs.seq + 1)]
    steps = queued(session, frames)
    assert [len(step[0].entries) for step in steps if isinstance(step[0], Verified)] == [MAX_BATCH_ENTRIES, 1]
    assert session.verifier.seq == fs.seq


def test_frames_merged_across_catch_up_go_live_once_caught_up() -> None:
    fs = FakeSpace()
    for _ in range(3):
        fs.write(fs.alice)
    session = handshaken(device(fs, fs.bob, through=3), fs)
    assert session.receive(welcome(fs, 5, anchor=3), NOW) == []
    [[verified, became_live]] = queued(session, [frame(fs, 4, 4), frame(fs, 5, 5)])
    assert isinstance(verified, Verified) and became_live == BecameLive()
    assert session.state is S.LIVE
