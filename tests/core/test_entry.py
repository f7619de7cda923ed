"""Entries, membership bodies, signed heads and messages: build, encode, decode."""

from __future__ import annotations

import dataclasses

import pytest

from encspaces.core import crypto
from encspaces.core.encoding import pack, unpack
from encspaces.core.entry import FORMAT_VERSION, MAX_ENTRY_SIZE, Entry, Header, Kind, build_entry, open_body
from encspaces.core.head import SignedHead, next_head
from encspaces.core.identity import Identity
from encspaces.core.membership import AddMemberBody, GenesisBody, Role, add_member_body, genesis_body
from encspaces.core.messages import (
    Ack,
    AuthStatement,
    Challenge,
    Entries,
    Error,
    Hello,
    Message,
    Submit,
    Welcome,
    decode_message,
)
from encspaces.errors import (
    AuthorSignatureError,
    BodyDigestError,
    MalformedEntryError,
    ProtocolError,
    RelaySignatureError,
)

from .fakes import FakeSpace, craft_entry, header_of, reencode


def test_hash_parts_is_length_prefixed_and_context_bound() -> None:
    assert crypto.hash_parts(b"ctx", b"ab", b"c") != crypto.hash_parts(b"ctx", b"a", b"bc")
    assert crypto.hash_parts(b"ctx", b"a") != crypto.hash_parts(b"ctx2", b"a")
    assert crypto.hash_parts(b"ctx", 1) != crypto.hash_parts(b"ctx", b"\x00" * 7 + b"\x01")
    assert len(crypto.hash_parts(b"ctx")) == crypto.HASH_SIZE


def test_entry_digest_and_chain_head_are_hash_parts() -> None:
    """The two per-entry hashes, written out for speed, stay byte-identical to ``hash_parts``
    (stored logs, relays and other clients depend on them): values from before the rewrite, and
    equality for other lengths (including ones no valid entry has) and seqs up to the u64 range."""
    assert crypto.entry_digest(b"header" * 30, bytes(range(32)), bytes(range(64))).hex() == (
        "a805c14233422accddbd70d0ad9f6e6583beecc816e5a3500d530deb877a3f1e")
    assert crypto.chain_head(bytes(range(32)), 1457, bytes(range(32, 64))).hex() == (
        "edd94821b3c1834ec3b118a57d1b8d94202c58bd4c39eab6423e9e55863c1976")
    for header, body_hash, signature in [(b"", b"", b""), (b"h" * 300, bytes(31), bytes(65)), (b"x", b"y", b"z")]:
        assert crypto.entry_digest(header, body_hash, signature) == crypto.hash_parts(
            crypto.CTX_ENTRY_DIGEST, header, body_hash, signature)
    for previous, seq, digest in [(bytes(32), 0, bytes(32)), (b"p", (1 << 64) - 1, b""), (b"", 1, bytes(33))]:
        assert crypto.chain_head(previous, seq, digest) == crypto.hash_parts(crypto.CTX_HEAD, previous, seq, digest)
        assert next_head(previous, seq, digest) == crypto.hash_parts(crypto.CTX_HEAD, previous, seq, digest)


def test_hash_parts_frames_every_kind_of_part() -> None:
    """bytes, bytearray and memoryview are framed alike; ints (bools too) are u64."""
    assert crypto.hash_parts(b"ctx", bytearray(b"ab"), memoryview(b"c")) == crypto.hash_parts(b"ctx", b"ab", b"c")
    assert crypto.hash_parts(b"ctx", True) == crypto.hash_parts(b"ctx", 1)
    assert crypto.hash_parts(b"ctx", 1) != crypto.hash_parts(b"ctx", b"\x00" * 7 + b"\x01")


def test_digest_is_computed_once_and_never_another_entrys() -> None:
    """The digest is cached on the entry: the same value each call, and an entry made from
    another (``dataclasses.replace``, or the bytes re-encoded) gets its own."""
    fs = FakeSpace()
    e = fs.make(fs.bob)
    first = e.digest()
    assert e.digest() is first
    assert first == crypto.hash_parts(crypto.CTX_ENTRY_DIGEST, e.header_bytes, e.body_hash, e.signature)
    other = dataclasses.replace(e, signature=bytes(64))
    assert other.digest() == crypto.hash_parts(crypto.CTX_ENTRY_DIGEST, e.header_bytes, e.body_hash, bytes(64))
    assert other.digest() != first
    assert Entry.decode(reencode(e, body_hash=bytes(32))).digest() != first
    assert e.digest() is first and other == dataclasses.replace(e, signature=bytes(64))


def test_data_entry_round_trip() -> None:
    alice = Identity.generate()
    key = crypto.random_key()
    space = crypto.hash_parts(b"test", b"space")
    built = build_entry(
        alice, space=space, author_seq=3, epoch=1, kind=Kind.DATA, parent_seq=2,
        parent_hash=bytes(range(32)), payload=b"secret text", epoch_key=key, time_ms=1234,
    )
    decoded = Entry.decode(built.raw)
    assert decoded == built
    h = decoded.header
    assert (h.version, h.space, h.author, h.author_seq, h.epoch, h.kind, h.parent_seq, h.parent_hash, h.time_ms) == (
        FORMAT_VERSION, space, alice.public.sign_key, 3, 1, Kind.DATA, 2, bytes(range(32)), 1234,
    )
    assert len(h.nonce) == crypto.NONCE_SIZE
    assert b"secret text" not in decoded.raw
    assert decoded.header_bytes == h.encode()
    decoded.check_signature(7)
    assert open_body(decoded, key) == b"secret text"
    assert open_body(decoded, crypto.random_key()) is None
    assert decoded.digest() == built.digest()
    assert decoded.author_id == alice.member_id
    # the wire form is [header bytes, body hash, signature, body]
    assert unpack(built.raw) == [built.header_bytes, built.body_hash, built.signature, built.body]


def test_header_is_the_aead_associated_data() -> None:
    alice = Identity.generate()
    key = crypto.random_key()
    e = build_entry(alice, space=bytes(32), author_seq=1, epoch=1, kind=Kind.DATA, parent_seq=0,
                    parent_hash=crypto.ZERO_HASH, payload=b"x", epoch_key=key)
    moved = craft_entry(alice, header_of(e, author_seq=2), e.body)  # same ciphertext under another header
    moved.check_signature()
    assert open_body(moved, key) is None


@pytest.mark.parametrize("size", [0, 1, 40, 70_000])
def test_aead_open_gives_the_plaintext_or_none(size: int) -> None:
    """``aead_open`` answers None, never an exception, for whatever does not open: a wrong key,
    nonce, tag or header, or a ciphertext shorter than a tag."""
    key, nonce, header = crypto.random_key(), crypto.random_nonce(), b"header bytes"
    sealed = crypto.aead_seal(key, nonce, b"p" * size, header)
    wrong = [(crypto.random_key(), nonce, sealed, header), (key, crypto.random_nonce(), sealed, header),
             (key, nonce, sealed[:-1] + bytes([sealed[-1] ^ 1]), header), (key, nonce, sealed, header + b"!"),
             (key, nonce, sealed[:15], header)]
    assert crypto.aead_open(key, nonce, sealed, header) == b"p" * size
    for args in wrong:
        assert crypto.aead_open(*args) is None


def test_control_entry_round_trip() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    relay = bytes(32)
    key = crypto.random_key()
    g = build_entry(alice, space=b"", author_seq=1, epoch=1, kind=Kind.GENESIS, parent_seq=0,
                    parent_hash=crypto.ZERO_HASH, payload=genesis_body(alice.public, relay, key), epoch_key=None)
    assert Entry.decode(g.raw) == g
    assert g.header.nonce == b""
    body = GenesisBody.decode(g.body)
    assert body.creator_box == alice.public.box_key and body.relay_key == relay
    assert alice.open_sealed(body.sealed_key) == key
    am = build_entry(alice, space=bytes(32), author_seq=2, epoch=1, kind=Kind.ADD_MEMBER, parent_seq=1,
                     parent_hash=bytes(32), payload=add_member_body(bob.public, Role.READER, {1: key}),
                     epoch_key=None)
    add = AddMemberBody.decode(Entry.decode(am.raw).body)
    assert (add.member, add.box_key, add.role) == (bob.public.sign_key, bob.public.box_key, Role.READER)
    assert [e for e, _ in add.sealed_keys] == [1]
    assert bob.open_sealed(add.sealed_keys[0][1]) == key
    assert alice.open_sealed(add.sealed_keys[0][1]) is None


def test_data_entry_needs_a_key() -> None:
    with pytest.raises(ValueError):
        build_entry(Identity.generate(), space=bytes(32), author_seq=1, epoch=1, kind=Kind.DATA, parent_seq=0,
                    parent_hash=crypto.ZERO_HASH, payload=b"x", epoch_key=None)


def test_signature_and_body_checks() -> None:
    fs = FakeSpace()
    e = fs.make(fs.bob)
    with pytest.raises(BodyDigestError, match=r"at seq 9.*ciphertext tampered"):
        Entry.decode(reencode(e, body=e.body[:-1] + bytes([e.body[-1] ^ 1]))).check_signature(9)
    with pytest.raises(AuthorSignatureError, match="at seq 9"):
        Entry.decode(reencode(e, body_hash=bytes(32))).check_signature(9)
    forged = craft_entry(fs.dave, e.header, e.body)  # claims bob as author, signed by dave
    with pytest.raises(AuthorSignatureError, match=fs.bob.member_id[:12]):
        Entry.decode(forged.raw).check_signature()


def test_digest_commits_to_header_hash_and_signature_not_body() -> None:
    fs = FakeSpace()
    e = fs.make(fs.bob)
    assert Entry.decode(reencode(e, body=b"other")).digest() == e.digest()
    assert Entry.decode(reencode(e, body_hash=bytes(32))).digest() != e.digest()
    assert Entry.decode(reencode(e, signature=bytes(64))).digest() != e.digest()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        pack([b"h", bytes(32), bytes(64)]),
        pack([b"h", bytes(31), bytes(64), b""]),
        pack([b"h", bytes(32), bytes(63), b""]),
        pack(["h", bytes(32), bytes(64), b""]),
        pack([pack([1, b"", bytes(32), 1, 1, "data", 0, bytes(32), 0]), bytes(32), bytes(64), b""]),
        pack([pack([1, b"", bytes(32), 1, 1, "nope", 0, bytes(32), 0, b""]), bytes(32), bytes(64), b""]),
        pack([pack([1, bytes(5), bytes(32), 1, 1, "data", 0, bytes(32), 0, b""]), bytes(32), bytes(64), b""]),
        pack([pack([1, b"", bytes(32), 1, 1, "data", 0, bytes(32), 0, bytes(5)]), bytes(32), bytes(64), b""]),
        pack([pack([1, b"", bytes(32), 0, 1, "data", 0, bytes(32), 0, b""]), bytes(32), bytes(64), b""]),
        pack([pack([1, b"", bytes(32), 1, 0, "data", 0, bytes(32), 0, b""]), bytes(32), bytes(64), b""]),
        pack([pack([1, b"", bytes(32), 1, 1, "data", -1, bytes(32), 0, b""]), bytes(32), bytes(64), b""]),
        pack([pack([2, b"", bytes(32), 1, 1, "data", 0, bytes(32), 0, b""]), bytes(32), bytes(64), b""]),
        pack([pack([1, b"", bytes(32), 1, 1, "data", 0, bytes(32), 0, b""]) + b"\x00", bytes(32), bytes(64), b""]),
        pack([b"h", bytes(32), bytes(64), b"x" * MAX_ENTRY_SIZE]),
    ],
)
def test_malformed_entries(raw: bytes) -> None:
    with pytest.raises(MalformedEntryError):
        Entry.decode(raw)


def test_unknown_format_version_is_refused() -> None:
    fs = FakeSpace()
    e = fs.make(fs.bob)
    v2 = craft_entry(fs.bob, header_of(e, version=2), e.body)
    with pytest.raises(MalformedEntryError, match="version: 2, expected 1"):
        Entry.decode(v2.raw)


def test_membership_bodies_reject_garbage() -> None:
    for data in [b"", pack({"v": 2}), pack({"v": 1, "creator_box": bytes(31), "relay": bytes(32), "key": b""})]:
        with pytest.raises(MalformedEntryError, match="genesis"):
            GenesisBody.decode(data)
    bad_role = {"v": 1, "member": bytes(32), "box": bytes(32), "role": "owner", "keys": []}
    bad_epoch = {"v": 1, "member": bytes(32), "box": bytes(32), "role": "writer", "keys": [[0, b""]]}
    for m in [bad_role, bad_epoch, {"v": 1}]:
        with pytest.raises(MalformedEntryError, match="add_member"):
            AddMemberBody.decode(pack(m))


def test_roles() -> None:
    assert Role.ADMIN.can_write and Role.ADMIN.can_manage
    assert Role.WRITER.can_write and not Role.WRITER.can_manage
    assert not Role.READER.can_write and not Role.READER.can_manage


def test_signed_head_round_trip_and_check() -> None:
    fs = FakeSpace()
    sh = fs.signed(3)
    back = SignedHead.decode(sh.encode())
    assert back == sh
    back.check(fs.relay_pk, fs.space)
    with pytest.raises(RelaySignatureError, match="seq 3"):
        back.check(bytes(fs.dave.public.sign_key), fs.space)
    with pytest.raises(RelaySignatureError, match="is for space"):
        back.check(fs.relay_pk, bytes(32))
    assert next_head(fs.heads[2], 3, Entry.decode(fs.raws[2]).digest()) == fs.heads[3]
    with pytest.raises(ProtocolError):
        SignedHead.decode([pack([fs.space, 1, bytes(32)]), bytes(64)])
    with pytest.raises(ProtocolError):
        SignedHead.decode([b"x" * 300, bytes(64)])


def test_signed_heads_and_frames_decode_alike_on_the_fast_path_and_the_checked_one() -> None:
    """Well-formed heads and Entries frames take a one-expression path; anything else the checks
    that name the field: both give the same value, or the same ProtocolError."""
    fs = FakeSpace()
    sh = fs.signed(3)
    assert SignedHead.decode(sh.encode()) == SignedHead._decode_checked(sh.encode()) == sh
    heads: list[object] = [
        [pack([fs.space, 3, bytes(31), 5]), bytes(64)], [pack([fs.space, -1, bytes(32), 5]), bytes(64)],
        [pack([fs.space, True, bytes(32), 5]), bytes(64)], [pack([fs.space, 3, bytes(32), 5, 6]), bytes(64)],
        [pack([fs.space[:31], 3, bytes(32), 5]), bytes(64)], [pack([fs.space, 3, bytes(32), 1 << 63]), bytes(64)],
        [sh.signed_bytes, bytes(63)], [sh.signed_bytes, "sig"], [sh.signed_bytes], [b"\xc1", bytes(64)],
        (sh.signed_bytes, sh.signature), [b"x" * 300, bytes(64)],
    ]
    for value in heads:
        with pytest.raises(ProtocolError) as fast:
            SignedHead.decode(value)
        with pytest.raises(ProtocolError) as checked:
            SignedHead._decode_checked(value)
        assert str(fast.value) == str(checked.value)
    frame = Entries(4, [b"a", b"b"], sh)
    assert decode_message(frame.encode()) == frame
    for fields, words in [({"entries": []}, "at least one entry"), ({"entries": [b"a", "b"]}, "entries entry"),
                          ({"entries": b"a"}, "entries entries"), ({"first": 0}, "first seq"),
                          ({"first": True}, "first seq"), ({"head": None}, "entries head"),
                          ({"entries": [b"a"] * 4097}, "over the limit")]:
        with pytest.raises(ProtocolError, match=words):
            decode_message(pack({"t": "entries", "first": 4, "entries": [b"a"], "head": sh.encode(), **fields}))


def test_every_message_round_trips() -> None:
    fs = FakeSpace()
    auth = AuthStatement(fs.space, fs.bob.public.sign_key, fs.relay_pk, bytes(32), 5).encode()
    assert AuthStatement.decode(auth) == AuthStatement(fs.space, fs.bob.public.sign_key, fs.relay_pk, bytes(32), 5)
    messages: list[Message] = [
        Challenge(fs.relay_pk, bytes(range(32))),
        Hello(auth, bytes(64), 3, fs.heads[3], None),
        Hello(auth, bytes(64), 0, crypto.ZERO_HASH, fs.genesis.raw),
        Welcome(fs.signed(3), fs.signed(2)),
        Welcome(fs.signed(3), None),
        fs.frame(1),
        Submit([fs.raws[0], fs.raws[1]]),
        Ack([(1, 4), (2, 5)]),
        Error("not_member", "who are you", False),
        Error("bad", "bye"),
    ]
    for m in messages:
        assert decode_message(m.encode()) == m


@pytest.mark.parametrize(
    "message",
    [
        {"t": "entries", "first": 1, "entries": [], "head": None},
        {"t": "entries", "first": 0, "entries": [b"x"], "head": None},
        {"t": "submit", "entries": []},
        {"t": "submit", "entries": [b"x"] * 4097},
        {"t": "submit", "entries": ["x"]},
        {"t": "ack", "results": [[0, 1]]},
        {"t": "error", "code": "x", "message": "y", "fatal": 1},
        {"t": "hello", "auth": b"", "sig": bytes(63), "since": 0, "since_head": bytes(32), "genesis": None},
        {"t": "welcome", "head": [b"", bytes(64)], "anchor": None},
        {"t": "challenge", "v": 1, "relay": bytes(32), "nonce": bytes(31)},
        {"t": "nope"},
        {"t": 1},
        {"x": 1},
        [1, 2],
    ],
)
def test_malformed_messages(message: object) -> None:
    with pytest.raises(ProtocolError):
        decode_message(pack(message))


def test_message_size_limit() -> None:
    data = Submit([b"x" * 2000]).encode()
    with pytest.raises(ProtocolError, match="over the limit"):
        decode_message(data, max_size=1000)


def test_header_encode_decode() -> None:
    h = Header(FORMAT_VERSION, bytes(32), bytes(32), 1, 1, Kind.ADD_MEMBER, 0, bytes(32), 0, b"")
    assert Header.decode(h.encode()) == h
