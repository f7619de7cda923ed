"""Heads signed in a batch (encspaces/core/head.py, ``SignedHead.create_batch``).

One relay signature over the RFC 6962 root of several heads' signed bytes; each head's seal
carries its index, the batch size and its inclusion proof. Every head verifies alone, decodes
to itself, and any change to its seal, its bytes or its place is a RelaySignatureError.
"""

from __future__ import annotations

import dataclasses

import nacl.signing
import pytest

from encspaces.core import crypto, merkle
from encspaces.core.encoding import pack
from encspaces.core.head import HEAD_LEAF_CONTEXT, MAX_HEAD_BATCH, SignedHead
from encspaces.errors import ProtocolError, RelaySignatureError

KEY = nacl.signing.SigningKey(bytes(range(32)))
RELAY = bytes(KEY.verify_key)
OTHER_KEY = nacl.signing.SigningKey(bytes(range(1, 33)))


def requests(n: int) -> list[tuple[bytes, int, bytes]]:
    return [(crypto.hash_parts(b"space", i), 1 + i, crypto.hash_parts(b"head", i)) for i in range(n)]


def with_seal(head: SignedHead, seal: bytes) -> SignedHead:
    return dataclasses.replace(head, signature=seal)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100, MAX_HEAD_BATCH])
def test_every_head_of_a_batch_verifies_alone_and_decodes_to_itself(n: int) -> None:
    asked = requests(n)
    heads = SignedHead.create_batch(KEY, asked, time_ms=1234)
    assert [(h.space, h.seq, h.head, h.time_ms) for h in heads] == [(*r, 1234) for r in asked]
    signatures = {h.signature[:crypto.SIGNATURE_SIZE] for h in heads}
    assert len(signatures) == 1  # one signature for the whole batch
    for head in heads:
        assert head.signed_bytes == pack([head.space, head.seq, head.head, 1234])
        assert SignedHead.decode(head.encode()) == head
        head.check(RELAY, head.space)
    if n == 1:  # alone: the plain form, what a relay signed before batches
        assert heads[0] == SignedHead.create(KEY, *asked[0], time_ms=1234)


def test_a_batch_signature_is_over_the_root_of_the_heads_signed_bytes() -> None:
    heads = SignedHead.create_batch(KEY, requests(5), time_ms=1)
    root = merkle.root_of([merkle.leaf_hash(HEAD_LEAF_CONTEXT + h.signed_bytes) for h in heads])
    statement = (5).to_bytes(2, "big") + root
    assert crypto.verify(RELAY, crypto.CTX_HEAD_BATCH_SIG, statement, heads[0].signature[:crypto.SIGNATURE_SIZE])
    assert not crypto.verify(RELAY, crypto.CTX_HEAD_SIG, statement, heads[0].signature[:crypto.SIGNATURE_SIZE])


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


SIG = crypto.SIGNATURE_SIZE


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda h, _: with_seal(h, _flip(h.signature, 3)), "signature of its batch"),  # the signature
        (lambda h, _: with_seal(h, _flip(h.signature, SIG + 1)), "batch"),  # the index
        (lambda h, _: with_seal(h, _flip(h.signature, SIG + 3)), "batch"),  # the size
        (lambda h, _: with_seal(h, _flip(h.signature, len(h.signature) - 1)), "signature of its batch"),  # a proof hash
        (lambda h, _: with_seal(h, h.signature[:-32]), "batch proof is malformed"),  # a hash short
        (lambda h, _: with_seal(h, h.signature + h.signature[-32:]), "batch proof is malformed"),  # a hash too many
        (lambda h, others: with_seal(h, others[0].signature), "signature of its batch"),  # another head's place
        (lambda h, _: dataclasses.replace(h, signed_bytes=pack([h.space, h.seq, bytes(32), h.time_ms])),
         "signature of its batch"),  # another hash under this seal
    ],
)
def test_a_changed_batch_head_is_a_relay_signature_error(change, words: str) -> None:  # type: ignore[no-untyped-def]
    heads = SignedHead.create_batch(KEY, requests(6))
    changed = change(heads[3], heads)
    with pytest.raises(RelaySignatureError, match=words) as caught:
        SignedHead.decode(changed.encode()).check(RELAY, heads[3].space)
    assert f"seq {heads[3].seq}" in str(caught.value)


def test_a_batch_signed_by_another_key_or_for_another_space_is_refused() -> None:
    heads = SignedHead.create_batch(OTHER_KEY, requests(3))
    with pytest.raises(RelaySignatureError, match="signature of its batch"):
        heads[1].check(RELAY, heads[1].space)
    mine = SignedHead.create_batch(KEY, requests(3))
    with pytest.raises(RelaySignatureError, match="is for space"):
        mine[1].check(RELAY, mine[0].space)


def test_a_plain_signature_is_not_a_batch_of_one() -> None:
    """A size of 1 cannot come with a proof: a relay signs a lone head in the plain form."""
    head = SignedHead.create(KEY, *requests(1)[0])
    leaf = merkle.leaf_hash(HEAD_LEAF_CONTEXT + head.signed_bytes)
    signature = crypto.sign(KEY, crypto.CTX_HEAD_BATCH_SIG, (1).to_bytes(2, "big") + leaf)
    forged = with_seal(head, signature + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + bytes(32))
    with pytest.raises(RelaySignatureError):
        SignedHead.decode(forged.encode()).check(RELAY, head.space)


@pytest.mark.parametrize("length", [0, SIG - 1, SIG + 1, SIG + 4, SIG + 4 + 31, SIG + 4 + 9 * 32, 4096])
def test_a_seal_of_any_other_length_does_not_decode(length: int) -> None:
    head = SignedHead.create(KEY, *requests(1)[0])
    with pytest.raises(ProtocolError, match="signed head signature"):
        SignedHead.decode([head.signed_bytes, bytes(length)])


@pytest.mark.parametrize("n", [0, MAX_HEAD_BATCH + 1])
def test_a_batch_holds_one_to_max_heads(n: int) -> None:
    with pytest.raises(ValueError, match="a batch holds"):
        SignedHead.create_batch(KEY, requests(n))
