"""One space in memory: its rules state, its live subscribers and its committer.

Every submission of a space goes through one queue and one committer task, so sequencing is
single-threaded by construction. The committer takes everything queued (a *group commit*),
checks each submission against the shared rules (``LogState``), writes all accepted entries
in one transaction with one signed head, and only then acks the submitters and sends the
subscribers one Entries frame, encoded once. Entries that arrive meanwhile form the next
batch, so the fsync cost is shared by however many writers are active.

``lock`` is held for a whole commit (check, write, ack, fan-out). Anything that must see
the log only as it is on disk, or must join the live stream at an exact seq, takes it;
outside it, ``durable_seq`` and ``state.heads[: durable_seq + 1]`` are safe to read.

If the store fails, memory may already be ahead of disk. The room then refuses everyone
and tells the server to forget it; the next connection reloads the space from disk.

On a shared store (PostgreSQL, several relays) another relay may commit to the space first:
the store refuses the commit (``HeadMovedError``, nothing stored), the room reloads the space,
sends its subscribers what the other relay committed, and sequences the batch again on top of
it (encspaces_relay/shared_log.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import nacl.signing
from websockets.asyncio.server import ServerConnection, broadcast

from encspaces.core.codes import RefusalCode
from encspaces.core.devices import device_in_use_message
from encspaces.core.entry import Entry
from encspaces.core.head import SignedHead, next_head
from encspaces.core.identity import member_id
from encspaces.core.invites import verify_auth_proof
from encspaces.core.log_state import LogState
from encspaces.core.messages import Error
from encspaces.errors import (
    AttestationConflictError,
    AuthorSeqGapError,
    EpochError,
    HeadMovedError,
    MembershipChangeError,
    ReplayError,
    RuleError,
)

from .bus import Bus
from .checkpoints import Checkpointer
from .config import RelayConfig
from .frames import split_frames
from .head_signer import HeadSigner
from .metrics import RelayMetrics
from .peer import Peer, PeerGoneError
from .refusals import Refusal, internal
from .shared_log import after_conflict
from .storage import RelayStore
from .store import EntryRow
from .tree import RelayTree

log = logging.getLogger(__name__)



class RoomHost(Protocol):
    """What a room needs from the server: its key, its limits and its (overridable) encoders."""

    @property
    def signing_key(self) -> nacl.signing.SigningKey: ...

    @property
    def head_signer(self) -> HeadSigner: ...

    @property
    def config(self) -> RelayConfig: ...

    @property
    def metrics(self) -> RelayMetrics: ...

    def frames_for_entries(
        self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
    ) -> Sequence[bytes]: ...

    def encode_ack(self, space: bytes, results: list[tuple[int, int]], head: SignedHead | None = None) -> bytes: ...

    def encode_checkpoint(self, space: bytes, note: bytes, id: int | None = None) -> bytes: ...

    def encode_anchor_state(self, space: bytes, seq: int, state: bytes) -> bytes: ...

    def room_failed(self, room: Room) -> None: ...

    @property
    def bus(self) -> Bus: ...


@dataclass(frozen=True)
class Submission:
    """The entries of one Submit frame, already decoded and signature-checked by the session."""

    peer: Peer
    entries: list[Entry]
    weight: int = 0  # its share of the relay's backlog (encspaces_relay/backlog.py), given back when answered


# What the committer answers a submission: (author_seq, seq) pairs, a refusal, or nothing
# (the peer was already refused).
_Answer = list[tuple[int, int]] | Refusal | None
_Found = tuple[int, bytes]  # seq, raw bytes of an entry already sequenced


class Room:
    """A loaded space; created by the server, which forgets it when it fails."""

    def __init__(
        self, host: RoomHost, store: RelayStore, space: bytes, state: LogState, genesis: bytes, latest: SignedHead,
        tree: RelayTree | None = None, checkpoint: bytes | None = None,
    ) -> None:
        self.host = host
        self.store = store
        self.space = space
        self.state = state
        self.genesis = genesis
        self.lock = asyncio.Lock()
        self.subscribers: dict[ServerConnection, Peer] = {}
        # Connections let in with an invite (catching up or live), closed when it stops being open.
        self.invitees: dict[ServerConnection, Peer] = {}
        self.writers: dict[bytes, Peer] = {}  # device key -> its writing connection (claim_writer)
        self.durable_seq = state.seq
        # The newest anchor a new device was sent to: (seq, the catch-up's items up to it, the log
        # state there), rebuilt from the store once per anchor (encspaces_relay/anchors.py).
        self.anchor_catch_up: tuple[int, list[bytes], bytes] | None = None
        if latest.seq != state.seq or latest.head != state.head:
            latest = self._sign(state.seq)  # a head that does not match the log is never served
        self.latest_head = latest
        self.failed = False
        self.closed = False
        self._queue: asyncio.Queue[Submission | None] = asyncio.Queue()
        self._end_seen = False
        # The Merkle tree over the durable log (encspaces_relay/tree.py), and the task that signs and
        # witnesses its checkpoints (encspaces_relay/checkpoints.py): the committer only tells it.
        if tree is None:
            tree = RelayTree()
            tree.extend(self._digests(1, state.seq))
            tree.mark_durable()
        self.tree = tree
        config = host.config
        self.checkpointer = Checkpointer(self, host.signing_key, host.metrics, interval=config.checkpoint_interval,
                                         timeout=config.witness_timeout, stored=checkpoint,
                                         allow_private=config.allow_private_witnesses)
        self._task = asyncio.create_task(self._run(), name=f"committer {self.label}")

    @property
    def label(self) -> str:
        return f"space {member_id(self.space)[:12]}"

    def _digests(self, first: int, last: int) -> list[bytes]:
        """Digests of entries in memory only (a new space: its genesis); a loaded space brings its tree."""
        if last < first:
            return []
        if last > 1:
            raise ValueError(f"{self.label}: a room over {last} entries needs the tree its store built")
        return [Entry.decode(self.genesis).digest()]

    def push_checkpoint(self, note: bytes) -> None:
        """A cosigned checkpoint for every live subscriber (encoded once for all)."""
        frame = self.host.encode_checkpoint(self.space, note)
        if frame:
            self._fan_out(frame)

    def durable_grew(self, rows: Sequence[EntryRow]) -> None:
        """Entries another relay committed are durable here too: the tree takes them in."""
        self.tree.extend(row.digest for row in rows)
        self.tree.mark_durable()
        self.checkpointer.grown()

    # --- heads ------------------------------------------------------------------------------

    def signed_head(self, seq: int) -> SignedHead:
        """A signed head at a durable ``seq``: the stored latest one, or signed now from h(seq)."""
        if seq == self.latest_head.seq:
            return self.latest_head
        if not 0 <= seq <= self.durable_seq:
            raise ValueError(f"{self.label}: no durable head at seq {seq} (durable through {self.durable_seq})")
        return self._sign(seq)

    def _sign(self, seq: int) -> SignedHead:
        return SignedHead.create(self.host.signing_key, self.space, seq, self.state.heads[seq])

    # --- admission and subscribers ------------------------------------------------------------

    async def admit(
        self, member: bytes, since_seq: int, invite: tuple[bytes, bytes] | None = None, auth: bytes = b"",
        peer: Peer | None = None,
    ) -> tuple[SignedHead, SignedHead | None]:
        """Check membership (or a newcomer's invite) against the durable log; the Welcome's head and anchor.

        A newcomer is let in only to read and submit its join entry: the shared rules refuse
        anything else from a non-member, so no special mode is needed beyond the door. Its
        ``peer`` is tracked from here on (under the lock, so no commit slips in between): once
        the invite is revoked or used up and it is still not a member, it is closed.
        """
        async with self.lock:
            if self.failed:
                raise internal("the space is being reloaded after a storage failure: reconnect")
            if member not in self.state.device_owner:
                self._check_invite(member, invite, auth)
                if peer is not None and invite is not None:
                    peer.invite = invite[0]
                    self.invitees[peer.ws] = peer
            anchor = self.signed_head(since_seq) if 1 <= since_seq <= self.durable_seq else None
            # Signed now: its time tells the client how fresh its view is (the removal window).
            return self._sign(self.latest_head.seq), anchor

    def _check_invite(self, member: bytes, invite: tuple[bytes, bytes] | None, auth: bytes) -> None:
        if invite is None:
            raise Refusal(RefusalCode.NOT_A_MEMBER, f"{member_id(member)} is not a member of {self.label}")
        key, proof = invite
        found = self.state.invites.get(key)
        name = member_id(key)[:12]
        if found is None or not verify_auth_proof(key, auth, proof):
            raise Refusal(RefusalCode.BAD_INVITE, f"no invite {name} in {self.label} that this proof answers")
        if found.revoked:
            raise Refusal(RefusalCode.BAD_INVITE, f"invite {name} was revoked")
        if not found.open:
            raise Refusal(RefusalCode.BAD_INVITE, f"invite {name} is used up ({found.used} of {found.uses})")
        if found.expired_at(int(time.time() * 1000)):
            raise Refusal(RefusalCode.BAD_INVITE, f"invite {name} has expired")

    def close_members(self, removed: set[bytes]) -> None:
        """A member was removed: close their live connections at once."""
        for peer in list(self.subscribers.values()):
            if peer.member in removed:
                self.unsubscribe(peer)
                peer.refuse_now(Refusal(RefusalCode.REMOVED, f"{member_id(peer.member)} was removed from {self.label}"))

    def close_invitees(self) -> None:
        """Close every connection let in with an invite that is no longer open (revoked or used up),
        unless it has joined meanwhile: what is written next is not for it."""
        for peer in list(self.invitees.values()):
            if peer.member in self.state.device_owner:
                del self.invitees[peer.ws]  # joined: a member like any other from now on
                continue
            invite = self.state.invites.get(peer.invite or b"")
            if invite is None or invite.open:
                continue
            self.unsubscribe(peer)
            why = "was revoked" if invite.revoked else f"is used up ({invite.used} of {invite.uses})"
            peer.refuse_now(Refusal(RefusalCode.BAD_INVITE, f"invite {member_id(invite.key)[:12]} {why}: "
                                                            f"this connection was let in with it"))

    def subscribe(self, peer: Peer) -> None:
        """Join the live stream; the caller holds ``lock`` and has sent everything up to ``durable_seq``."""
        if self.failed:
            raise internal("the space is being reloaded after a storage failure: reconnect")
        if peer.failed:
            raise PeerGoneError(f"{peer.name} was refused while catching up")
        self.subscribers[peer.ws] = peer

    def unsubscribe(self, peer: Peer) -> None:
        self.subscribers.pop(peer.ws, None)
        self.invitees.pop(peer.ws, None)
        if peer.member is not None and self.writers.get(peer.member) is peer:
            del self.writers[peer.member]

    def claim_writer(self, peer: Peer) -> None:
        """One writing connection per device key: a second machine with a copied identity file that
        submits while the first is connected and writing is refused (``device_in_use``).

        Reading from two connections is harmless, and refusing it would also refuse this device's own
        reconnection while the relay has not yet noticed the old connection is gone.
        """
        member = peer.member
        assert member is not None
        holder = self.writers.get(member)
        if holder is not None and holder is not peer and not holder.failed and holder.ws in self.subscribers:
            raise Refusal(RefusalCode.DEVICE_IN_USE, device_in_use_message(member, self.label))
        self.writers[member] = peer

    # --- submissions --------------------------------------------------------------------------

    def submit(self, submission: Submission) -> bool:
        """Queue for the next commit; False when the room no longer takes submissions."""
        if self.closed or self.failed:
            return False
        self._queue.put_nowait(submission)
        return True

    def queued(self) -> int:
        """Submissions waiting for the committer (tests use it to build a batch on purpose)."""
        return self._queue.qsize()

    async def close(self) -> None:
        """Commit everything already queued, then stop the committer."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)
        await asyncio.shield(self._task)
        await self.checkpointer.close()

    # --- the committer ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self.failed:
                batch = await self._next_batch()
                if batch is None:
                    return
                async with self.lock:
                    await self._commit(batch)
        except Exception as exc:  # a bug: memory may be ahead of disk, same cure as a store failure
            log.exception("%s: the committer failed", self.label)
            self._fail(f"the relay failed while sequencing ({type(exc).__name__})")
        finally:
            self._refuse_queued()

    async def _next_batch(self) -> list[Submission] | None:
        if self._end_seen:
            return None
        first = await self._queue.get()
        if first is None:
            return None
        batch = [first]
        count = len(first.entries)
        while count < self.host.config.max_entries_per_commit and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._end_seen = True
                break
            batch.append(item)
            count += len(item.entries)
        return batch

    async def _commit(self, batch: list[Submission], attempt: int = 0) -> None:
        answered = 0  # every submission is answered exactly once, whatever happens
        members_before = set(self.state.device_owner)
        try:
            first_seq = self.state.seq + 1
            rows: list[EntryRow] = []
            in_batch: dict[tuple[bytes, int], _Found] = {}
            answers: list[_Answer] = []
            for submission in batch:
                if submission.peer.failed:
                    answers.append(None)
                    continue
                try:
                    answers.append(await self._sequence(submission.entries, rows, in_batch))
                except EpochError as exc:
                    # Written before the client saw a rotation: it re-encrypts and resends.
                    log.info("%s: %s: stale epoch: %s", self.label, submission.peer.name, exc)
                    answers.append(Refusal(RefusalCode.STALE_EPOCH, str(exc)))
                except AuthorSeqGapError as exc:
                    # Follows a submission refused without closing: the client numbers again and resends.
                    log.info("%s: %s: gap: %s", self.label, submission.peer.name, exc)
                    answers.append(Refusal(RefusalCode.GAP, str(exc), ref=exc.author_seq))
                except Refusal as refusal:  # device_in_use: an equivocation (_resent_seq)
                    log.info("%s: %s: %s", self.label, submission.peer.name, refusal)
                    answers.append(refusal)
                except (MembershipChangeError, AttestationConflictError) as exc:
                    # Another admin's change, or another device of the same person's attestation,
                    # got there first: an honest race, not an attack.
                    log.info("%s: %s: conflict: %s", self.label, submission.peer.name, exc)
                    answers.append(Refusal(RefusalCode.CONFLICT, str(exc), ref=exc.author_seq))
                except RuleError as exc:
                    log.info("%s: %s: entry rejected: %s", self.label, submission.peer.name, exc)
                    answers.append(Refusal(RefusalCode.REJECTED, str(exc)))
            frames: list[tuple[int, list[bytes], SignedHead]] = []
            if rows:
                started = time.perf_counter()
                nodes = self.tree.extend(row.digest for row in rows)  # O(1) amortised per entry
                cuts = self._cuts(rows)
                try:
                    # Each frame's head is signed by the group commit that stores them.
                    heads = await self.store.append(self.space, rows, [end for _, end in cuts],
                                                    self.host.head_signer, nodes)
                except HeadMovedError as exc:
                    self.tree.rollback()
                    answered = len(batch)  # after_conflict answers every submission
                    await after_conflict(self, batch, exc, attempt, members_before)
                    return
                except Exception as exc:
                    log.exception("%s: storing %d entries failed", self.label, len(rows))
                    self._fail(f"the relay could not store entries ({type(exc).__name__}): reconnect and resubmit")
                    return
                frames = self._framed(rows, cuts, heads)
                self.durable_seq = self.state.seq
                self.latest_head = heads[-1]
                self.tree.mark_durable()
                self.checkpointer.grown()  # never waits: the checkpointer signs and witnesses in its own task
                metrics = self.host.metrics
                metrics.commits.observe(time.perf_counter() - started)
                metrics.entries.inc(len(rows))
            # A subscriber's acks go out with the first frame it is sent (one socket write), unless
            # an invitee may be closed in between (then every ack is written first, as it comes).
            held: dict[ServerConnection, list[bytes]] | None = {} if rows and not self.invitees else None
            for submission, answer in zip(batch, answers, strict=True):
                answered += 1
                self._answer(submission, answer, held)
            if rows and self.invitees:
                self.close_invitees()  # before the fan-out: nothing after a revocation reaches them
            for first, entries, head in frames:
                for frame in self.host.frames_for_entries(self.space, first, entries, head):
                    self._fan_out(frame, held)
                    held = None
            if held:  # no frame was sent (a hook dropped them)
                for ws, acks in held.items():
                    self._write(self.subscribers.get(ws), acks)
            if rows:  # the other relays of a cluster fan it out too (encspaces_relay/bus.py); never blocks
                self.host.bus.publish(self.space, first_seq, [row.raw for row in rows], frames[-1][2])
            removed = members_before - self.state.device_owner.keys()
            if removed:
                self.close_members(removed)
        finally:
            for submission in batch[answered:]:
                self._answer(submission, internal("the relay could not sequence this submission: resubmit"))

    async def _sequence(
        self, entries: list[Entry], rows: list[EntryRow], in_batch: dict[tuple[bytes, int], _Found]
    ) -> list[tuple[int, int]]:
        """Check and apply one submission, all or nothing; its (author_seq, seq) pairs."""
        state = self.state
        added: list[EntryRow] = []
        mine: dict[tuple[bytes, int], _Found] = {}
        results: list[tuple[int, int]] = []
        state.begin()
        try:
            for entry in entries:
                h = entry.header
                key = (h.author, h.author_seq)
                if h.author_seq <= state.author_seqs.get(h.author, 0):
                    found = mine.get(key) or in_batch.get(key) or await self.store.find_entry(self.space, *key)
                    results.append((h.author_seq, self._resent_seq(entry, found)))
                    continue
                seq = state.seq + 1
                try:
                    state.check(entry, seq)
                except RuleError as exc:
                    exc.author_seq = h.author_seq  # names the entry to blame
                    raise
                digest = entry.digest()
                head = next_head(state.head, seq, digest)
                state.apply(entry, seq, head)
                added.append(EntryRow(seq, h.author, h.author_seq, digest, head, entry.raw))
                mine[key] = (seq, entry.raw)
                results.append((h.author_seq, seq))
        except BaseException:
            state.rollback()
            raise
        state.commit()
        rows.extend(added)
        in_batch.update(mine)
        return results

    def _resent_seq(self, entry: Entry, found: _Found | None) -> int:
        """The seq of an entry sent again (a retry after a lost ack); equivocation is refused."""
        h = entry.header
        if found is None:
            raise ReplayError(f"{entry.describe()}: replayed, but the relay has no such entry stored")
        seq, raw = found
        if raw != entry.raw:
            # Two machines with one device key (a copied identity file), not a forgery: the signature
            # is the device's. Fatal but not permanent: the client reconnects, verifies the other
            # machine's entry, numbers its own after it and says DeviceKeyInUseError (docs/PROTOCOL.md §19).
            raise Refusal(RefusalCode.DEVICE_IN_USE,
                          f"{entry.describe()}: equivocation: author {entry.author_id} already has author_seq "
                          f"{h.author_seq} at seq {seq}, with other content; "
                          + device_in_use_message(h.author, self.label))
        return seq

    def _cuts(self, rows: list[EntryRow]) -> list[tuple[int, int]]:
        """Where ``rows`` are cut into deliverable frames: (start, end) row indexes."""
        config = self.host.config
        return split_frames([row.raw for row in rows], config.max_frame, config.max_entries_per_frame)

    @staticmethod
    def _framed(rows: list[EntryRow], cuts: list[tuple[int, int]],
                heads: list[SignedHead]) -> list[tuple[int, list[bytes], SignedHead]]:
        return [(rows[start].seq, [row.raw for row in rows[start:end]], head)
                for (start, end), head in zip(cuts, heads, strict=True)]

    async def _frames(self, rows: list[EntryRow]) -> list[tuple[int, list[bytes], SignedHead]]:
        """Entries another relay stored (encspaces_relay/shared_log.py) cut into frames, each
        with a head signed at its last seq, with the heads other rooms ask for meanwhile."""
        cuts = self._cuts(rows)
        heads = await self.host.head_signer.sign_soon(
            [(self.space, rows[end - 1].seq, rows[end - 1].head) for _, end in cuts])
        return self._framed(rows, cuts, heads)

    def _answer(self, submission: Submission, answer: _Answer,
                held: dict[ServerConnection, list[bytes]] | None = None) -> None:
        """Answer one submission; an ack to a subscriber goes into ``held`` when given (sent with
        the commit's first frame), every other answer is written now."""
        peer = submission.peer
        try:
            if held and isinstance(answer, Refusal) and peer.ws in held:
                peer.write_now(*held.pop(peer.ws))  # its earlier acks first, in order
            if isinstance(answer, Refusal) and not answer.code.fatal:  # stale_epoch, conflict, gap, contended
                peer.count_refusal(answer.code)
                peer.write_now(Error(answer.code, answer.message, fatal=False, ref=answer.ref).encode())
            elif isinstance(answer, Refusal):
                self.unsubscribe(peer)
                peer.refuse_now(answer)
            elif answer is not None and not peer.failed:
                ack = self.host.encode_ack(self.space, answer, self.latest_head)
                if held is not None and self.subscribers.get(peer.ws) is peer:
                    held.setdefault(peer.ws, []).append(ack)
                else:
                    peer.write_now(ack)
        except PeerGoneError:
            self.unsubscribe(peer)
        finally:
            peer.answered(submission.weight)

    def _write(self, peer: Peer | None, messages: list[bytes]) -> None:
        if peer is None:
            return
        try:
            peer.write_now(*messages)
        except PeerGoneError:
            self.unsubscribe(peer)

    def _fan_out(self, frame: bytes, held: dict[ServerConnection, list[bytes]] | None = None) -> None:
        """One frame to every subscriber (encoded once); a subscriber with ``held`` acks gets them
        and the frame in one write.

        The other subscribers first, the submitters after: each socket write on loopback wakes its
        reader, and the woken process can take this core from the relay for the time it spends
        on what it got (~0.7 ms: a writer's ack and frame verified and stored), so whoever is
        written first is served that much sooner (bench/README.md, "Latency of one edit"). The
        submitter already shows its edit; the others are the ones waiting for it.
        """
        if not self.subscribers:
            return
        if held:
            broadcast([ws for ws in self.subscribers if ws not in held], frame)
            for ws, acks in held.items():
                self._write(self.subscribers.get(ws), [*acks, frame])
        else:
            broadcast(self.subscribers, frame)
        for peer in list(self.subscribers.values()):
            if not peer.within_bound():
                self.unsubscribe(peer)

    def forward_presence(self, sender: Peer, frame: bytes) -> None:
        """Send a presence frame to every other subscriber that is keeping up; never stored."""
        if not frame:
            return
        skip = self.host.config.presence_skip_buffered
        receivers = [ws for ws, peer in self.subscribers.items()
                     if peer is not sender and peer.is_open and peer.buffered_bytes() <= skip]
        if receivers:
            broadcast(receivers, frame)

    # --- failure ------------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        if self.failed:
            return
        self.failed = True
        self.checkpointer.stop()
        log.error("%s: %s; closing its %d connections, it will be reloaded from disk",
                  self.label, reason, len(self.subscribers))
        self.host.room_failed(self)
        for peer in list(self.subscribers.values()):
            peer.refuse_now(internal(reason))
        self.subscribers.clear()

    def _refuse_queued(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                self._answer(item, internal("the space is being reloaded after a storage failure: resubmit"))
