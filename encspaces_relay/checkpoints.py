"""Per room: signed checkpoints of the space's Merkle tree, and their witnessing.

A ``Checkpointer`` is a background task of its room. The committer only tells it that the
durable log grew (``grown``: an ``Event.set``); everything else happens here, never on the path
of an edit:

- **Checkpoints.** At most once per ``checkpoint_interval`` while the log grows, and once more
  when it goes idle (the growth seen during the pause makes one last round), the relay signs a
  C2SP checkpoint ``origin\\nsize\\nbase64(root)\\n`` of the durable tree (key name = origin,
  the relay's Ed25519 key; encspaces.core.note). Cheap: the root comes from the in-memory
  frontier, one signature per round. Only in a space whose log names witnesses (its current
  witness policy or the one before): elsewhere nobody cosigns, and the checkpoint a client is
  given (welcome, ``checkpoint_req``) is signed when it is asked for (``sign_now``), so no task
  runs at all.
- **Witnessing.** For a space whose policy names witnesses (the current one, and the one
  before it until its witnesses have cosigned past the change, so a policy change is itself
  witnessed under the old policy), each witness that
  has not cosigned this size gets ``POST /add-checkpoint`` with a consistency proof from the
  size it last cosigned (learnt from its cosignatures, or from its 409 answer, which is
  retried once at once). Cosignatures are checked against the witness's key from the policy,
  stored with the checkpoint (``save_checkpoint``), and the cosigned note is pushed to the
  room's clients as a ``checkpoint`` message.
- **A witness that is down** (refused, timed out, an error status) is retried with
  exponential backoff (from ``checkpoint_interval`` up to ``MAX_BACKOFF``), logged once per
  outage and counted; it delays that witness's cosignature only: edits, other witnesses and
  the relay's own checkpoints go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

import nacl.signing

from encspaces.core import note
from encspaces.core.log_state import LogState
from encspaces.core.witness_policy import Witness
from encspaces.errors import EncspacesError

from .metrics import RelayMetrics
from .storage import RelayStore
from .tree import RelayTree
from .witness_client import WitnessUnreachableError, add_checkpoint

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0


class CheckpointHost(Protocol):
    """What a checkpointer needs from its room."""

    space: bytes
    tree: RelayTree
    store: RelayStore
    state: LogState

    @property
    def label(self) -> str: ...

    def push_checkpoint(self, note: bytes) -> None:
        """Send a checkpoint note to every live subscriber of the room."""
        ...


def witnesses_of(state: LogState, cosigned: dict[str, int] | None = None) -> list[Witness]:
    """Whom to submit to: the witnesses of the current policy, and those of the policy before
    it until each has cosigned a checkpoint covering the entry that replaced it (``cosigned``:
    witness name -> the size it last cosigned)."""
    history = state.witness_policies
    found: dict[str, Witness] = {}
    if len(history) >= 2:
        changed_at = history[-1][0]
        for w in history[-2][1].witnesses:
            if cosigned is None or cosigned.get(w.name, 0) < changed_at:
                found[w.name] = w
    if history:
        for w in history[-1][1].witnesses:
            found[w.name] = w
    return list(found.values())


def _names_witnesses(state: LogState) -> bool:
    """Whether the current witness policy or the one before it names a witness (once true, the
    task runs until the room closes: it also finishes the old policy's witnessing)."""
    return any(policy.witnesses for _, policy in state.witness_policies[-2:])


class Checkpointer:
    """Signs and witnesses one room's checkpoints in a task of its own."""

    def __init__(
        self, room: CheckpointHost, key: nacl.signing.SigningKey, metrics: RelayMetrics, *,
        interval: float = 1.0, timeout: float = 10.0, stored: bytes | None = None,
        clock: Callable[[], float] = time.monotonic, allow_private: bool = False,
    ) -> None:
        self.room = room
        self.signer = note.Ed25519Signer(note.space_origin(room.space), key)
        self.metrics = metrics
        self.interval = interval
        self.timeout = timeout
        self.allow_private = allow_private  # witnesses at private addresses (witness_client.py)
        self._clock = clock
        self.latest: note.SignedCheckpoint | None = None  # the newest signed, with what cosignatures it got
        self.cosigned: note.SignedCheckpoint | None = None  # the newest with at least one cosignature
        self._sizes: dict[str, int] = {}  # witness name -> the size it last cosigned, as far as we know
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        if stored is not None:
            self._take_stored(stored)
        self._grown = asyncio.Event()
        # The task runs only for a space whose log names witnesses: without them a round has no
        # one to submit to, and what a client is given is signed when asked (``sign_now``). A
        # thousand unwitnessed spaces then cost no task, no wake-up and no signature a second.
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.grown()  # a first checkpoint as soon as the room is up

    def _take_stored(self, stored: bytes) -> None:
        try:
            signed = note.SignedCheckpoint.parse(stored)
        except EncspacesError as exc:
            log.warning("%s: the stored checkpoint is unreadable (%s); starting without it", self.room.label, exc)
            return
        self.cosigned = signed
        for sig in signed.note.signatures:
            self._sizes[sig.name] = signed.checkpoint.size

    def grown(self) -> None:
        """The durable log grew: a checkpoint is due if the space has ever named witnesses (O(1),
        from the committer, after the state took the new entries: a commit that adds the first
        witness policy starts the task)."""
        if self._task is None:
            if self._stopped or not _names_witnesses(self.room.state):
                return
            self._task = asyncio.create_task(self._run(), name=f"checkpointer {self.room.label}")
        self._grown.set()

    def current(self) -> bytes | None:
        """What a client is given (welcome, checkpoint_req): the newest cosigned checkpoint if
        there is one, else the newest the relay signed, else None."""
        best = self.cosigned or self.latest
        return None if best is None else best.encode()

    def sign_now(self) -> bytes:
        """What a client is given now (``current``), signing one of the durable tree first if
        the newest signed is older: a welcome before the first round still carries one."""
        if self.latest is None or self.latest.checkpoint.size != self.room.tree.durable_size:
            self.latest = self._sign()
        found = self.current()
        assert found is not None
        return found

    def stop(self) -> None:
        """Cancel the task without waiting (a failed room)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the task -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            wait = self._next_retry()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._grown.wait()
            self._grown.clear()
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: a checkpoint round failed", self.room.label)
            await asyncio.sleep(self.interval)

    def _next_retry(self) -> float | None:
        """Seconds until a witness that still owes a cosignature may be tried again (None: none owes)."""
        if self.latest is None:
            return None
        size = self.latest.checkpoint.size
        owed = [self._retry_at.get(w.name, 0.0) for w in witnesses_of(self.room.state, self._sizes)
                if self._sizes.get(w.name) != size]
        if not owed:
            return None
        return max(0.0, min(owed) - self._clock())

    def _sign(self) -> note.SignedCheckpoint:
        size, root = self.room.tree.durable
        signed = note.SignedCheckpoint.sign(note.Checkpoint(self.signer.name, size, root), self.signer)
        self.metrics.checkpoints.inc()
        return signed

    async def _round(self) -> None:
        if self.latest is None or self.latest.checkpoint.size != self.room.tree.durable_size:
            self.latest = self._sign()
        signed = self.latest
        size = signed.checkpoint.size
        now = self._clock()
        due = [w for w in witnesses_of(self.room.state, self._sizes)
               if self._sizes.get(w.name) != size and self._retry_at.get(w.name, 0.0) <= now]
        if not due:
            return
        answers = await asyncio.gather(*(self._submit(w, signed) for w in due))
        got = [sig for sigs in answers for sig in sigs]
        if not got:
            return
        if self.latest is signed:
            self.latest = signed = signed.with_signatures(got)
        else:  # a newer checkpoint was signed meanwhile (sign_now): keep the cosigned one apart
            signed = signed.with_signatures(got)
        if self.cosigned is None or self.cosigned.checkpoint.size <= size:
            self.cosigned = signed
        data = signed.encode()
        try:
            await self.room.store.save_checkpoint(self.room.space, size, data)
        except Exception as exc:  # kept in memory and pushed anyway; the next cosigned one is stored again
            log.warning("%s: storing the checkpoint of size %d failed: %s", self.room.label, size, exc)
        self.room.push_checkpoint(data)

    async def _submit(self, witness: Witness, signed: note.SignedCheckpoint) -> list[note.NoteSignature]:
        """One witness's cosignature of ``signed``, or [] (failure logged, backoff set)."""
        size = signed.checkpoint.size
        old = self._sizes.get(witness.name, 0)
        for attempt in range(2):
            if old > size:
                return self._failed(witness, f"it cosigned size {old}, past this relay's log of {size}: the "
                                             "relay's log is shorter than what it showed before (restored from a "
                                             "backup?)", unreachable=False)
            proof = await self.room.tree.consistency_proof(self.room.store, self.room.space, old, size)
            try:
                result = await add_checkpoint(witness.url, old, proof, signed, self.timeout,
                                              allow_private=self.allow_private)
            except WitnessUnreachableError as exc:
                return self._failed(witness, str(exc), unreachable=True)
            if result.status == 409 and result.latest_size is not None and attempt == 0:
                old = result.latest_size  # it knows a size we did not: prove from there
                continue
            if result.status != 200:
                return self._failed(witness, f"refused with {result.status}: {result.reason}", unreachable=False)
            verifier = witness.verifier()
            text = signed.note.text.encode()
            good = [s for s in result.signatures
                    if (s.name, s.key_id) == (witness.name, verifier.key_id) and verifier.verify(text, s.signature)]
            if not good:
                return self._failed(witness, "answered without a valid cosignature by its key", unreachable=False)
            if self._failures.pop(witness.name, 0):
                log.info("%s: witness %s cosigns again (size %d)", self.room.label, witness.name, size)
            self._retry_at.pop(witness.name, None)
            self._sizes[witness.name] = size
            self.metrics.witness_submissions.labels("cosigned").inc()
            return good[:1]
        return []  # pragma: no cover (the loop returns)

    def _failed(self, witness: Witness, why: str, *, unreachable: bool) -> list[note.NoteSignature]:
        failures = self._failures.get(witness.name, 0) + 1
        self._failures[witness.name] = failures
        delay = min(MAX_BACKOFF, self.interval * 2 ** (failures - 1))
        self._retry_at[witness.name] = self._clock() + delay
        self.metrics.witness_submissions.labels("unreachable" if unreachable else "refused").inc()
        level = logging.WARNING if failures == 1 else logging.DEBUG
        log.log(level, "%s: witness %s at %s: %s (attempt %d; next in %.0f s)", self.room.label, witness.name,
                witness.url, why, failures, delay)
        return []
