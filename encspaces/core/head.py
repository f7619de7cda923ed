"""The relay's hash chain and the heads it signs.

h(0) is all zeros; h(i) = H(context, h(i-1), i, digest of entry i). A signed head is the
relay's statement "the log of this space at seq i has head h(i)"; two signed heads with one
seq and different hashes are proof that the relay forked the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import nacl.signing

from ..errors import RelaySignatureError
from . import crypto
from .encoding import as_bytes, as_int, as_list, pack, unpack
from .entry import frozen_instance

_MAX_SIGNED = 256  # the signed bytes of a head: space, seq, hash, time (about 90 bytes)
_HASH_SIZE = crypto.HASH_SIZE
_SIGNATURE_SIZE = crypto.SIGNATURE_SIZE
_MAX_INT = (1 << 63) - 1  # encoding.as_int's default bound


def next_head(previous: bytes, seq: int, entry_digest: bytes) -> bytes:
    return crypto.chain_head(previous, seq, entry_digest)


@dataclass(frozen=True)
class SignedHead:
    """A head as signed by the relay, with the exact bytes that were signed."""

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
    def decode(cls, value: object) -> SignedHead:
        """Parse (not verify) a signed head from its wire form ``[signed_bytes, signature]``.

        Every frame and ack carries one (a device at 10×10 parses hundreds a second): the
        well-formed case is checked in one expression and built without the dataclass's
        ``__init__`` (``frozen_instance``); anything else takes the checks that name the field.
        """
        if type(value) is list and len(value) == 2:
            signed, signature = value
            if (type(signed) is bytes and len(signed) <= _MAX_SIGNED and type(signature) is bytes
                    and len(signature) == _SIGNATURE_SIZE):
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
        signature = as_bytes(pair[1], "signed head signature", crypto.SIGNATURE_SIZE)
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
        if not crypto.verify(relay_key, crypto.CTX_HEAD_SIG, self.signed_bytes, self.signature):
            raise RelaySignatureError(f"signed head at seq {self.seq}: the relay's signature does not verify")
        if self.space != space:
            raise RelaySignatureError(
                f"signed head at seq {self.seq} is for space {self.space.hex()[:16]}…, "
                f"expected {space.hex()[:16]}…"
            )

