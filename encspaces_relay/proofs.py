"""Answers to a client's proof requests: the relay's checkpoint, consistency and inclusion proofs.

Each is read from the room's tree (encspaces_relay/tree.py): ``O(log n)`` stored rows in one or
two queries, ``O(log n)`` hashes. Sizes are bounded by the durable log: a tree size past it is
refused with ``beyond_head`` (the relay cannot prove what it has not sequenced and stored), an
impossible request with ``bad_range``, a storage failure with ``unavailable``. A refusal answers
that request only (``proof_refused``); the connection goes on. Nothing here is trusted by the
client: it checks every proof against roots it verified or checkpoints it was shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from encspaces.core.codes import ProofCode
from encspaces.core.messages import (
    CheckpointReq,
    Consistency,
    ConsistencyReq,
    Inclusion,
    InclusionReq,
    ProofRefused,
    ProofReply,
)

from .metrics import RelayMetrics

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger(__name__)

# Proof requests a connection may have answered per second, in bursts of PROOF_BURST: past
# that the connection's requests wait (its reading stops meanwhile), so one member cannot
# keep the relay busy hashing and reading its store. An honest client asks a few per checkpoint.
PROOF_RATE = 50.0
PROOF_BURST = 100


class Pacer:
    """A token bucket that waits instead of refusing."""

    def __init__(
        self, rate: float = PROOF_RATE, burst: int = PROOF_BURST, *, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._at = clock()

    async def wait(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            await self._sleep((1.0 - self._tokens) / self.rate)
            self._tokens = 1.0
            self._at = self._clock()
        self._tokens -= 1.0


class ProofHost(Protocol):
    """The server's encoders (overridable by a lying test relay) and metrics."""

    @property
    def metrics(self) -> RelayMetrics: ...

    def checkpoint_for(self, space: bytes) -> bytes | None: ...

    def encode_checkpoint(self, space: bytes, note: bytes, id: int | None = None) -> bytes: ...

    def encode_proof(self, space: bytes, reply: ProofReply) -> bytes: ...


async def answer_proof(host: ProofHost, room: Room, request: CheckpointReq | ConsistencyReq | InclusionReq) -> bytes:
    """The bytes that answer ``request``."""
    space = room.space
    if isinstance(request, CheckpointReq):
        found = host.checkpoint_for(space)
        if found is None:
            return host.encode_proof(space, ProofRefused(request.id, ProofCode.UNAVAILABLE, "no checkpoint yet"))
        host.metrics.proofs.labels("checkpoint").inc()
        return host.encode_checkpoint(space, found, request.id)
    reply = await _proof(room, request)
    host.metrics.proofs.labels(type(reply).__name__.lower()).inc()
    return host.encode_proof(space, reply)


async def _proof(room: Room, request: ConsistencyReq | InclusionReq) -> ProofReply:
    durable = room.tree.durable_size
    if isinstance(request, ConsistencyReq):
        first, second = request.first, request.second
        if second > durable:
            return ProofRefused(request.id, ProofCode.BEYOND_HEAD,
                                f"tree size {second} is past the log's {durable} entries")
        if first > second:
            return ProofRefused(request.id, ProofCode.BAD_RANGE,
                                f"no consistency proof from size {first} to the smaller size {second}")
    else:
        if request.size > durable:
            return ProofRefused(request.id, ProofCode.BEYOND_HEAD,
                                f"tree size {request.size} is past the log's {durable} entries")
        if request.seq > request.size:
            return ProofRefused(request.id, ProofCode.BAD_RANGE,
                                f"seq {request.seq} is not in a tree of {request.size} entries")
    try:
        if isinstance(request, ConsistencyReq):
            proof = await room.tree.consistency_proof(room.store, room.space, request.first, request.second)
            return Consistency(request.id, request.first, request.second, proof)
        proof = await room.tree.inclusion_proof(room.store, room.space, request.seq - 1, request.size)
        return Inclusion(request.id, request.seq, request.size, proof)
    except Exception as exc:  # a storage failure, or a tree the store does not hold: this request fails
        log.warning("%s: a %s could not be answered: %s", room.label, type(request).__name__, exc)
        return ProofRefused(request.id, ProofCode.UNAVAILABLE,
                            f"the relay cannot read its tree now ({type(exc).__name__})")
