"""The add-checkpoint rules of C2SP tlog-witness, without I/O (the store is an interface).

A witness keeps, per origin, the latest checkpoint it cosigned. It cosigns a new one only if
a consistency proof from exactly that size verifies; so it never cosigns a smaller tree after a
larger one, nor a second root at one size, across restarts (the store is durable). A validly
signed checkpoint that conflicts with what it cosigned (bad proof, other root at the same size)
is kept as evidence. Refusals are the exceptions of encspaces.errors (``WitnessError`` and its
subclasses), each with the HTTP status the spec gives it:

- 400 malformed request, or old size above the checkpoint size;
- 403 no trusted log signature, or a trusted key's signature fails;
- 404 unknown origin (not an encspaces space origin, or no log key configured);
- 409 old size is not the size last cosigned (``latest_size`` says which is);
- 422 proof does not verify, non-empty proof from 0, wrong empty-tree root, other root at one size.

What a witness learns: space ids (in the origin), tree sizes, roots and the relay's key, never
content. Checking the old size and storing the new checkpoint happen atomically (a lock here
and a compare-and-set in the store).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from encspaces.core import merkle, note
from encspaces.errors import (
    MalformedNoteError,
    MerkleProofError,
    NoteSignatureError,
    WitnessBadRequestError,
    WitnessConsistencyError,
    WitnessError,
    WitnessSignatureError,
    WitnessSizeMismatchError,
    WitnessUnknownOriginError,
)

MAX_PROOF_LINES = 63
MAX_REQUEST = 64 * 1024


@dataclass(frozen=True)
class Cosigned:
    """The latest checkpoint a witness cosigned for an origin, as it serves it: the checkpoint
    text with the log signatures it verified and its own cosignature."""

    origin: str
    size: int
    root: bytes
    note: bytes


class WitnessStore(Protocol):
    """Durable per-origin state of a witness."""

    def latest(self, origin: str) -> Cosigned | None: ...

    def latest_by_hash(self, origin_hash: bytes) -> Cosigned | None:
        """By ``SHA-256(origin)``, for the monitoring GET."""
        ...

    def replace(self, expected_size: int | None, new: Cosigned) -> bool:
        """Store ``new`` if the stored size is still ``expected_size`` (None: nothing stored);
        durable before returning True. False if another write came first."""
        ...

    def add_evidence(self, origin: str, status: int, reason: str, request: bytes, at: int) -> None: ...


@dataclass(frozen=True)
class AddRequest:
    old_size: int
    proof: list[bytes]
    checkpoint: note.SignedCheckpoint


def parse_add_checkpoint(body: bytes) -> AddRequest:
    """Parse ``old N\\n``, up to 63 base64 proof lines, a blank line, then a signed checkpoint."""
    if len(body) > MAX_REQUEST:
        raise WitnessBadRequestError(f"request of {len(body)} bytes, over {MAX_REQUEST}")
    split = body.find(b"\n\n")
    if split < 0:
        raise WitnessBadRequestError("request has no blank line before the checkpoint")
    head = body[:split].split(b"\n")
    old_line, proof_lines = head[0], head[1:]
    digits = old_line[4:]
    if (
        not old_line.startswith(b"old ")
        or not digits.isdigit()
        or not digits.isascii()
        or (digits != b"0" and digits.startswith(b"0"))
    ):
        raise WitnessBadRequestError(f"first line is not 'old <size>': {old_line[:40]!r}")
    if len(proof_lines) > MAX_PROOF_LINES:
        raise WitnessBadRequestError(f"{len(proof_lines)} proof lines, at most {MAX_PROOF_LINES}")
    proof = []
    for i, line in enumerate(proof_lines):
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise WitnessBadRequestError(f"proof line {i} is not base64") from None
        if len(h) != merkle.HASH_SIZE:
            raise WitnessBadRequestError(f"proof line {i} holds {len(h)} bytes, expected {merkle.HASH_SIZE}")
        proof.append(h)
    try:
        checkpoint = note.SignedCheckpoint.parse(body[split + 2 :])
    except MalformedNoteError as exc:
        raise WitnessBadRequestError(f"malformed checkpoint: {exc}") from None
    return AddRequest(int(digits), proof, checkpoint)


def encode_add_checkpoint(old_size: int, proof: Sequence[bytes], checkpoint: note.SignedCheckpoint) -> bytes:
    """The add-checkpoint request body (what the relay will POST)."""
    lines = [f"old {old_size}".encode(), *(base64.b64encode(h) for h in proof)]
    return b"\n".join(lines) + b"\n\n" + checkpoint.encode()


def origin_hash(origin: str) -> bytes:
    return hashlib.sha256(origin.encode()).digest()


class Witness:
    """The add-checkpoint rules over a :class:`WitnessStore`. ``log_keys`` are the Ed25519 public
    keys of the relays this witness serves: a checkpoint for origin ``encspaces/space/<id>`` must
    carry a signature by one of them under the key name = origin (signature type 0x01)."""

    def __init__(
        self,
        signer: note.CosignatureSigner,
        log_keys: Sequence[bytes],
        store: WitnessStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self.log_keys = list(log_keys)
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()

    def log_verifiers(self, origin: str) -> list[note.Ed25519Verifier]:
        if note.space_of_origin(origin) is None or not self.log_keys:
            raise WitnessUnknownOriginError(f"unknown origin {origin[:80]!r}: this witness serves encspaces spaces")
        return [note.Ed25519Verifier(origin, key) for key in self.log_keys]

    def add_checkpoint(self, body: bytes) -> list[note.NoteSignature]:
        """Check a request and cosign; return the cosignature lines. Raises a WitnessError."""
        request = parse_add_checkpoint(body)
        signed = request.checkpoint
        cp = signed.checkpoint
        try:
            verified = signed.verify(self.log_verifiers(cp.origin))
        except NoteSignatureError as exc:
            raise WitnessSignatureError(f"checkpoint of {cp.origin} at size {cp.size}: {exc}") from None
        if request.old_size > cp.size:
            raise WitnessBadRequestError(f"old size {request.old_size} is above the checkpoint size {cp.size}")
        if cp.size == 0 and cp.root != merkle.EMPTY_ROOT:
            raise WitnessConsistencyError("a checkpoint of size 0 must have the empty tree's root")
        with self._lock:
            latest = self.store.latest(cp.origin)
            latest_size = latest.size if latest else 0
            if latest is not None and cp.size == latest.size and cp.root != latest.root:
                self._evidence(cp, 422 if request.old_size == latest_size else 409, "another root at size", body)
            if request.old_size != latest_size:
                raise WitnessSizeMismatchError(
                    f"{cp.origin}: old size {request.old_size}, but the latest cosigned size is {latest_size}",
                    latest_size,
                )
            try:
                if latest is None:
                    if request.proof:
                        raise MerkleProofError("a proof from size 0 must be empty")
                else:
                    merkle.verify_consistency(latest.size, cp.size, latest.root, cp.root, request.proof)
            except MerkleProofError as exc:
                if latest is None or cp.size != latest.size:  # same-size conflicts are kept above
                    self._evidence(cp, 422, str(exc), body)
                raise WitnessConsistencyError(f"{cp.origin}: not consistent with size {latest_size}: {exc}") from None
            timestamp = max(1, int(self._clock()))
            cosig = signed.cosign(self.signer, timestamp)
            served = note.SignedCheckpoint(cp, note.Note(signed.note.text, (*(s for _, s in verified), cosig)))
            stored = Cosigned(cp.origin, cp.size, cp.root, served.encode())
            if not self.store.replace(latest.size if latest else None, stored):
                raise WitnessError(f"{cp.origin}: the stored state changed under this request; retry")
        return [cosig]

    def _evidence(self, cp: note.Checkpoint, status: int, reason: str, body: bytes) -> None:
        self.store.add_evidence(cp.origin, status, f"size {cp.size}: {reason}", body, int(self._clock()))

    def latest_checkpoint(self, origin_hash_value: bytes) -> bytes | None:
        """The latest cosigned checkpoint (log signatures and the cosignature), by SHA-256(origin)."""
        found = self.store.latest_by_hash(origin_hash_value)
        return found.note if found else None
