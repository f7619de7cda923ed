"""A space's witness watch: the asyncio half of the witnessed log (encspaces.core.witnessing is the pure half).

It feeds the verifier's :class:`~encspaces.core.witnessing.WitnessTracker` what only I/O brings:

- checkpoints the relay sends (in its welcome, pushed once cosigned) and its answers to the
  consistency proofs the tracker asks for;
- the witnesses' own newest checkpoints, fetched directly over HTTP (encspaces/witness_client.py)
  on connect and every ``SpaceOptions.witness_poll_interval`` seconds, so a relay that shows
  members different logs cannot filter what they learn from the witnesses;
- the time: every ``maintenance_interval`` it checks the tracker's deadlines while live
  (time offline or catching up is not withholding: a new connection, and becoming live, restart them).

Nothing here runs on the path of an edit: polls run in their own task owned by the space's
``TaskOwner``. A witness that is down only delays ``witnessed_seq`` (logged); a note a witness
serves that is not the relay's checkpoint is ignored (a lying witness cannot fail the space);
a contradiction the relay signed fails the space with the tracker's error and its evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from .core.messages import CheckpointReq, Consistency, ConsistencyReq, ProofRefused, ProofReply
from .core.witnessing import ProofRequest, WitnessStatus, WitnessTracker
from .errors import EncspacesError, NoteError, RelaySignatureError, VerificationError, WitnessUnreachableError
from .witness_client import fetch_checkpoint

if TYPE_CHECKING:
    from .host import SpaceHost

log = logging.getLogger(__name__)


class WitnessWatch:
    """Created by the Space and wired through its ``SpaceHost`` (encspaces/host.py)."""

    def __init__(self, host: SpaceHost) -> None:
        self._host = host
        self._options = host.options
        self._next_id = 1
        self._asked: dict[int, ProofRequest] = {}  # request id -> what it asked
        self._queued: list[ProofRequest] = []  # asked before the session was live
        self._asked_latest: dict[int, bool] = {}  # checkpoint_req ids
        self._task: asyncio.Task[None] | None = None
        self._poll_now = asyncio.Event()
        self.polls = 0  # completed rounds of witness polls (join waits for one)
        self._polled = asyncio.Event()
        self._settled = asyncio.Event()
        self.last_poll: dict[str, bytes | EncspacesError | None] = {}  # url -> note, None (404) or the failure

    @property
    def tracker(self) -> WitnessTracker:
        tracker = self._host.verifier.witness
        tracker.clock = self._options.clock.monotonic
        tracker.deadline = self._options.witness_deadline
        return tracker

    def status(self) -> WitnessStatus:
        return self.tracker.status()

    def start(self) -> None:
        self._task = self._host.tasks.spawn(self._run(), "the witness watch")

    # --- from the connection -----------------------------------------------------------------

    def connection_started(self) -> None:
        """A new session: deadlines start now, the proofs asked on the last one are asked again
        once it is live, and the witnesses are asked at once."""
        self._asked.clear()
        self._asked_latest.clear()
        self._queued = self.tracker.restart_deadlines()
        self._poll_now.set()

    def live(self) -> None:
        """Caught up with the relay's head: deadlines count from now (a long catch-up of an honest
        relay is not withholding; deadlines are only checked while live), queued proofs go out."""
        self.tracker.restart_deadlines()
        queued, self._queued = self._queued, []
        for request in queued:
            self._ask(request)

    def checkpoint(self, note: bytes, ref: int | None = None) -> None:
        """A checkpoint from the relay: its signature must verify (it is the relay's own word).
        The answer to our ``checkpoint_req`` (``ref``) is its newest: not smaller than any it signed."""
        latest = ref is not None and self._asked_latest.pop(ref, False)
        try:
            requests = self.tracker.add_latest(note) if latest else self.tracker.add_checkpoint(note)
        except VerificationError as exc:
            self._host.fail(exc)
            return
        for request in requests:
            self._ask(request)
        self._after_change()

    def proof_reply(self, reply: ProofReply) -> None:
        request = self._asked.pop(reply.id, None)
        if self._asked_latest.pop(reply.id, False):
            log.info("the relay refused to send its newest checkpoint: %s", reply)
            return
        if request is None:
            return  # an answer to a request of an earlier connection, or an inclusion proof nobody asked for
        if isinstance(reply, ProofRefused):
            # The tracker's deadline decides: a relay that never proves is withholding.
            log.info("the relay refused the consistency proof %d -> %d: %s %s",
                     request.first, request.second, reply.code, reply.message)
            return
        if not isinstance(reply, Consistency) or (reply.first, reply.second) != (request.first, request.second):
            log.info("the relay answered consistency request %d with another proof", reply.id)
            return
        try:
            self.tracker.add_consistency_proof(reply.first, reply.second, reply.proof)
        except VerificationError as exc:
            self._host.fail(exc)
            return
        self._after_change()

    def verified(self) -> None:
        """Entries were verified (the tracker grew with them): wake who waits for settling."""
        self._after_change()

    # --- waiting -----------------------------------------------------------------------------

    async def wait_settled(self) -> None:
        """Until one round of witness polls is done and the log we verified is at least as new as
        every checkpoint heard of (the relay's and the witnesses'), and consistent with them.
        The tracker's deadline turns a relay that cannot deliver into the space's failure."""
        if self.tracker.witnessed_seq is None:
            return
        while True:
            self._host.raise_if_failed()
            if self._host.closed or (self.polls and self.tracker.settled):
                return
            self._settled.clear()
            await self._settled.wait()

    # --- internals ---------------------------------------------------------------------------

    def wake(self) -> None:
        """The space failed or closed: whoever waits in :meth:`wait_settled` looks again."""
        self._settled.set()

    def _after_change(self) -> None:
        if self.tracker.settled:
            self._settled.set()

    def _new_id(self) -> int:
        ref = self._next_id
        self._next_id = ref % 0xFFFFFFFF + 1
        return ref

    def _ask(self, request: ProofRequest) -> None:
        session = self._host.live_session()
        if session is None:
            self._queued.append(request)  # sent once live
            return
        ref = self._new_id()
        self._asked[ref] = request
        self._host.send(session.proof_request(ConsistencyReq(ref, request.first, request.second)))

    def _ask_latest(self) -> None:
        """A witness told of a checkpoint past the relay's last head: the relay's newest one must
        be at least as large, or it went back to an older log (CheckpointRollbackError)."""
        session = self._host.live_session()
        if session is None:
            return  # the next welcome's head and checkpoint are checked anyway
        ref = self._new_id()
        self._asked_latest[ref] = True
        self._host.send(session.proof_request(CheckpointReq(ref)))

    async def _run(self) -> None:
        options = self._options
        clock = options.clock
        next_poll = clock.monotonic()
        while not self._host.closed and self._host.error is None:
            policy = self._host.verifier.state.witness_policy
            due = self._poll_now.is_set() or clock.monotonic() >= next_poll
            self._poll_now.clear()
            if policy.enabled and due:
                await self._poll([w.url for w in policy.witnesses])
                next_poll = clock.monotonic() + options.witness_poll_interval
            if self._host.live_session() is not None:
                try:
                    self.tracker.check_deadlines()
                except VerificationError as exc:
                    self._host.fail(exc)
                    self._settled.set()
                    return
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(options.maintenance_interval):
                    await self._poll_now.wait()

    async def _poll(self, urls: list[str]) -> None:
        origin = self.tracker.origin
        timeout = self._options.witness_timeout
        results = await asyncio.gather(*(fetch_checkpoint(url, origin, timeout=timeout) for url in urls),
                                       return_exceptions=True)
        for url, result in zip(urls, results, strict=True):
            if isinstance(result, WitnessUnreachableError):
                log.info("%s (witnessing is delayed, editing is not)", result)
                self.last_poll[url] = result
                continue
            if isinstance(result, BaseException):
                raise result
            self.last_poll[url] = result
            if result is None:
                continue
            try:
                requests = self.tracker.add_checkpoint(result, from_witness=True)
            except (NoteError, RelaySignatureError) as exc:
                # Not the relay's checkpoint of this space: the witness's fault, not the relay's.
                log.warning("witness %s served a note that is not this space's checkpoint: %s", url, exc)
                continue
            except VerificationError as exc:
                self._host.fail(exc)
                self._settled.set()
                return
            for request in requests:
                self._ask(request)
        self.polls += 1
        tracker = self.tracker
        if tracker.reported_size > max(tracker.head_seq, tracker.verified):
            self._ask_latest()
        self._after_change()


__all__ = ["WitnessWatch"]
