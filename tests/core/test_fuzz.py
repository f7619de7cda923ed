"""Hostile bytes: the decoders and the verifier raise only encspaces errors, and never half-apply."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encspaces.core.entry import Entry
from encspaces.core.head import SignedHead
from encspaces.core.membership import Role
from encspaces.core.messages import Entries, decode_message
from encspaces.core.verifier import LogVerifier
from encspaces.errors import EncspacesError, MalformedEntryError, ProtocolError

from .fakes import FakeSpace, chain, snapshot

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# One honest log, built once: genesis, bob (writer), carol (reader), then a mix of entries.
SPACE = FakeSpace()
SPACE.write(SPACE.alice, b"a1")
SPACE.write(SPACE.bob, b"b1")
SPACE.add(SPACE.dave, Role.WRITER)
SPACE.write(SPACE.dave, b"d1")
SPACE.write(SPACE.bob, b"b2")
OTHER = FakeSpace(relay_key=SPACE.relay_key)  # same relay, another space: a source of foreign entries
OTHER.write(OTHER.bob, b"elsewhere")
PREFIX_END = 3
TAIL = SPACE.frame(PREFIX_END + 1)
WHOLE = SPACE.frame(1)
ENCODED_FRAMES = [TAIL.encode(), WHOLE.encode()]
POOL = SPACE.raws + OTHER.raws


def verifier_at(seq: int) -> LogVerifier:
    return SPACE.verifier(SPACE.bob, through=seq)


def feed(v: LogVerifier, frame: Entries) -> None:
    """verify_frame either succeeds consistently or raises an EncspacesError and changes nothing."""
    before = snapshot(v)
    try:
        out = v.verify_frame(frame)
    except EncspacesError:
        assert snapshot(v) == before
        return
    # accepted: the verifier now stands exactly where the signed head says
    assert v.seq == frame.head.seq and v.head == frame.head.head
    assert [r.seq for r in out] == list(range(frame.first_seq, frame.head.seq + 1))


def decode_and_feed(data: bytes, start: int) -> None:
    try:
        message = decode_message(data)
    except ProtocolError:
        return
    if isinstance(message, Entries):
        feed(verifier_at(start), message)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_protocol_error(data: bytes) -> None:
    try:
        message = decode_message(data)
    except ProtocolError:
        return
    if isinstance(message, Entries):
        feed(verifier_at(PREFIX_END), message)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_as_entries_are_malformed_entry_errors(data: bytes) -> None:
    with contextlib.suppress(MalformedEntryError):
        Entry.decode(data)
    with contextlib.suppress(ProtocolError):
        SignedHead.decode([data, bytes(64)])


@st.composite
def mutated_frame_bytes(draw: Any) -> tuple[bytes, int]:
    which = draw(st.sampled_from([0, 1]))
    data = bytearray(ENCODED_FRAMES[which])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data), (PREFIX_END if which == 0 else 0)


@FUZZ
@given(mutated_frame_bytes())
def test_mutated_frame_bytes(case: tuple[bytes, int]) -> None:
    data, start = case
    decode_and_feed(data, start)


def _mutate_raw(raw: bytes, index: int, how: str, byte: int) -> bytes:
    b = bytearray(raw)
    if not b:  # cut to nothing by an earlier mutation: add a byte instead
        return bytes([byte])
    i = index % len(b)
    if how == "flip":
        b[i] ^= 1 << (byte % 8)
    elif how == "set":
        b[i] = byte
    else:
        del b[i:]
    return bytes(b)


@st.composite
def tampered_frames(draw: Any) -> tuple[Entries, int]:
    start = draw(st.sampled_from([0, PREFIX_END]))
    raws = list(SPACE.raws[start:])
    first = start + 1
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["swap", "drop", "dup", "foreign", "mutate", "first", "truncate_list"]))
        if not raws:
            break
        i = draw(st.integers(0, len(raws) - 1))
        if op == "swap":
            j = draw(st.integers(0, len(raws) - 1))
            raws[i], raws[j] = raws[j], raws[i]
        elif op == "drop":
            del raws[i]
        elif op == "dup":
            raws.insert(i, raws[draw(st.integers(0, len(raws) - 1))])
        elif op == "foreign":
            raws[i] = draw(st.sampled_from(POOL))
        elif op == "mutate":
            raws[i] = _mutate_raw(raws[i], draw(st.integers(0, 10_000)), draw(st.sampled_from(["flip", "set", "cut"])),
                                  draw(st.integers(0, 255)))
        elif op == "first":
            first = draw(st.integers(0, len(SPACE.raws) + 2)) or 1
        else:
            del raws[i:]
    resign = draw(st.booleans())
    head_seq = first + len(raws) - 1
    if resign and raws:
        # a relay that re-chains and re-signs whatever it serves, so the per-entry rules are reached
        try:
            previous = SPACE.heads[first - 1] if first - 1 < len(SPACE.heads) else SPACE.heads[-1]
            heads = chain(previous, first, raws)
            head = SPACE.signed(head_seq, heads[-1])
        except MalformedEntryError:
            head = SPACE.signed(max(head_seq, 0), SPACE.heads[-1])
    else:
        head = SPACE.signed(max(head_seq, 0), SPACE.heads[min(max(head_seq, 0), len(SPACE.heads) - 1)])
    return Entries(first, raws, head), start


@FUZZ
@given(tampered_frames())
def test_tampered_frames(case: tuple[Entries, int]) -> None:
    frame, start = case
    v = verifier_at(start)
    feed(v, frame)  # the dataclass as built, including an empty entry list
    if frame.entries:
        decode_and_feed(frame.encode(), start)  # and through the wire


def test_honest_frames_still_verify() -> None:
    """The fuzz fixtures are valid to begin with (else the fuzz would prove nothing)."""
    v = verifier_at(PREFIX_END)
    v.verify_frame(TAIL)
    assert v.seq == SPACE.seq
    w = verifier_at(0)
    out = w.verify_frame(WHOLE)
    assert w.seq == SPACE.seq and [r.plaintext for r in out if r.plaintext] == [b"a1", b"b1", b"d1", b"b2"]
