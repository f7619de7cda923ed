"""The relay's hash chain and the heads it signs.

h(0) is all zeros; h(i) = H(context, h(i-1), i, digest of entry i). A signed head is the
relay's statement "the log of this space at seq i has head h(i)"; two signed heads with one
seq and different hashes are proof that the relay forked the log.

A relay committing in many spaces at once signs their heads as one batch: one Ed25519
signature over the RFC 6962 root of the heads' signed bytes, and each head carries its
inclusion proof in its seal (``SignedHead.signature``). The per-head statement, the wire form
and every place that stores or compares a head are the same for both; only the check differs.
Why: the relay's signature is one of its two Ed25519 operations per entry when spaces commit
one entry at a time (bench/README.md, "Heads of many spaces under one signature").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import nacl.signing

from ..errors import MerkleProofError, ProtocolError, RelaySignatureError
from . import crypto, merkle
from .encoding import as_bytes, as_int, as_list, pack, unpack
from .entry import frozen_instance

_MAX_SIGNED = 256  # the signed bytes of a head: space, seq, hash, time (about 90 bytes)
_HASH_SIZE = crypto.HASH_SIZE
_SIGNATURE_SIZE = crypto.SIGNATURE_SIZE
_MAX_INT = (1 << 63) - 1  # encoding.as_int's default bound
# A batch's seal: signature || index (u16) || size (u16) || the inclusion proof's hashes.
MAX_HEAD_BATCH = 256  # heads under one signature: a proof of at most 8 hashes (256 bytes)
_BATCH_PROOF_MAX = 8
_MAX_SEAL = _SIGNATURE_SIZE + 4 + _BATCH_PROOF_MAX * _HASH_SIZE
# Fixed length, so the leaf input HEAD_LEAF_CONTEXT || signed bytes is unambiguous.
HEAD_LEAF_CONTEXT = b"encspaces/v1/head-batch-leaf\n"


def _batch_seal_size(length: int) -> bool:
    """Whether ``length`` is the size of a batch seal (signature, index, size, 1–8 hashes)."""
    proof = length - _SIGNATURE_SIZE - 4
    return 0 < proof <= _BATCH_PROOF_MAX * _HASH_SIZE and proof % _HASH_SIZE == 0


def next_head(previous: bytes, seq: int, entry_digest: bytes) -> bytes:
    return crypto.chain_head(previous, seq, entry_digest)


def _batch_statement(size: int, root: bytes) -> bytes:
    """What the relay signs for a batch: its size and root (under CTX_HEAD_BATCH_SIG)."""
    return size.to_bytes(2, "big") + root


def _head_leaf(signed_bytes: bytes) -> bytes:
    return merkle.leaf_hash(HEAD_LEAF_CONTEXT + signed_bytes)


@dataclass(frozen=True)
class SignedHead:
    """A head as signed by the relay, with the exact bytes that were signed.

    ``signature`` is the seal: the relay's 64-byte signature of ``signed_bytes``, or, for a head
    signed in a batch, its signature of the batch's root followed by this head's place in the
    batch and inclusion proof (``create_batch``).
    """

    space: bytes
    seq: int
    head: bytes
    time_ms: int
    signed_bytes: bytes
    signature: bytes

    def encode(self) -> list[bytes]:
        return [self.signed_bytes, self.signature]

    @classmethod
    def create(
        cls, key: nacl.signing.SigningKey, space: bytes, seq: int, head: bytes, time_ms: int | None = None
    ) -> SignedHead:
        t = int(time.time() * 1000) if time_ms is None else time_ms
        signed = pack([space, seq, head, t])
        return cls(space, seq, head, t, signed, crypto.sign(key, crypto.CTX_HEAD_SIG, signed))

    @classmethod
    def create_batch(
        cls, key: nacl.signing.SigningKey, heads: list[tuple[bytes, int, bytes]], time_ms: int | None = None
    ) -> list[SignedHead]:
        """``(space, seq, head)`` each signed, with one signature for all of them.

        One head is signed alone (the plain form, nothing to prove). More are leaves of an
        RFC 6962 tree, in the order given; the relay signs its size and root and each head's
        seal carries its inclusion proof.
        """
        if not 0 < len(heads) <= MAX_HEAD_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_HEAD_BATCH} heads, not {len(heads)}")
        t = int(time.time() * 1000) if time_ms is None else time_ms
        if len(heads) == 1:
            return [cls.create(key, *heads[0], time_ms=t)]
        signed = [pack([space, seq, head, t]) for space, seq, head in heads]
        root, proofs = merkle.root_and_proofs([_head_leaf(b) for b in signed])
        size = len(signed)
        signature = crypto.sign(key, crypto.CTX_HEAD_BATCH_SIG, _batch_statement(size, root))
        count = size.to_bytes(2, "big")
        return [
            frozen_instance(cls, {"space": space, "seq": seq, "head": head, "time_ms": t, "signed_bytes": signed[i],
                                  "signature": signature + i.to_bytes(2, "big") + count + b"".join(proofs[i])})
            for i, (space, seq, head) in enumerate(heads)
        ]

    @classmethod
    def decode(cls, value: object) -> SignedHead:
        """Parse (not verify) a signed head from its wire form ``[signed_bytes, signature]``.

        Every frame and ack carries one (a device at 10×10 parses hundreds a second): the
        well-formed case is checked in one expression and built without the dataclass's
        ``__init__`` (``frozen_instance``); anything else takes the checks that name the field.
        """
        if type(value) is list and len(value) == 2:
            signed, signature = value
            if (type(signed) is bytes and len(signed) <= _MAX_SIGNED and type(signature) is bytes
                    and (len(signature) == _SIGNATURE_SIZE or _batch_seal_size(len(signature)))):
                items = unpack(signed, what="signed head")
                if type(items) is list and len(items) == 4:
                    space, seq, head, time_ms = items
                    if (type(space) is bytes and len(space) == _HASH_SIZE and type(seq) is int
                            and 0 <= seq <= _MAX_INT and type(head) is bytes and len(head) == _HASH_SIZE
                            and type(time_ms) is int and 0 <= time_ms <= _MAX_INT):
                        return frozen_instance(cls, {"space": space, "seq": seq, "head": head, "time_ms": time_ms,
                                                     "signed_bytes": signed, "signature": signature})
        return cls._decode_checked(value)

    @classmethod
    def _decode_checked(cls, value: object) -> SignedHead:
        pair = as_list(value, "signed head", 2)
        signed = as_bytes(pair[0], "signed head bytes", max_size=_MAX_SIGNED)
        signature = as_bytes(pair[1], "signed head signature", max_size=_MAX_SEAL)
        if len(signature) != _SIGNATURE_SIZE and not _batch_seal_size(len(signature)):
            raise ProtocolError(
                f"signed head signature: {len(signature)} bytes, expected {_SIGNATURE_SIZE} "
                f"or a batch seal ({_SIGNATURE_SIZE} + 4 + 32·k bytes, k ≤ {_BATCH_PROOF_MAX})")
        items = as_list(unpack(signed, what="signed head"), "signed head", 4)
        return cls(
            space=as_bytes(items[0], "signed head space", crypto.HASH_SIZE),
            seq=as_int(items[1], "signed head seq"),
            head=as_bytes(items[2], "signed head hash", crypto.HASH_SIZE),
            time_ms=as_int(items[3], "signed head time"),
            signed_bytes=signed,
            signature=signature,
        )

    def check(self, relay_key: bytes, space: bytes) -> None:
        """Raise RelaySignatureError unless the relay signed this head for this space."""
        seal = self.signature
        if len(seal) == _SIGNATURE_SIZE:
            if not crypto.verify(relay_key, crypto.CTX_HEAD_SIG, self.signed_bytes, seal):
                raise RelaySignatureError(f"signed head at seq {self.seq}: the relay's signature does not verify")
        else:
            index = int.from_bytes(seal[_SIGNATURE_SIZE:_SIGNATURE_SIZE + 2], "big")
            size = int.from_bytes(seal[_SIGNATURE_SIZE + 2:_SIGNATURE_SIZE + 4], "big")
            path = seal[_SIGNATURE_SIZE + 4:]
            try:
                root = merkle.root_from_inclusion(
                    index, size, _head_leaf(self.signed_bytes),
                    [path[i:i + _HASH_SIZE] for i in range(0, len(path), _HASH_SIZE)])
            except MerkleProofError as exc:
                raise RelaySignatureError(
                    f"signed head at seq {self.seq}: its batch proof is malformed: {exc}") from None
            # (A size below 2 never gets here: a proof of one hash or more is too long for it.)
            if not crypto.verify(relay_key, crypto.CTX_HEAD_BATCH_SIG, _batch_statement(size, root),
                                 seal[:_SIGNATURE_SIZE]):
                raise RelaySignatureError(
                    f"signed head at seq {self.seq}: the relay's signature of its batch (head {index} of {size}) "
                    "does not verify")
        if self.space != space:
            raise RelaySignatureError(
                f"signed head at seq {self.seq} is for space {self.space.hex()[:16]}…, "
                f"expected {space.hex()[:16]}…"
            )

