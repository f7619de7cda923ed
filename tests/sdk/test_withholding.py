"""A relay that signs a head past what it delivers is held to a deadline: never "catching up" for ever.

Each lying relay below is the real RelayServer with one hook overridden, over a real websocket.
The deadline runs on the space's injected clock (``ManualClock``): the tests jump it past
``SpaceOptions.withholding_deadline`` instead of sleeping 30 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import encspaces
from encspaces import ManualClock, SpaceOptions, errors
from encspaces.core import crypto, evidence
from encspaces.core.encoding import unpack
from encspaces.core.head import SignedHead
from encspaces.core.messages import Presence
from encspaces.local import load_evidence
from encspaces.store import LocalStore
from encspaces_relay.room import Room, Submission
from encspaces_relay.server import RelayServer
from tests.support import Intercept, InterceptingRelay, assert_fork_at, swallow

from .conftest import RelayHandle, wait_for


class WithholdingRelay(RelayServer):
    """Honest until a test sets one of its lies."""

    welcome_ahead = 0  # the welcome announces a head this many seqs past the real one (never served)
    ack_ahead = 0  # acks carry a head this many seqs past the real one (never served)
    drop_presence = False

    variant = 0  # made-up heads at one seq differ when this does

    def fabricated(self, space: bytes, seq: int) -> SignedHead:
        """A head the relay signs (validly) for a seq it has no entry for."""
        return SignedHead.create(self.signing_key, space, seq, crypto.hash_parts(b"never served", seq, self.variant))

    def encode_welcome(self, space: bytes, head: SignedHead, anchor: SignedHead | None) -> bytes:
        if self.welcome_ahead:
            head = self.fabricated(space, head.seq + self.welcome_ahead)
        return super().encode_welcome(space, head, anchor)

    def encode_ack(self, space: bytes, results: list[tuple[int, int]], head: SignedHead | None = None) -> bytes:
        if self.ack_ahead and head is not None:
            head = self.fabricated(space, head.seq + self.ack_ahead)
        return super().encode_ack(space, results, head)

    def encode_presence(self, space: bytes, presence: Presence) -> bytes:
        return b"" if self.drop_presence else super().encode_presence(space, presence)


@pytest.fixture
async def lying(tmp_path: Path):  # type: ignore[no-untyped-def]
    handle = RelayHandle(tmp_path / "relay", WithholdingRelay)
    server = await handle.start()
    assert isinstance(server, WithholdingRelay)
    try:
        yield handle, server
    finally:
        await handle.stop()


def options(clock: ManualClock) -> SpaceOptions:
    return SpaceOptions(clock=clock, maintenance_interval=0.02)


async def check_recorded(space: encspaces.Space, data_dir: Path, seq: int, verified: int) -> None:
    """After close: the evidence file in the store checks, and proves the relay signed ``seq``."""
    error = space.error
    assert isinstance(error, errors.WithholdingError)
    assert (error.seq, error.verified) == (seq, verified)
    assert SignedHead.decode(unpack(error.evidence[0])).seq == seq  # the relay's head past ours, in full
    assert SignedHead.decode(unpack(error.evidence[1])).seq == verified  # and the newest one we verified
    data = await load_evidence(space.id, data_dir=data_dir)
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.WITHHOLDING
    assert finding.seq == seq and finding.bound
    assert f"seq {verified}" in finding.reported


async def test_welcome_head_never_served(lying, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    handle, server = lying
    clock = ManualClock()
    alice = await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a",
                                         options=options(clock))
    alice.text("doc").insert(0, "verified text")
    await alice.sync()
    seq, space_id, identity = alice.seq, alice.id, alice.identity
    await alice.close()

    server.welcome_ahead = 3
    again = await encspaces.connect(handle.url, identity, space_id, data_dir=tmp_path / "a", options=options(clock))
    try:
        await wait_for(lambda: again.relay_seq == seq + 3, what="the welcome announcing a head past ours")
        assert not again.connected and again.error is None  # catching up, so far within the deadline
        clock.advance(31)
        await wait_for(lambda: again.error is not None, what="the withholding deadline")
        assert isinstance(again.error, errors.WithholdingError)
        assert f"through seq {seq + 3} (in its welcome)" in str(again.error)
        assert again.seq == seq and str(again.text("doc")) == "verified text"
        with pytest.raises(errors.WithholdingError):
            again.text("doc").insert(0, "x")
    finally:
        await again.close()
    await check_recorded(again, tmp_path / "a", seq + 3, seq)


async def test_ack_head_never_served(lying, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    handle, server = lying
    clock = ManualClock()
    alice = await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a",
                                         options=options(clock))
    try:
        server.ack_ahead = 2
        alice.text("doc").insert(0, "hello")
        await alice.sync()  # the entry itself is delivered: progress, but the acked head is 2 past it
        seq = alice.seq
        assert alice.error is None
        clock.advance(31)
        await wait_for(lambda: alice.error is not None, what="the withholding deadline")
        assert isinstance(alice.error, errors.WithholdingError)
        assert f"through seq {seq + 2} (in its ack)" in str(alice.error)
        assert alice.seq == seq
    finally:
        await alice.close()
    await check_recorded(alice, tmp_path / "a", seq + 2, seq)


async def test_tail_withheld_from_its_author_with_presence_filtered(lying, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    handle, server = lying
    clock = ManualClock()
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice = await encspaces.create_space(handle.url, alice_id, data_dir=tmp_path / "a", options=options(clock))
    await alice.add_member(bob_id.public)
    bob = await encspaces.connect(handle.url, bob_id, alice.id, data_dir=tmp_path / "b")
    try:
        alice.text("doc").insert(0, "common. ")
        await alice.sync()
        await wait_for(lambda: str(bob.text("doc")) == "common. ", what="bob to see the common text")
        await alice.wait_connected(5)
        seq = alice.seq
        # The lie: presence is filtered, and Alice's connection gets nothing live any more (Bob does).
        server.drop_presence = True
        room = server.rooms[alice.space_bytes]
        (peer,) = [p for p in room.subscribers.values() if p.member == alice_id.public.sign_key]
        room.unsubscribe(peer)
        alice.text("doc").insert(len(alice.text("doc")), "alice's tail.")
        await wait_for(lambda: "tail" in str(bob.text("doc")), what="bob to receive the tail")
        await wait_for(lambda: room.state.seq == seq + 1, what="the relay to sequence the tail")
        assert alice.seq == seq and alice.error is None  # acked (head seq + 1), never delivered
        clock.advance(31)
        await wait_for(lambda: alice.error is not None, what="alice's withholding deadline")
        assert isinstance(alice.error, errors.WithholdingError)
        assert f"seqs {seq + 1}..{seq + 1}" in str(alice.error)
        assert alice.seq == seq
        assert bob.error is None
    finally:
        await alice.close()
        await bob.close()
    await check_recorded(alice, tmp_path / "a", seq + 1, seq)



def ack_under_current_head(into: list[Submission]) -> Intercept:
    """Answer every submission with an ack naming seqs past the log, under the room's current
    head (validly signed, not past the submitter's log), and sequence nothing."""

    def intercept(room: Room, submission: Submission) -> bool:
        into.append(submission)
        room._answer(submission, [(e.header.author_seq, room.state.seq + 1 + i)
                                  for i, e in enumerate(submission.entries)])
        return True

    return intercept


@pytest.mark.parametrize("answer", ["none", "stale ack"])
async def test_submissions_neither_sequenced_nor_refused_are_not_left_silently_unsent(
        tmp_path: Path, answer: str) -> None:
    """The relay takes Alice's edit and never sequences it: it does not answer at all, or it acks
    under a head that is not past her log, so no signed head is held to the deadline. After the
    deadline live, her space reconnects and sends the entry again; after it again, the space
    fails with SubmissionWithheldError naming the entry. Nothing she wrote is lost: reopened on
    an honest relay, her stored outbox delivers it."""
    handle = RelayHandle(tmp_path / "relay", InterceptingRelay)
    server = await handle.start()
    assert isinstance(server, InterceptingRelay)
    clock = ManualClock()
    ident = encspaces.Identity.generate()
    # (The manual clock runs ahead of the relay's: the view's freshness is not what is tested.)
    opts = SpaceOptions(clock=clock, maintenance_interval=0.02, freshness_limit=3600)
    alice = await encspaces.create_space(handle.url, ident, data_dir=tmp_path / "a", options=opts)
    try:
        alice.text("doc").insert(0, "kept. ")
        await alice.sync()
        seq, author_seq = alice.seq, alice.state.author_seqs[ident.public.sign_key]
        taken: list[Submission] = []
        server.intercept = (swallow(ident.public.sign_key, taken) if answer == "none"
                            else ack_under_current_head(taken))
        alice.text("doc").insert(6, "swallowed.")
        await wait_for(lambda: len(taken) == 1, what="the relay to take the edit")
        clock.advance(31)
        await wait_for(lambda: len(taken) == 2, what="alice to reconnect and send it again")
        assert alice.error is None
        assert [e.raw for e in taken[1].entries] == [e.raw for e in taken[0].entries]
        clock.advance(31)
        await wait_for(lambda: alice.error is not None, what="the deadline after the resend")
        error = alice.error
        assert isinstance(error, errors.SubmissionWithheldError) and isinstance(error, errors.WithheldEntriesError)
        assert (error.author_seq, error.verified) == (author_seq + 1, seq)
        assert f"author_seq {author_seq + 1}" in str(error)
        assert alice.seq == seq and server.rooms[alice.space_bytes].state.seq == seq
    finally:
        await alice.close()
    server.intercept = None
    alice = await encspaces.connect(handle.url, ident, alice.id, data_dir=tmp_path / "a")
    try:
        await alice.sync()
        assert str(alice.text("doc")) == "kept. swallowed."
        assert server.rooms[alice.space_bytes].state.seq == seq + 1
    finally:
        await alice.close()
        await handle.stop()


async def acked_one_past(server: WithholdingRelay, alice: encspaces.Space) -> int:
    """Alice's edit acked under a head the relay signs one seq past it, over a made-up hash; her seq."""
    alice.text("doc").insert(0, "one. ")
    await alice.sync()
    server.ack_ahead = 1
    alice.text("doc").insert(5, "two. ")
    await alice.sync()
    server.ack_ahead = 0
    return alice.seq


async def two_heads_at(alice: encspaces.Space, seq: int) -> errors.ForkError:
    """Alice's space failed with the fork at ``seq``, the held ack head and the other as evidence."""
    await wait_for(lambda: alice.error is not None, what="alice to see the two heads at one seq")
    error = alice.error
    assert isinstance(error, errors.ForkError)
    assert_fork_at(error, seq, "ack")
    assert [SignedHead.decode(unpack(raw)).seq for raw in error.evidence] == [seq, seq]
    return error


async def fork_evidence_stored(alice: encspaces.Space, data_dir: Path, seq: int) -> None:
    data = await load_evidence(alice.id, data_dir=data_dir)
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.FORK and finding.seq == seq and finding.bound


async def test_an_ack_head_the_log_later_contradicts_is_a_fork(lying, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The relay acks Alice's edit under a head it signs for the next seq, then serves a log whose
    head there is another: it signed two histories for one seq. Before, reaching that seq only
    cleared the held head (as progress) and the contradiction went unnoticed."""
    handle, server = lying
    alice = await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    try:
        seq = await acked_one_past(server, alice)
        alice.text("doc").insert(10, "three.")  # sequenced at seq + 1, where the relay signed another hash
        await two_heads_at(alice, seq + 1)
        assert alice.seq == seq and str(alice.text("doc")) == "one. two. three."  # (typed, never verified)
    finally:
        await alice.close()
    await fork_evidence_stored(alice, tmp_path / "a", seq + 1)


async def test_an_ack_head_held_across_a_restart_still_proves_the_fork(lying, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """As above, with Alice's device closed and reopened between the ack and the contradicting
    log. Before, the head past her log was held in memory only: after the restart the relay's
    other history at that seq was accepted without a word."""
    handle, server = lying
    ident = encspaces.Identity.generate()
    alice = await encspaces.create_space(handle.url, ident, data_dir=tmp_path / "a")
    try:
        seq = await acked_one_past(server, alice)
    finally:
        await alice.close()
    assert alice.error is None
    alice = await encspaces.connect(handle.url, ident, alice.id, data_dir=tmp_path / "a")
    try:
        await alice.sync()
        assert alice.seq == seq and alice.error is None
        alice.text("doc").insert(10, "three.")  # sequenced at seq + 1, where the relay signed another hash
        error = await two_heads_at(alice, seq + 1)
        assert SignedHead.decode(unpack(error.evidence[0])).head == server.fabricated(alice.space_bytes, seq + 1).head
        assert alice.seq == seq  # the other history was not applied
    finally:
        await alice.close()
    await fork_evidence_stored(alice, tmp_path / "a", seq + 1)


@pytest.mark.parametrize("restart", [False, True], ids=["in one run", "across a restart"])
async def test_two_heads_signed_at_one_seq_past_the_log_are_a_fork_at_once(  # type: ignore[no-untyped-def]
    lying, tmp_path: Path, restart: bool,
) -> None:
    """The relay signs, in an ack, a head two seqs past Alice's log; then, in the next ack (or, after
    a restart, in its welcome), another head at that seq. Two signed heads for one seq prove a fork
    whatever the log is: Alice says so at once, with both heads, before the log gets there.
    Before, the second was held beside the first and nothing was said until a frame reached it."""
    handle, server = lying
    ident = encspaces.Identity.generate()
    alice = await encspaces.create_space(handle.url, ident, data_dir=tmp_path / "a")
    try:
        alice.text("doc").insert(0, "one. ")
        await alice.sync()
        seq = alice.seq
        server.ack_ahead = 2  # the ack of her next edit (seq + 1) carries a made-up head at seq + 3
        alice.text("doc").insert(5, "two. ")
        await alice.sync()
        server.ack_ahead, server.variant = 1, 1  # another made-up head at seq + 3
        if restart:
            server.ack_ahead, server.welcome_ahead = 0, 2  # her welcome after the restart (log at seq + 1)
            await alice.close()
            assert alice.error is None
            alice = await encspaces.connect(handle.url, ident, alice.id, data_dir=tmp_path / "a")
        else:
            alice.text("doc").insert(10, "three. ")  # sequenced at seq + 2: its ack's head is at seq + 3
        await wait_for(lambda: alice.error is not None, what="alice to see two heads at one seq")
        error = alice.error
        assert isinstance(error, errors.ForkError), error
        assert f"two heads at seq {seq + 3}" in str(error)
        assert [SignedHead.decode(unpack(raw)).seq for raw in error.evidence] == [seq + 3, seq + 3]
    finally:
        await alice.close()
        server.ack_ahead = server.welcome_ahead = server.variant = 0
    data = await load_evidence(alice.id, data_dir=tmp_path / "a")
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.FORK and finding.seq == seq + 3


async def test_held_heads_are_dropped_once_the_log_passes_them(lying, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An honest ack past the log is kept only until the log reaches it (checkpoint), and a kept
    one that the log then matches raises nothing after a restart."""
    handle, _ = lying
    ident = encspaces.Identity.generate()
    alice = await encspaces.create_space(handle.url, ident, data_dir=tmp_path / "a")
    try:
        for i in range(3):
            alice.text("doc").insert(0, f"{i}. ")
            await alice.sync()
    finally:
        await alice.close()
    store = await LocalStore.open(tmp_path / "a", alice.space_bytes.hex())
    try:
        assert await store.load_heads_ahead() == []  # every ack's head was reached and checkpointed
    finally:
        await store.close()
    alice = await encspaces.connect(handle.url, ident, alice.id, data_dir=tmp_path / "a")
    try:
        alice.text("doc").insert(0, "after. ")
        await alice.sync()
        assert alice.error is None
    finally:
        await alice.close()


async def test_a_welcome_head_held_across_a_restart_still_proves_the_fork(lying, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The welcome announces a head one seq past Alice's over a made-up hash and the device closes
    before the deadline; reopened, the relay's log there has another hash: a fork, in its welcome."""
    handle, server = lying
    clock = ManualClock()
    ident = encspaces.Identity.generate()
    alice = await encspaces.create_space(handle.url, ident, data_dir=tmp_path / "a", options=options(clock))
    alice.text("doc").insert(0, "one. ")
    await alice.sync()
    seq = alice.seq
    await alice.close()
    server.welcome_ahead = 1
    again = await encspaces.connect(handle.url, ident, alice.id, data_dir=tmp_path / "a", options=options(clock))
    try:
        await wait_for(lambda: again.relay_seq == seq + 1, what="the welcome announcing a head past ours")
    finally:
        await again.close()  # within the deadline: no error yet
    assert again.error is None
    server.welcome_ahead = 0
    again = await encspaces.connect(handle.url, ident, alice.id, data_dir=tmp_path / "a", options=options(clock))
    try:
        again.text("doc").insert(5, "two.")  # sequenced at seq + 1, where the welcome's head had another hash
        await wait_for(lambda: again.error is not None, what="the two heads at one seq")
        assert isinstance(again.error, errors.ForkError)
        assert_fork_at(again.error, seq + 1, "welcome")
        assert again.seq == seq
    finally:
        await again.close()
    data = await load_evidence(again.id, data_dir=tmp_path / "a")
    assert data is not None and evidence.check(data).kind is evidence.EvidenceKind.FORK
