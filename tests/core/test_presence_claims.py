"""Presence claims are relay-signed heads: a member cannot forge one to fake a fork or withholding."""

from __future__ import annotations

import nacl.signing
import pytest

from encspaces.core import crypto
from encspaces.core.encoding import pack
from encspaces.core.evidence import check
from encspaces.core.head import SignedHead
from encspaces.core.presence import (
    CTX_PRESENCE_SIG,
    PRESENCE_VERSION,
    PresenceClaim,
    PresenceTracker,
    open_presence,
    seal_presence,
)
from encspaces.errors import ForkError, ProtocolError, WithheldEntriesError, WithholdingError

from .fakes import FakeSpace


def claim_from(fs: FakeSpace, head: SignedHead) -> bytes:
    return seal_presence(fs.bob, fs.space, 1, fs.epoch_key, {"name": "Bob"}, PresenceClaim(head), 0)


def test_a_head_not_signed_by_the_relay_is_dropped() -> None:
    fs = FakeSpace()
    forged = SignedHead.create(nacl.signing.SigningKey.generate(), fs.space, fs.seq, crypto.ZERO_HASH)
    with pytest.raises(ProtocolError, match="did not sign"):
        open_presence(claim_from(fs, forged), fs.space, fs.state, {1: fs.epoch_key})


def test_a_relay_signed_head_off_our_chain_is_a_fork() -> None:
    fs = FakeSpace()
    other = SignedHead.create(fs.relay_key, fs.space, fs.seq, crypto.hash_parts(b"another history", b""))
    message = open_presence(claim_from(fs, other), fs.space, fs.state, {1: fs.epoch_key})
    with pytest.raises(ForkError, match=f"seq {fs.seq}"):
        PresenceTracker(fs.alice.public.sign_key).receive(message, fs.state, now=0.0)


def test_a_relay_signed_head_we_never_reach_is_withholding() -> None:
    fs = FakeSpace()
    ahead = SignedHead.create(fs.relay_key, fs.space, fs.seq + 3, crypto.hash_parts(b"later", b""))
    message = open_presence(claim_from(fs, ahead), fs.space, fs.state, {1: fs.epoch_key})
    tracker = PresenceTracker(fs.alice.public.sign_key)
    assert tracker.receive(message, fs.state, now=0.0)
    tracker.check_withheld(fs.state, now=5.0, timeout=10.0)  # still within the bound
    with pytest.raises(WithheldEntriesError, match=f"through seq {fs.seq + 3}"):
        tracker.check_withheld(fs.state, now=11.0, timeout=10.0)


def test_the_claim_is_sealed_and_a_replay_is_dropped() -> None:
    fs = FakeSpace()
    head = fs.signed(fs.seq)
    tracker = PresenceTracker(fs.alice.public.sign_key)
    old = seal_presence(fs.bob, fs.space, 1, fs.epoch_key, {"at": 1}, PresenceClaim(head), 0, counter=10)
    new = seal_presence(fs.bob, fs.space, 1, fs.epoch_key, {"at": 2}, PresenceClaim(head), 0, counter=11)
    for data in (old, new):  # what the relay forwards: the head's hash and signed bytes are not readable
        assert head.head not in data and head.signed_bytes not in data
    first = open_presence(old, fs.space, fs.state, {1: fs.epoch_key})
    second = open_presence(new, fs.space, fs.state, {1: fs.epoch_key})
    assert (first.counter, second.counter) == (10, 11) and second.claim.head == head
    assert tracker.fresh(second) and tracker.receive(second, fs.state, now=0.0)
    assert not tracker.fresh(first) and not tracker.fresh(second)  # older, and the same again
    assert tracker.replays_dropped == 2
    assert tracker.heads[fs.bob.public.sign_key] == head


def test_the_sealed_epoch_must_match_the_header() -> None:
    """A message sealed for one epoch cannot be passed off (by its header) as another epoch's."""
    fs = FakeSpace()
    nonce = crypto.random_nonce()
    header = pack([PRESENCE_VERSION, fs.space, fs.bob.public.sign_key, 1, nonce])
    sealed = pack([5, 2, None, 0, [], pack({})])  # counter 5, sealed epoch 2
    body = crypto.aead_seal(fs.epoch_key, nonce, sealed, header)
    data = pack([header, body, fs.bob.sign(CTX_PRESENCE_SIG, header + body)])
    with pytest.raises(ProtocolError, match="sealed under epoch 1 for epoch 2"):
        open_presence(data, fs.space, fs.state, {1: fs.epoch_key})


def test_withholding_shown_in_presence_carries_evidence() -> None:
    fs = FakeSpace()
    ahead = SignedHead.create(fs.relay_key, fs.space, fs.seq + 3, crypto.hash_parts(b"later", b""))
    message = open_presence(claim_from(fs, ahead), fs.space, fs.state, {1: fs.epoch_key})
    tracker = PresenceTracker(fs.alice.public.sign_key)
    tracker.receive(message, fs.state, now=0.0)
    with pytest.raises(WithholdingError) as caught:
        tracker.check_withheld(fs.state, now=11.0, timeout=10.0, verified=fs.signed(fs.seq))
    error = caught.value
    assert (error.seq, error.verified) == (fs.seq + 3, fs.seq)
    assert error.proof is not None
    finding = check(error.proof.replace(genesis=fs.genesis.raw).encode())
    assert finding.seq == fs.seq + 3 and "presence" in finding.proves
