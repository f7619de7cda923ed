"""Every primitive the protocol uses, each bound to a versioned context string.

A signature or hash made for one purpose must never be valid for another, so nothing
outside this module calls libsodium directly, and every call here takes its context.
Hashing uses the stdlib's BLAKE2b (the same function libsodium implements, ten times
cheaper to call from Python; see shared/COSTS.md).
"""

from __future__ import annotations

import hashlib
import os
import struct

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

HASH_SIZE = 32
KEY_SIZE = 32
NONCE_SIZE = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# Context strings: one per purpose, versioned. Changing a format means a new version here.
CTX_ENTRY_SIG = b"encspaces/v1/entry-signature"
CTX_ENTRY_DIGEST = b"encspaces/v1/entry-digest"
CTX_BODY = b"encspaces/v1/entry-body"
CTX_HEAD = b"encspaces/v1/head-chain"
CTX_HEAD_SIG = b"encspaces/v1/signed-head"
CTX_HEAD_BATCH_SIG = b"encspaces/v1/signed-head-batch"  # size and RFC 6962 root of heads signed together
CTX_SPACE_ID = b"encspaces/v1/space-id"
CTX_AUTH = b"encspaces/v1/handshake-auth"
CTX_IDENTITY_CHECK = b"encspaces/v1/identity-check"
CTX_INVITE_SIGN_KEY = b"encspaces/v1/invite-signing-key"
CTX_INVITE_BOX_KEY = b"encspaces/v1/invite-box-key"
CTX_INVITE_PROOF = b"encspaces/v1/invite-join-proof"
CTX_INVITE_AUTH = b"encspaces/v1/invite-handshake"
CTX_INVITE_LINK = b"encspaces/v1/invite-link-check"
# Snapshot attestations (encspaces/core/attestation.py): the key derived from an epoch key, and the tag.
CTX_ATTEST_KEY = b"encspaces/v1/snapshot-attest-key"
CTX_ATTEST_TAG = b"encspaces/v1/snapshot-attest-tag"
CTX_SNAPSHOT_CONTENT = b"encspaces/v2/snapshot-content"  # v2: flat typed tokens (encspaces.shared.values.canonical)
CTX_SAFETY_CODE = b"encspaces/v1/safety-code"
# Key confirmation: every entry that starts an epoch commits to its key in its signed public body.
CTX_EPOCH_KEY_COMMIT = b"encspaces/v1/epoch-key-commitment"
# Several devices of one person (encspaces/core/devices.py; docs/PROTOCOL.md, "Devices").
CTX_DEVICE_CERT = b"encspaces/v1/device-certificate"
CTX_DEVICE_REVOKE = b"encspaces/v1/device-revocation"
CTX_DEVICE_PAIRING = b"encspaces/v1/device-pairing-check"
CTX_RECOVERY_CHECK = b"encspaces/v1/person-recovery-check"

# Encrypted files (encspaces/files.py, encspaces_relay/blobs.py; docs/PROTOCOL.md, "Encrypted files").
CTX_FILE_SECRET = b"encspaces/v1/file-convergence-secret"
CTX_FILE_CONTENT = b"encspaces/v1/file-content"
CTX_FILE_KEY = b"encspaces/v1/file-key"
CTX_FILE_ID = b"encspaces/v1/file-id"
CTX_FILE_NONCE = b"encspaces/v1/file-chunk-nonce"
CTX_FILE_CHUNK = b"encspaces/v1/file-chunk"
CTX_BLOB = b"encspaces/v1/blob"
CTX_YJS_CLIENT = b"encspaces/v1/yjs-client-id"
CTX_SNAPSHOT_OWNERS = b"encspaces/v1/snapshot-client-owners"
# The log state at an anchor (a multiple of ANCHOR_GRID seqs): what a new device may start from.
CTX_LOG_STATE = b"encspaces/v1/log-state-anchor"

ZERO_HASH = bytes(HASH_SIZE)


_U32 = struct.Struct(">I").pack
_U64 = struct.Struct(">Q").pack
# A hasher that already absorbed each framed context string: ``copy()`` is cheaper than hashing
# the context again, and the chain hashes two of these per entry (a new device: thousands).
_CONTEXT_HASHERS: dict[bytes, hashlib.blake2b] = {}
_MAX_CONTEXT_HASHERS = 64


def _frame(part: bytes) -> bytes:
    return _U32(len(part)) + part


def _hasher(context: bytes) -> hashlib.blake2b:
    started = _CONTEXT_HASHERS.get(context)
    if started is None:
        started = hashlib.blake2b(_frame(context), digest_size=HASH_SIZE)
        if len(_CONTEXT_HASHERS) < _MAX_CONTEXT_HASHERS:
            _CONTEXT_HASHERS[context] = started
    return started.copy()


def hash_parts(context: bytes, *parts: bytes | int) -> bytes:
    """BLAKE2b-256 over the context and each part, each length-prefixed (ints as u64)."""
    started = _CONTEXT_HASHERS.get(context)
    h = _hasher(context) if started is None else started.copy()
    for part in parts:
        if type(part) is not bytes and isinstance(part, int):  # bytes, the common case, tested first
            h.update(_U64(part))
        else:
            h.update(_U32(len(part)))
            h.update(part)
    return h.digest()


# The two hashes a device computes for every entry of the log (thousands on a new device), each
# ``hash_parts`` with its context and parts written out: one concatenation and one ``update``
# instead of the loop (tests/core/test_entry.py holds them equal to ``hash_parts``; figures in
# bench/README.md, "Cold open: the device's verification").
_ENTRY_DIGEST_HASHER = hashlib.blake2b(_frame(CTX_ENTRY_DIGEST), digest_size=HASH_SIZE)
_HEAD_HASHER = hashlib.blake2b(_frame(CTX_HEAD), digest_size=HASH_SIZE)


def entry_digest(header_bytes: bytes, body_hash: bytes, signature: bytes) -> bytes:
    """``hash_parts(CTX_ENTRY_DIGEST, header_bytes, body_hash, signature)``: an entry's digest."""
    h = _ENTRY_DIGEST_HASHER.copy()
    h.update(_U32(len(header_bytes)) + header_bytes + _U32(len(body_hash)) + body_hash
             + _U32(len(signature)) + signature)
    return h.digest()


def chain_head(previous: bytes, seq: int, entry_digest: bytes) -> bytes:
    """``hash_parts(CTX_HEAD, previous, seq, entry_digest)``: the relay's chain head at ``seq``."""
    h = _HEAD_HASHER.copy()
    h.update(_U32(len(previous)) + previous + _U64(seq) + _U32(len(entry_digest)) + entry_digest)
    return h.digest()


def sign(key: nacl.signing.SigningKey, context: bytes, message: bytes) -> bytes:
    return bytes(key.sign(_frame(context) + message).signature)


def verify(public_key: bytes, context: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``message`` under ``context``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + _frame(context) + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def random_key() -> bytes:
    return os.urandom(KEY_SIZE)


def random_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
    return bytes(
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, associated, nonce, key)
    )


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, associated: bytes) -> bytes | None:
    """The plaintext, or None when the ciphertext does not open under this key and header."""
    try:
        return bytes(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, associated, nonce, key
            )
        )
    except (nacl.exceptions.CryptoError, ValueError):
        return None


def seal_to(box_public_key: bytes, secret: bytes) -> bytes:
    """An anonymous sealed box that only the holder of the X25519 private key can open."""
    return bytes(nacl.public.SealedBox(nacl.public.PublicKey(box_public_key)).encrypt(secret))


def open_sealed(private_key: nacl.public.PrivateKey, sealed: bytes) -> bytes | None:
    try:
        return bytes(nacl.public.SealedBox(private_key).decrypt(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return None


def key_commitment(space: bytes, epoch: int, key: bytes) -> bytes:
    """The public commitment to an epoch key: recipients check the key they unseal against it.

    ``space`` is the space field of the entry that starts the epoch: the space id, or empty in
    the genesis entry (whose hash is the space id).
    """
    return hash_parts(CTX_EPOCH_KEY_COMMIT, space, epoch, key)


def stream_hasher(context: bytes) -> hashlib.blake2b:
    """A BLAKE2b-256 to feed with ``update``: for data too large to hold (framed context first)."""
    return _hasher(context)


def blob_hash(blob: bytes) -> bytes:
    """The name a stored blob (an encrypted file chunk) has at the relay: the hash of its bytes."""
    return hash_parts(CTX_BLOB, blob)
