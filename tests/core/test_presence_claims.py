"""Presence claims are relay-signed heads: a member cannot forge one to fake a fork or withholding."""

from __future__ import annotations

import nacl.signing
import pytest

from encspaces.core import crypto
from encspaces.core.head import SignedHead
from encspaces.core.presence import PresenceClaim, PresenceTracker, open_presence, seal_presence
from encspaces.errors import ForkError, ProtocolError, WithheldEntriesError

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
