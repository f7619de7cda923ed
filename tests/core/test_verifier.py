"""LogVerifier: valid logs verify; every relay attack raises its own error and changes nothing."""

from __future__ import annotations

import re

import nacl.signing
import pytest

from encspaces.core import crypto
from encspaces.core.entry import Entry, Kind
from encspaces.core.head import SignedHead
from encspaces.core.identity import member_id
from encspaces.core.membership import Role
from encspaces.core.messages import Entries, Welcome, decode_message
from encspaces.core.verifier import LogVerifier
from encspaces.errors import (
    AuthorSeqGapError,
    AuthorSignatureError,
    BodyDigestError,
    ChainError,
    EncspacesError,
    EpochError,
    ForkError,
    MalformedEntryError,
    MalformedFrameError,
    MembershipChangeError,
    MembershipError,
    ParentError,
    PermissionDeniedError,
    RelaySignatureError,
    ReorderError,
    ReplayError,
    RollbackError,
    RuleError,
    SpaceIdError,
    SpaceMismatchError,
    VerificationError,
)

from .fakes import FakeSpace, chain, craft_entry, header_of, reencode, snapshot


def rejects(
    v: LogVerifier,
    frame: Entries,
    error: type[EncspacesError],
    *fragments: str,
    then: Entries | None = None,
) -> str:
    """``frame`` raises exactly ``error`` naming every fragment, and leaves ``v`` untouched.

    With ``then``, the untouched verifier goes on to verify that honest frame.
    """
    before = snapshot(v)
    with pytest.raises(EncspacesError) as info:
        v.verify_frame(wire(frame))  # through the wire decoder, like a client
    assert type(info.value) is error, f"expected {error.__name__}, got {type(info.value).__name__}: {info.value}"
    assert isinstance(info.value, VerificationError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert snapshot(v) == before
    if then is not None:
        v.verify_frame(then)
        assert v.seq == then.head.seq
    return message


def welcome_rejects(v: LogVerifier, welcome: Welcome, error: type[EncspacesError], *fragments: str) -> None:
    before = snapshot(v)
    with pytest.raises(EncspacesError) as info:
        decoded = decode_message(welcome.encode())
        assert isinstance(decoded, Welcome)
        v.check_welcome(decoded)
    assert type(info.value) is error, f"expected {error.__name__}, got {type(info.value).__name__}: {info.value}"
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {info.value}"
    assert snapshot(v) == before


def wire(frame: Entries) -> Entries:
    """The frame as a client receives it: encoded, then decoded by the strict message decoder."""
    message = decode_message(frame.encode())
    assert isinstance(message, Entries)
    return message


def flip(data: bytes, index: int = -1) -> bytes:
    b = bytearray(data)
    b[index] ^= 1
    return bytes(b)


# --- valid logs ------------------------------------------------------------------------------


def test_fresh_device_verifies_the_whole_log_in_one_frame() -> None:
    fs = FakeSpace()
    fs.write(fs.alice, b"one")
    fs.write(fs.bob, b"two")
    v = LogVerifier(fs.space, fs.bob, fs.relay_pk)
    v.check_welcome(Welcome(fs.signed(fs.seq), None))
    out = v.verify_frame(wire(fs.frame(1)))
    assert [r.seq for r in out] == [1, 2, 3, 4, 5]
    assert [r.kind for r in out] == [Kind.GENESIS, Kind.ADD_MEMBER, Kind.ADD_MEMBER, Kind.DATA, Kind.DATA]
    assert [r.plaintext for r in out] == [None, None, None, b"one", b"two"]
    assert all(r.problem is None for r in out)
    assert [r.head for r in out] == fs.heads[1:]
    assert out[3].author == fs.alice.public.sign_key
    assert v.seq == 5 and v.head == fs.heads[5]
    assert v.epoch_keys == {1: fs.epoch_key}
    assert v.relay_key == fs.relay_pk
    assert v.state.members == fs.state.members and v.state.author_seqs == fs.state.author_seqs
    assert v.latest_head == fs.signed(5)
    assert v.skipped == []


@pytest.mark.parametrize("who", ["alice", "bob", "carol"])
def test_every_member_learns_the_epoch_key(who: str) -> None:
    fs = FakeSpace()
    fs.write(fs.bob, b"text")
    ident = getattr(fs, who)
    v = fs.verifier(ident, through=fs.seq)
    assert v.epoch_keys == {1: fs.epoch_key}
    assert v.seq == 4 and v.skipped == []


def test_device_without_the_key_keeps_entries_awaiting() -> None:
    fs = FakeSpace()
    fs.write(fs.bob, b"text")
    v = LogVerifier(fs.space, fs.dave, fs.relay_pk)  # not a member: no sealed key for it
    out = v.verify_frame(fs.frame(1))
    assert out[-1].plaintext is None and out[-1].problem == "this device holds no key for epoch 1"
    assert out[-1].awaiting_key and not out[-1].late
    assert v.awaiting_key == [out[-1]] and v.skipped == [] and v.seq == 4


def test_member_added_later_reads_history_in_the_same_frame() -> None:
    """A new member verifies entries written before it joined, then learns the key: they come back late."""
    fs = FakeSpace()
    fs.write(fs.bob, b"before dave")
    fs.add(fs.dave, Role.READER)
    fs.write(fs.alice, b"after dave")
    v = LogVerifier(fs.space, fs.dave, fs.relay_pk)
    out = v.verify_frame(fs.frame(1))
    assert [(r.seq, r.plaintext, r.late) for r in out if r.kind is Kind.DATA] == [
        (4, None, False), (6, b"after dave", False), (4, b"before dave", True),
    ]
    assert v.awaiting_key == [] and v.skipped == [] and v.epoch_keys == {1: fs.epoch_key}


def test_member_added_later_reads_history_from_earlier_frames() -> None:
    fs = FakeSpace()
    fs.write(fs.bob, b"old")
    bad = fs.write(fs.bob, b"lost", epoch_key=crypto.random_key())
    v = LogVerifier(fs.space, fs.dave, fs.relay_pk)
    v.verify_frame(fs.frame(1))
    assert [r.seq for r in v.awaiting_key] == [4, 5] and v.skipped == []
    fs.add(fs.dave, Role.READER)
    out = v.verify_frame(fs.frame(6))
    late = [r for r in out if r.late]
    assert [(r.seq, r.plaintext) for r in late] == [(4, b"old"), (5, None)]
    assert late[1].entry == bad and late[1].problem == f"ciphertext by {fs.bob.member_id} does not open under epoch 1"
    assert v.skipped == [late[1]] and v.awaiting_key == []


def test_many_frames_of_varied_sizes() -> None:
    fs = FakeSpace()
    for i in range(12):
        fs.write([fs.alice, fs.bob][i % 2], f"m{i}".encode())
    v = fs.verifier()
    texts: list[bytes] = []
    for first, last in [(1, 1), (2, 3), (4, 4), (5, 9), (10, 15)]:
        out = v.verify_frame(wire(fs.frame(first, last)))
        assert [r.seq for r in out] == list(range(first, last + 1))
        assert v.seq == last and v.head == fs.heads[last] and v.latest_head == fs.signed(last)
        texts += [r.plaintext for r in out if r.plaintext is not None]
    assert texts == [f"m{i}".encode() for i in range(12)]
    assert v.state.author_seqs == fs.state.author_seqs


def test_group_frame_with_membership_change_then_new_member_writes() -> None:
    """A member added inside a frame may write later in the same frame; the new device learns the key."""
    fs = FakeSpace()
    v_dave = LogVerifier(fs.space, fs.dave, fs.relay_pk)
    v_dave.verify_frame(fs.frame(1))
    assert v_dave.epoch_keys == {}
    fs.add(fs.dave, Role.WRITER)
    fs.write(fs.dave, b"hi from dave")
    out = v_dave.verify_frame(fs.frame(4))
    assert out[-1].plaintext == b"hi from dave"
    assert v_dave.epoch_keys == {1: fs.epoch_key}


def test_reconnect_welcome_with_anchor() -> None:
    fs = FakeSpace()
    v = fs.verifier(through=3)
    v.check_welcome(Welcome(fs.signed(3), fs.signed(3)))
    fs.write(fs.bob)
    v.check_welcome(Welcome(fs.signed(4), fs.signed(3)))
    assert v.latest_head == fs.signed(4) and v.seq == 3
    v.verify_frame(fs.frame(4))
    assert v.seq == 4


def test_fresh_device_accepts_welcome_and_bootstraps_without_a_hint() -> None:
    fs = FakeSpace()
    v = LogVerifier(fs.space, fs.bob)
    assert v.relay_key is None
    with pytest.raises(RelaySignatureError, match="no relay key"):
        v.check_welcome(Welcome(fs.signed(3), None))
    v.verify_frame(fs.frame(1))  # the genesis, pinned by the space id, names the relay key
    assert v.relay_key == fs.relay_pk


def test_undecryptable_entry_is_skipped_and_verification_goes_on() -> None:
    fs = FakeSpace()
    v = fs.verifier(through=3)
    bad = fs.write(fs.bob, b"lost", epoch_key=crypto.random_key())  # author sealed under a wrong key
    fs.write(fs.alice, b"after")
    fs.write(fs.bob, b"bob again")
    out = v.verify_frame(fs.frame(4))
    assert out[0].entry == bad and out[0].plaintext is None
    assert out[0].problem == f"ciphertext by {fs.bob.member_id} does not open under epoch 1"
    assert [r.plaintext for r in out[1:]] == [b"after", b"bob again"]
    assert v.skipped == [out[0]]
    assert v.seq == 6 and v.state.author_seqs[fs.bob.public.sign_key] == 2
    # every member skips it the same way
    other = fs.verifier(fs.carol, through=6)
    assert [r.seq for r in other.skipped] == [4]


# --- entry-level attacks ----------------------------------------------------------------------


@pytest.fixture
def fs() -> FakeSpace:
    return FakeSpace()


def test_tampered_ciphertext(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.write(fs.bob)
    msg = rejects(v, fs.frame_of(4, [reencode(e, body=flip(e.body))]), BodyDigestError, "at seq 4",
                  "ciphertext tampered", then=fs.frame(4))
    assert re.search(r"signed [0-9a-f]{16}…, found [0-9a-f]{16}…", msg)


def test_tampered_ciphertext_in_a_group_frame(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.alice)
    e = fs.write(fs.bob)
    fs.write(fs.alice)
    raws = fs.raws[3:]
    raws[1] = reencode(e, body=b"")
    rejects(v, fs.frame_of(4, raws), BodyDigestError, "at seq 5", then=fs.frame(4))


def test_tampered_header(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.write(fs.bob)
    tampered = header_of(e, time_ms=e.header.time_ms + 1).encode()
    rejects(v, fs.frame_of(4, [reencode(e, header=tampered)]), AuthorSignatureError, "at seq 4",
            "signature does not verify", then=fs.frame(4))


def test_forged_author_signature(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.make(fs.bob, b"words bob never wrote")
    forged = craft_entry(fs.dave, e.header, e.body)  # bob's name, dave's key
    rejects(v, fs.frame_of(4, [forged.raw]), AuthorSignatureError, "at seq 4", fs.bob.member_id[:12])
    rejects(v, fs.frame_of(4, [reencode(e, signature=bytes(64))]), AuthorSignatureError, "at seq 4")
    rejects(v, fs.frame_of(4, [reencode(e, body_hash=bytes(32))]), AuthorSignatureError, "at seq 4")


def counting_verifications(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every Ed25519 verification from here on, by the public key it checks against."""
    keys: list[bytes] = []
    real = crypto.verify

    def verify(public_key: bytes, context: bytes, message: bytes, signature: bytes) -> bool:
        keys.append(public_key)
        return real(public_key, context, message, signature)

    monkeypatch.setattr(crypto, "verify", verify)
    return keys


def holding(*entries: Entry) -> dict[int, bytes]:
    """What a device's outbox holds: its own entries' bytes by author_seq."""
    return {e.header.author_seq: e.raw for e in entries}


def test_own_entry_sent_back_byte_for_byte_is_not_verified_again(fs: FakeSpace,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob's device signed this entry and still holds it: of the frame, only the relay's head
    signature is checked; Alice's entry beside it, and Bob's once the outbox let it go, are."""
    v = fs.verifier(through=3)
    mine = fs.write(fs.bob)
    theirs = fs.write(fs.alice)
    v.own_entry = holding(mine).get
    keys = counting_verifications(monkeypatch)
    verified = v.verify_frame(wire(fs.frame(4)))
    assert [r.plaintext for r in verified] == [b"hello", b"hello"]
    assert keys == [fs.relay_pk, theirs.header.author]
    later = fs.write(fs.bob)  # not held: checked like anyone's
    keys.clear()
    v.verify_frame(wire(fs.frame(6)))
    assert keys == [fs.relay_pk, later.header.author]


@pytest.mark.parametrize(("change", "error", "words"), [
    ("body", BodyDigestError, "ciphertext tampered"),
    ("header", AuthorSignatureError, "signature does not verify"),
    ("signature", AuthorSignatureError, "signature does not verify"),
])
def test_own_entry_sent_back_changed_is_checked_in_full(fs: FakeSpace, change: str, error: type[EncspacesError],
                                                        words: str) -> None:
    """The relay returns Bob's held entry with one part changed: not ours, the same error as for anyone's."""
    v = fs.verifier(through=3)
    mine = fs.write(fs.bob)
    v.own_entry = holding(mine).get
    parts = {"body": {"body": flip(mine.body)},
             "header": {"header": header_of(mine, time_ms=mine.header.time_ms + 1).encode()},
             "signature": {"signature": fs.alice.sign(crypto.CTX_ENTRY_SIG, mine.header_bytes + mine.body_hash)}}
    rejects(v, fs.frame_of(4, [reencode(mine, **parts[change])]), error, "at seq 4", words, then=fs.frame(4))


def test_entry_by_a_non_member(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.make(fs.dave, author_seq=1)
    rejects(v, fs.frame_of(4, [e.raw]), MembershipError, "at seq 4", fs.dave.member_id, "not a member")


def test_data_entry_by_a_reader(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.make(fs.carol, author_seq=1)
    rejects(v, fs.frame_of(4, [e.raw]), PermissionDeniedError, "at seq 4", "role reader may not write")


def test_add_member_by_a_non_admin(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.add_member_entry(fs.bob, fs.dave, Role.WRITER)
    rejects(v, fs.frame_of(4, [e.raw]), PermissionDeniedError, "at seq 4", "role writer may not add members")


def test_membership_changes_that_do_not_fit(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    twice = fs.add_member_entry(fs.alice, fs.bob, Role.ADMIN)
    rejects(v, fs.frame_of(4, [twice.raw]), MembershipChangeError, "at seq 4", fs.bob.member_id, "already a member")
    second_genesis = craft_entry(fs.alice, header_of(fs.genesis, author_seq=3, space=fs.space), fs.genesis.body)
    rejects(v, fs.frame_of(4, [second_genesis.raw]), MembershipChangeError, "at seq 4", "only stand at seq 1")


def test_entry_for_another_space(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    other = FakeSpace()
    e = fs.make(fs.bob, space=other.space)
    rejects(v, fs.frame_of(4, [e.raw]), SpaceMismatchError, "at seq 4", other.space.hex()[:16], fs.space.hex()[:16])


def test_replayed_entry(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.write(fs.bob)
    fs.write(fs.alice)
    v.verify_frame(fs.frame(4))
    msg = rejects(v, fs.frame_of(6, [e.raw]), ReplayError, "at seq 6", fs.bob.member_id, "expected 2, found 1")
    assert "already at author_seq 1" in msg


def test_replayed_entry_within_one_frame(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.make(fs.bob)
    rejects(v, fs.frame_of(4, [e.raw, e.raw]), ReplayError, "at seq 5", "expected 2, found 1")


def test_replayed_control_entry(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    rejects(v, fs.frame_of(4, [fs.raws[1]]), ReplayError, "at seq 4", fs.alice.member_id)


def test_swapped_entries_of_one_author(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e1 = fs.write(fs.bob, b"first")
    other = fs.write(fs.alice, b"between")
    e2 = fs.write(fs.bob, b"second")
    msg = rejects(v, fs.frame_of(4, [e2.raw, other.raw, e1.raw]), ReorderError, "at seq 4",
                  "comes before author_seq 1 at seq 6", then=fs.frame(4))
    assert "reordered" in msg


def test_swap_across_frames_is_a_gap(fs: FakeSpace) -> None:
    """The verifier cannot see the dropped entry in a later frame: the first frame is a gap."""
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    e2 = fs.make(fs.bob)
    rejects(v, fs.frame_of(4, [e2.raw]), AuthorSeqGapError)


def test_dropped_and_resequenced_entry(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.bob, b"dropped", parent_seq=3)
    other = fs.write(fs.alice, parent_seq=3)
    kept = fs.write(fs.bob, b"kept", parent_seq=3)
    msg = rejects(v, fs.frame_of(4, [other.raw, kept.raw]), AuthorSeqGapError, "at seq 5", fs.bob.member_id,
                  "skips from author_seq 0 to 2 (expected 1)", then=fs.frame(4))
    assert "dropped" in msg


def test_dropped_entry_breaks_later_parents(fs: FakeSpace) -> None:
    """Entries whose parent was at or after the dropped one now point into the future."""
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    later = fs.write(fs.alice)  # parent seq 4
    rejects(v, fs.frame_of(4, [later.raw]), ParentError, "parent seq 4 is not below", then=fs.frame(4))


def test_dropped_seq_at_frame_start(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    fs.write(fs.bob)
    rejects(v, fs.frame(5), ChainError, "frame starts at seq 5, expected seq 4", "seqs 4..4 are missing",
            then=fs.frame(4))


def test_dropped_seq_in_the_middle(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    for _ in range(3):
        fs.write(fs.bob)
    gap = [fs.raws[3], fs.raws[5]]
    rejects(v, Entries(4, gap, fs.signed(6)), ChainError, "carries seqs 4..5", "signed head is at seq 6")
    rejects(v, Entries(4, gap, fs.signed(5)), ChainError, "do not chain", then=fs.frame(4))


def test_parent_in_the_future(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.make(fs.bob, parent_seq=4, parent_hash=bytes(32))
    rejects(v, fs.frame_of(4, [e.raw]), ParentError, "at seq 4", "parent seq 4 is not below")
    e = fs.make(fs.bob, author_seq=1, parent_seq=9, parent_hash=bytes(32))
    rejects(v, fs.frame_of(4, [e.raw]), ParentError, "parent seq 9")


def test_parent_from_another_history(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.make(fs.bob, parent_seq=2, parent_hash=crypto.hash_parts(b"other", b"history"))
    msg = rejects(v, fs.frame_of(4, [e.raw]), ParentError, "at seq 4", "parent hash at seq 2", fs.heads[2].hex()[:16])
    assert "another history" in msg


def test_wrong_epoch(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.make(fs.bob, epoch=2)
    rejects(v, fs.frame_of(4, [e.raw]), EpochError, "at seq 4", "under epoch 2, expected the current epoch 1")


def test_data_entry_without_nonce(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    e = fs.make(fs.bob)
    bare = craft_entry(fs.bob, header_of(e, nonce=b""), e.body)
    rejects(v, fs.frame_of(4, [bare.raw]), MalformedEntryError, "at seq 4", "needs a nonce")


def test_malformed_entry_bytes(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    good = fs.raws[3]
    rejects(v, Entries(4, [good, good[:-3]], fs.signed(5, bytes(32))), MalformedEntryError, "seq 5")
    rejects(v, Entries(4, [b"\x01"], fs.signed(4)), MalformedEntryError, "seq 4")


def test_error_in_the_last_entry_undoes_the_whole_frame(fs: FakeSpace) -> None:
    """Membership, counters and keys learned early in a frame are all dropped when a later entry fails."""
    fs.write(fs.bob, b"history")
    v = LogVerifier(fs.space, fs.dave, fs.relay_pk)
    v.verify_frame(fs.frame(1))
    assert len(v.awaiting_key) == 1
    add = fs.add_member_entry(fs.alice, fs.dave, Role.WRITER)
    fs.sequence(add)
    hello = fs.write(fs.dave, b"dave")
    bad = fs.make(fs.carol, author_seq=1)  # a reader writing
    frame = fs.frame_of(5, [add.raw, hello.raw, bad.raw])
    rejects(v, frame, PermissionDeniedError, "at seq 7")
    assert v.epoch_keys == {} and len(v.awaiting_key) == 1
    out = v.verify_frame(fs.frame(5))
    assert v.epoch_keys == {1: fs.epoch_key}
    assert [(r.seq, r.plaintext, r.late) for r in out if r.kind is Kind.DATA] == [(6, b"dave", False),
                                                                                  (4, b"history", True)]


def test_bootstrap_frame_failing_late_leaves_a_fresh_device_fresh(fs: FakeSpace) -> None:
    v = LogVerifier(fs.space, fs.alice, fs.relay_pk)
    bad = fs.make(fs.dave, author_seq=1)
    rejects(v, fs.frame_of(1, [*fs.raws, bad.raw]), MembershipError, "at seq 4", then=fs.frame(1))


def test_rule_errors_are_rule_errors() -> None:
    """Entry-level failures are RuleErrors (the relay refuses the same entries); frame-level ones are not."""
    rule_errors: tuple[type[EncspacesError], ...] = (
        AuthorSignatureError, BodyDigestError, MembershipError, PermissionDeniedError, ReplayError, ReorderError,
        AuthorSeqGapError, ParentError, EpochError, SpaceMismatchError, MalformedEntryError, MembershipChangeError,
    )
    for cls in rule_errors:
        assert issubclass(cls, RuleError) and issubclass(cls, VerificationError)
    frame_errors: tuple[type[EncspacesError], ...] = (ChainError, RelaySignatureError, RollbackError, ForkError,
                                                       SpaceIdError)
    for cls in frame_errors:
        assert not issubclass(cls, RuleError) and issubclass(cls, VerificationError)


# --- frame-level attacks ----------------------------------------------------------------------


def test_bad_relay_signature(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    impostor = nacl.signing.SigningKey.generate()
    frame = fs.frame(4)
    rejects(v, Entries(4, frame.entries, fs.signed(4, key=impostor)), RelaySignatureError, "seq 4", "does not verify")
    corrupt = SignedHead(frame.head.space, 4, frame.head.head, frame.head.time_ms, frame.head.signed_bytes,
                         flip(frame.head.signature, 5))
    rejects(v, Entries(4, frame.entries, corrupt), RelaySignatureError, "seq 4", then=frame)


def test_head_for_another_space(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    other = bytes(range(32))
    rejects(v, Entries(4, fs.frame(4).entries, fs.signed(4, space=other)), RelaySignatureError,
            "seq 4", "is for space 000102", fs.space.hex()[:16], then=fs.frame(4))


def test_broken_chain(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    fs.write(fs.bob)
    honest = fs.frame(4)
    msg = rejects(v, Entries(4, honest.entries, fs.signed(5, bytes(32))), ChainError, "entries 4..5",
                  "our head at seq 3", "signed 0000000000000000")
    assert f"computed {fs.heads[5].hex()[:16]}" in msg
    # entries chained onto a head we never verified
    rejects(v, fs.frame_of(4, honest.entries, previous=bytes(32)), ChainError, "do not chain")
    # the right entries in the wrong order
    swapped = [honest.entries[1], honest.entries[0]]
    rejects(v, Entries(4, swapped, honest.head), ChainError, "do not chain", then=honest)


def test_frame_starting_too_early(fs: FakeSpace) -> None:
    fs.write(fs.bob)
    v = fs.verifier(through=4)
    fs.write(fs.bob)
    rejects(v, fs.frame(3), ChainError, "frame starts at seq 3", "verified through seq 4", "expected seq 5",
            then=fs.frame(5))


def test_frame_starting_too_late(fs: FakeSpace) -> None:
    v = fs.verifier(through=2)
    fs.write(fs.bob)
    rejects(v, fs.frame(4), ChainError, "frame starts at seq 4, expected seq 3", "seqs 3..3 are missing",
            then=fs.frame(3))


def test_frame_head_beyond_its_entries(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    fs.write(fs.bob)
    rejects(v, Entries(4, [fs.raws[3]], fs.signed(5)), ChainError, "carries seqs 4..4", "signed head is at seq 5",
            then=fs.frame(4))


def test_old_frame_replayed_is_a_rollback(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    fs.write(fs.bob)
    v.verify_frame(fs.frame(4))
    rejects(v, fs.frame(2, 3), RollbackError, "ends at seq 3", "signed seq 4")
    rejects(v, fs.frame(4, 4), ChainError, "expected seq 5", "entries repeated")


def test_frame_head_forking_a_verified_seq(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    rejects(v, Entries(3, [fs.raws[2]], fs.signed(3, bytes(32))), ForkError, "at seq 3", fs.heads[3].hex()[:16])


def test_fresh_device_needs_the_log_from_seq_1(fs: FakeSpace) -> None:
    v = fs.verifier()
    rejects(v, fs.frame(2), ChainError, "from seq 1", "sent from seq 2", then=fs.frame(1))


def test_genesis_not_hashing_to_the_space_id(fs: FakeSpace) -> None:
    other = FakeSpace(relay_key=fs.relay_key)  # same relay, another space
    v = fs.verifier()
    msg = rejects(v, other.frame(1), SpaceIdError, "hashes to", fs.space.hex()[:16], then=fs.frame(1))
    assert other.space.hex()[:16] in msg
    # the same genesis re-encoded by the relay (header as bin32, not bin8): the id hashes the exact bytes
    g = fs.genesis
    size = len(g.header_bytes)
    assert size < 256 and g.raw[:3] == bytes([0x94, 0xC4, size])
    noncanon = b"\x94\xc6" + size.to_bytes(4, "big") + g.raw[3:]
    assert Entry.decode(noncanon).digest() == g.digest() and noncanon != g.raw
    raws = [noncanon, *fs.raws[1:]]
    rejects(fs.verifier(), fs.frame_of(1, raws, previous=crypto.ZERO_HASH), SpaceIdError, "hashes to")


def test_genesis_pinning_another_relay_key() -> None:
    real = nacl.signing.SigningKey.generate()
    elsewhere = nacl.signing.SigningKey.generate()
    fs = FakeSpace(relay_key=real, pinned_relay_key=bytes(elsewhere.verify_key))
    v = fs.verifier()
    rejects(v, fs.frame(1), SpaceIdError, "pins relay key", member_id(bytes(elsewhere.verify_key)),
            member_id(fs.relay_pk))  # base64url, as the relay prints its key at start


def test_seq_1_that_is_not_a_genesis(fs: FakeSpace) -> None:
    v = fs.verifier()
    e = fs.make(fs.alice, author_seq=1, parent_seq=0)
    rejects(v, fs.frame_of(1, [e.raw], previous=crypto.ZERO_HASH), SpaceIdError, "seq 1 holds a data entry")


# --- the welcome: rollback and fork on reconnect ------------------------------------------------


def test_rollback_via_welcome(fs: FakeSpace) -> None:
    fs.write(fs.bob)
    fs.write(fs.bob)
    v = fs.verifier(through=5)
    welcome_rejects(v, Welcome(fs.signed(3), None), RollbackError, "ends at seq 3", "signed seq 5",
                    fs.heads[5].hex()[:16])
    welcome_rejects(v, Welcome(fs.signed(4), fs.signed(4)), RollbackError, "ends at seq 4")


def test_fork_via_welcome_anchor(fs: FakeSpace) -> None:
    fs.write(fs.bob, b"what bob saw")
    v = fs.verifier(through=4)
    # the relay showed someone else another seq 4 and continued that history
    other = fs.make(fs.alice, b"what alice saw", parent_seq=3)
    fork_heads = chain(fs.heads[3], 4, [other.raw])
    fork4 = fs.signed(4, fork_heads[0])
    welcome_rejects(v, Welcome(fs.signed(5, bytes(32)), fork4), ForkError, "at seq 4",
                    fork_heads[0].hex()[:16], fs.heads[4].hex()[:16])


def test_fork_via_welcome_head_at_a_verified_seq(fs: FakeSpace) -> None:
    fs.write(fs.bob)
    v = fs.verifier(through=4)
    welcome_rejects(v, Welcome(fs.signed(2, bytes(32)), None), ForkError, "at seq 2")
    welcome_rejects(v, Welcome(fs.signed(4, bytes(32)), fs.signed(4)), ForkError, "at seq 4")


def test_welcome_anchor_missing_or_misplaced(fs: FakeSpace) -> None:
    fs.write(fs.bob)
    v = fs.verifier(through=3)
    welcome_rejects(v, Welcome(fs.signed(4), None), MalformedFrameError, "no signed head for our seq 3")
    welcome_rejects(v, Welcome(fs.signed(4), fs.signed(1)), MalformedFrameError, "seq 1", "our seq 3")
    welcome_rejects(v, Welcome(fs.signed(4), fs.signed(4)), MalformedFrameError, "seq 4", "our seq 3")


def test_welcome_signatures_and_space(fs: FakeSpace) -> None:
    v = fs.verifier(through=3)
    impostor = nacl.signing.SigningKey.generate()
    welcome_rejects(v, Welcome(fs.signed(3, key=impostor), fs.signed(3)), RelaySignatureError, "does not verify")
    welcome_rejects(v, Welcome(fs.signed(3), fs.signed(3, key=impostor)), RelaySignatureError, "does not verify")
    welcome_rejects(v, Welcome(fs.signed(3, space=bytes(32)), fs.signed(3)), RelaySignatureError, "is for space")


def test_messages_name_what_was_wrong_on_relay_faults(fs: FakeSpace) -> None:
    """Smoke check that errors carry hex prefixes, not whole keys or raw bytes."""
    v = fs.verifier(through=3)
    msg = rejects(v, Entries(3, [fs.raws[2]], fs.signed(3, bytes(32))), ForkError)
    assert len(msg) < 300


@pytest.mark.parametrize("through", [0, 3])
def test_frame_without_entries(fs: FakeSpace, through: int) -> None:
    """The wire decoder refuses empty frames; the verifier refuses them too when built directly."""
    v = fs.verifier(through=through)
    before = snapshot(v)
    with pytest.raises(MalformedFrameError, match="holds no entries"):
        v.verify_frame(Entries(through + 1, [], fs.signed(through)))
    assert snapshot(v) == before
