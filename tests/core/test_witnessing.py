"""WitnessTracker (encspaces/core/witnessing.py): checkpoints, cosignatures and consistency proofs
as exact bytes in, witnessed_seq or a precise error with its evidence out. No sockets, no sleeping:
time is a number the tests move."""

from __future__ import annotations

import hashlib

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encspaces.core import merkle, note
from encspaces.core.evidence import Role
from encspaces.core.witnessing import ProofRequest, QuorumRule, WitnessTracker, entry_leaf_hash
from encspaces.errors import (
    CheckpointEvidenceError,
    CheckpointForkError,
    CheckpointRollbackError,
    CheckpointWithheldError,
    ForkError,
    MalformedNoteError,
    MerkleArgumentError,
    RelaySignatureError,
    RollbackError,
    StoreError,
)

SPACE = hashlib.sha256(b"a space").digest()
ORIGIN = note.space_origin(SPACE)
RELAY = nacl.signing.SigningKey(bytes(range(32)))
RELAY_SIGNER = note.Ed25519Signer(ORIGIN, RELAY)
WITNESSES = [note.CosignatureSigner(f"witness.test/w{i}", nacl.signing.SigningKey(bytes([i + 1]) * 32))
             for i in range(4)]
HEAD = b"\x92\xc4\x03abc\xc4\x01s"  # stands for the relay's signed head in wire form


def wid(signer: note.CosignatureSigner) -> tuple[str, bytes]:
    return (signer.name, bytes(signer.key.verify_key))


def rule(*signers: note.CosignatureSigner, quorum: int, from_seq: int = 1) -> QuorumRule:
    return QuorumRule(from_seq, tuple(wid(s) for s in signers), quorum)


def digest(branch: bytes, seq: int) -> bytes:
    return hashlib.sha256(branch + seq.to_bytes(8, "big")).digest()


class Log:
    """A relay's view of one branch: entry digests (seq 1..n) and its Merkle tree."""

    def __init__(self, n: int, *, fork_at: int | None = None) -> None:
        self.digests = [digest(b"A" if fork_at is None or seq < fork_at else b"B", seq) for seq in range(1, n + 1)]
        self.tree = merkle.MerkleTree()
        self.tree.extend_hashes(entry_leaf_hash(d) for d in self.digests)

    def checkpoint(self, size: int, *cosigners: note.CosignatureSigner, time: int = 1_700_000_000) -> bytes:
        signed = note.SignedCheckpoint.sign(note.Checkpoint(ORIGIN, size, self.tree.root(size)), RELAY_SIGNER)
        return signed.with_signatures([signed.cosign(w, time) for w in cosigners]).encode()

    def feed(self, tracker: WitnessTracker, through: int) -> None:
        for seq in range(tracker.verified + 1, through + 1):
            tracker.append(seq, self.digests[seq - 1])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker(rules: list[QuorumRule], clock: Clock | None = None, deadline: float = 30.0) -> WitnessTracker:
    return WitnessTracker(SPACE, bytes(RELAY.verify_key), rules, clock or Clock(), deadline)


ONE = [rule(WITNESSES[0], quorum=1)]


def test_the_frontier_is_the_rfc_6962_root_of_the_verified_entries() -> None:
    log = Log(37)
    t = tracker(ONE)
    assert t.root == merkle.EMPTY_ROOT
    for seq in range(1, 38):
        t.append(seq, log.digests[seq - 1])
        assert t.root == merkle.root_of([entry_leaf_hash(d) for d in log.digests[:seq]])
    assert t.verified == 37
    # The leaf input is LEAF_CONTEXT || digest, hashed as an RFC 6962 leaf.
    assert entry_leaf_hash(log.digests[0]) == hashlib.sha256(b"\x00encspaces/v1/log-leaf\n" + log.digests[0]).digest()


def test_entries_must_come_in_order() -> None:
    log = Log(3)
    t = tracker(ONE)
    t.append(1, log.digests[0])
    with pytest.raises(MerkleArgumentError, match="entry at seq 3, expected seq 2"):
        t.append(3, log.digests[2])
    assert t.verified == 1


def test_extend_is_append_one_entry_at_a_time() -> None:
    """A frame's entries in one ``extend``: checkpoints reached on the way are credited there,
    and a fork stops the tree at the checkpoint's size, failed, exactly as one ``append`` each."""
    log, forked = Log(12), Log(12, fork_at=3)
    t = tracker(ONE)
    assert t.add_checkpoint(log.checkpoint(5, WITNESSES[0])) == []
    t.extend(1, log.digests[:12])
    assert t.verified == 12 and t.witnessed_seq == 5
    assert t.root == merkle.root_of([entry_leaf_hash(d) for d in log.digests])
    t.extend(13, [])  # nothing to add
    with pytest.raises(MerkleArgumentError, match="entry at seq 12, expected seq 13"):
        t.extend(12, log.digests[11:])
    bad = tracker(ONE)
    bad.add_checkpoint(forked.checkpoint(7))
    with pytest.raises(CheckpointForkError) as raised:
        bad.extend(1, log.digests)
    assert bad.verified == 7
    with pytest.raises(CheckpointForkError) as again:
        bad.extend(8, log.digests[7:])
    assert again.value is raised.value and bad.verified == 7


def test_no_witnesses_means_witnessed_seq_none_but_checkpoints_still_checked() -> None:
    log, forked = Log(10), Log(10, fork_at=4)
    t = tracker([])
    log.feed(t, 10)
    assert t.witnessed_seq is None
    assert t.add_checkpoint(log.checkpoint(10)) == []
    with pytest.raises(CheckpointForkError):
        t.add_checkpoint(forked.checkpoint(10))


def test_a_cosigned_checkpoint_past_the_log_is_witnessed_once_the_log_reaches_it() -> None:
    log = Log(20)
    t = tracker(ONE)
    log.feed(t, 5)
    assert t.witnessed_seq == 0
    assert t.add_checkpoint(log.checkpoint(12, WITNESSES[0])) == []
    assert not t.settled and t.reported_size == 12
    log.feed(t, 11)
    assert t.witnessed_seq == 0
    log.feed(t, 12)
    assert t.witnessed_seq == 12 and t.settled
    log.feed(t, 20)
    assert t.witnessed_seq == 12  # only what a witness vouched for
    status = t.status()
    assert (status.seq, status.cosigners, status.witnesses, status.quorum, status.verified) == (12, 1, 1, 1, 20)


def test_a_checkpoint_at_the_verified_size_is_compared_at_once() -> None:
    log = Log(8)
    t = tracker(ONE)
    log.feed(t, 8)
    assert t.add_checkpoint(log.checkpoint(8, WITNESSES[0])) == []
    assert t.witnessed_seq == 8


def test_the_relay_checkpoint_without_cosignatures_witnesses_nothing() -> None:
    log = Log(8)
    t = tracker(ONE)
    log.feed(t, 8)
    t.add_checkpoint(log.checkpoint(8))
    assert t.witnessed_seq == 0


def test_an_older_checkpoint_asks_the_relay_for_a_consistency_proof() -> None:
    log = Log(50)
    t = tracker(ONE)
    log.feed(t, 50)
    [request] = t.add_checkpoint(log.checkpoint(21, WITNESSES[0]))
    assert request == ProofRequest(21, 50)
    assert not t.settled
    # The same checkpoint again (from the relay and from the witness) does not ask twice.
    assert t.add_checkpoint(log.checkpoint(21, WITNESSES[0])) == []
    t.add_consistency_proof(21, 50, log.tree.consistency_proof(21, 50))
    assert t.witnessed_seq == 21 and t.settled
    # An answer nobody asked for changes nothing.
    t.add_consistency_proof(3, 50, [b"\x00" * 32])
    assert t.witnessed_seq == 21


def test_a_proof_that_does_not_verify_is_a_fork_with_the_checkpoint_and_head_as_evidence() -> None:
    log = Log(50)
    t = tracker(ONE)
    log.feed(t, 50)
    t.observe_head(50, HEAD)
    cp = log.checkpoint(21, WITNESSES[0])
    t.add_checkpoint(cp)
    with pytest.raises(CheckpointForkError, match=r"size 21 .* cannot prove consistent .* through seq 50") as err:
        t.add_consistency_proof(21, 50, log.tree.consistency_proof(20, 50))
    assert err.value.evidence == (cp, HEAD)
    assert err.value.size == 21
    assert t.witnessed_seq == 0


def test_a_root_recorded_while_passing_the_size_needs_no_proof() -> None:
    log = Log(30)
    t = tracker([rule(WITNESSES[0], WITNESSES[1], quorum=2)])
    t.add_checkpoint(log.checkpoint(10, WITNESSES[0]))
    log.feed(t, 30)
    assert t.witnessed_seq == 0  # one of two
    assert t.add_checkpoint(log.checkpoint(10, WITNESSES[1])) == []  # root at 10 was recorded
    assert t.witnessed_seq == 10


def test_a_fork_past_our_log_is_detected_when_we_reach_its_size() -> None:
    honest, ours = Log(40), Log(40, fork_at=25)
    t = tracker(ONE)
    t.observe_head(1, HEAD)
    ours.feed(t, 1)
    t.observe_head(1, HEAD)
    cp = honest.checkpoint(30, WITNESSES[0])
    t.add_checkpoint(cp)
    ours.feed(t, 29)
    with pytest.raises(CheckpointForkError, match=r"size 30 with root .* but the log it delivered") as err:
        t.append(30, ours.digests[29])
    assert err.value.evidence == (cp, HEAD)
    assert isinstance(err.value, ForkError) and isinstance(err.value, CheckpointEvidenceError)
    assert t.witnessed_seq == 0


def test_a_fork_below_our_log_is_detected_at_once_or_by_proof() -> None:
    honest, ours = Log(40), Log(40, fork_at=25)
    t = tracker(ONE)
    ours.feed(t, 40)
    with pytest.raises(CheckpointForkError):
        t.add_checkpoint(honest.checkpoint(40, WITNESSES[0]))
    [request] = t.add_checkpoint(honest.checkpoint(30, WITNESSES[0]))
    with pytest.raises(CheckpointForkError):
        # The lying relay can only prove its own branch.
        t.add_consistency_proof(request.first, request.second, ours.tree.consistency_proof(30, 40))
    # Below the fork both branches agree: witnessed.
    [request] = t.add_checkpoint(honest.checkpoint(24, WITNESSES[0]))
    t.add_consistency_proof(24, 40, ours.tree.consistency_proof(24, 40))
    assert t.witnessed_seq == 24


def test_two_relay_checkpoints_of_one_size_with_two_roots_are_a_fork_on_their_own() -> None:
    honest, forked = Log(40), Log(40, fork_at=25)
    t = tracker(ONE)
    honest.feed(t, 10)
    a = honest.checkpoint(30)
    b = forked.checkpoint(30, WITNESSES[0])
    t.add_checkpoint(a)
    with pytest.raises(CheckpointForkError, match="two checkpoints of size 30") as err:
        t.add_checkpoint(b)
    assert err.value.evidence == (a, b)


def test_withholding_a_checkpointed_tail_fails_at_the_deadline_not_before() -> None:
    log = Log(20)
    clock = Clock()
    t = tracker(ONE, clock, deadline=30.0)
    log.feed(t, 5)
    cp = log.checkpoint(15, WITNESSES[0])
    t.add_checkpoint(cp)
    assert t.next_deadline() == 1030.0
    clock.now += 29.9
    t.check_deadlines()
    clock.now += 0.1
    with pytest.raises(CheckpointWithheldError, match=r"size 15 30 s ago .* only through seq 5") as err:
        t.check_deadlines()
    assert err.value.evidence == (cp,)
    assert err.value.size == 15


def test_delivering_in_time_clears_the_deadline() -> None:
    log = Log(20)
    clock = Clock()
    t = tracker(ONE, clock)
    t.add_checkpoint(log.checkpoint(15, WITNESSES[0]))
    clock.now += 29
    log.feed(t, 15)
    clock.now += 100
    t.check_deadlines()
    assert t.next_deadline() is None and t.witnessed_seq == 15


def test_an_unanswered_proof_request_is_withholding_too() -> None:
    log = Log(20)
    clock = Clock()
    t = tracker(ONE, clock)
    log.feed(t, 20)
    t.add_checkpoint(log.checkpoint(7, WITNESSES[0]))
    clock.now += 30
    with pytest.raises(CheckpointWithheldError, match="did not prove its checkpoint of size 7"):
        t.check_deadlines()


def test_a_head_below_a_signed_checkpoint_is_a_rollback_with_both_statements() -> None:
    log = Log(20)
    t = tracker(ONE)
    log.feed(t, 3)
    cp = log.checkpoint(12, WITNESSES[0])
    t.add_checkpoint(cp)
    t.observe_head(12, HEAD)  # at the checkpoint: fine
    t.observe_head(19, HEAD)
    with pytest.raises(CheckpointRollbackError, match="seq 11, but it signed a checkpoint of size 12") as err:
        t.observe_head(11, b"old head")  # a welcome's: the relay's newest
    assert err.value.evidence == (cp, b"old head")
    assert isinstance(err.value, RollbackError)


@pytest.mark.parametrize("role", [Role.FRAME, Role.ACK])
def test_a_frame_or_ack_head_below_a_signed_checkpoint_is_no_rollback(role: Role) -> None:
    """A catch-up in several frames carries heads below the checkpoint its welcome brought, and a
    checkpoint fetched from a witness can come before the frame that reaches it: both lawful."""
    log = Log(20)
    t = tracker(ONE)
    log.feed(t, 3)
    t.add_checkpoint(log.checkpoint(12, WITNESSES[0]))
    t.observe_head(5, HEAD, role)
    t.observe_head(11, HEAD, role)
    assert t.failure is None


@pytest.mark.parametrize("damage", ["relay signature", "origin", "no relay line", "malformed"])
def test_a_note_that_is_not_the_relays_checkpoint_is_refused_and_changes_nothing(damage: str) -> None:
    log = Log(10)
    t = tracker(ONE)
    log.feed(t, 10)
    t.add_checkpoint(log.checkpoint(4, WITNESSES[0]))
    before = t.export()
    cp = note.SignedCheckpoint.parse(log.checkpoint(10, WITNESSES[0]))
    if damage == "relay signature":
        # Same name and key ID as the relay's, other signature bytes.
        relay_line = cp.note.signatures[0]
        forged = note.NoteSignature(relay_line.name, relay_line.key_id, bytes(64))
        data = note.Note(cp.note.text, (forged, *cp.note.signatures[1:])).encode()
        error: type[Exception] = RelaySignatureError
    elif damage == "origin":
        other = note.space_origin(hashlib.sha256(b"other").digest())
        data = note.SignedCheckpoint.sign(note.Checkpoint(other, 10, log.tree.root(10)),
                                          note.Ed25519Signer(other, RELAY)).encode()
        error = RelaySignatureError
    elif damage == "no relay line":
        data = note.Note(cp.note.text, cp.note.signatures[1:]).encode()
        error = RelaySignatureError
    else:
        data = cp.encode().replace(b"\n\n", b"\n")
        error = MalformedNoteError
    with pytest.raises(error):
        t.add_checkpoint(data)
    assert t.export() == before


def test_quorum_counts_distinct_policy_witnesses_on_any_consistent_checkpoints() -> None:
    log = Log(60)
    t = tracker([rule(*WITNESSES[:3], quorum=2)])
    log.feed(t, 60)
    t.add_checkpoint(log.checkpoint(60, WITNESSES[0]))
    assert t.witnessed_seq == 0
    t.add_checkpoint(log.checkpoint(60, WITNESSES[0]))  # the same witness again: still one
    outsider = note.CosignatureSigner("witness.test/outsider", nacl.signing.SigningKey(b"\x42" * 32))
    t.add_checkpoint(log.checkpoint(60, outsider))  # not in the policy
    assert t.witnessed_seq == 0
    [req] = t.add_checkpoint(log.checkpoint(45, WITNESSES[1]))
    t.add_consistency_proof(req.first, req.second, log.tree.consistency_proof(45, 60))
    assert t.witnessed_seq == 45  # w0 vouches for 60 and so for 45; w1 for 45
    assert t.status().cosigners == 2
    t.add_checkpoint(log.checkpoint(60, WITNESSES[2]))
    assert t.witnessed_seq == 60
    assert (t.status().cosigners, t.status().witnesses, t.status().quorum) == (2, 3, 2)


def test_a_bad_cosignature_line_counts_for_nothing_and_fails_nothing() -> None:
    log = Log(10)
    t = tracker(ONE)
    log.feed(t, 10)
    cp = note.SignedCheckpoint.parse(log.checkpoint(10, WITNESSES[0]))
    relay_line, cosig = cp.note.signatures
    broken = note.NoteSignature(cosig.name, cosig.key_id, cosig.signature[:8] + bytes(64))
    t.add_checkpoint(note.Note(cp.note.text, (relay_line, broken)).encode())
    assert t.witnessed_seq == 0


def test_a_lying_witness_alone_cannot_witness_a_fork_while_the_quorum_holds() -> None:
    honest, forked = Log(40), Log(40, fork_at=20)
    liar, good = WITNESSES[0], WITNESSES[1:3]
    policy = [rule(liar, *good, quorum=2)]
    victim = tracker(policy)  # shown the forked branch
    forked.feed(victim, 40)
    victim.add_checkpoint(forked.checkpoint(40, liar))
    assert victim.witnessed_seq == 0  # one liar is not a quorum
    # The honest witnesses' own checkpoints, polled directly, expose the fork.
    with pytest.raises(CheckpointForkError):
        victim.add_checkpoint(honest.checkpoint(40, *good))


def test_a_policy_change_counts_only_once_the_old_quorum_covered_it() -> None:
    log = Log(50)
    old, new = WITNESSES[0], WITNESSES[1]
    rules = [rule(old, quorum=1), rule(new, quorum=1, from_seq=20)]
    t = tracker(rules)
    log.feed(t, 50)
    t.add_checkpoint(log.checkpoint(50, new))
    assert t.witnessed_seq == 0  # the entry at 20 is not covered by the old witness yet
    req = t.add_checkpoint(log.checkpoint(15, old))
    t.add_consistency_proof(15, 50, log.tree.consistency_proof(15, 50))
    assert req == [ProofRequest(15, 50)] and t.witnessed_seq == 15
    [req2] = t.add_checkpoint(log.checkpoint(25, old))
    t.add_consistency_proof(req2.first, req2.second, log.tree.consistency_proof(25, 50))
    assert t.witnessed_seq == 50  # old covers 20: the new witness's 50 counts


def test_old_witnesses_alone_cannot_witness_past_the_policy_change() -> None:
    log = Log(50)
    old, new = WITNESSES[0], WITNESSES[1]
    t = tracker([rule(old, quorum=1), rule(new, quorum=1, from_seq=20)])
    log.feed(t, 50)
    t.add_checkpoint(log.checkpoint(50, old))
    assert t.witnessed_seq == 19


def test_witnesses_added_to_a_space_without_them_count_from_their_entry() -> None:
    log = Log(30)
    t = tracker([QuorumRule(1, (), 0), rule(WITNESSES[0], quorum=1, from_seq=10)])
    assert t.witnessed_seq == 0
    log.feed(t, 30)
    t.add_checkpoint(log.checkpoint(30, WITNESSES[0]))
    assert t.witnessed_seq == 30


def test_export_and_restore_keep_the_frontier_the_witnessed_state_and_pending_deadlines() -> None:
    log = Log(40)
    clock = Clock()
    t = tracker(ONE, clock)
    log.feed(t, 25)
    t.add_checkpoint(log.checkpoint(25, WITNESSES[0]))
    t.add_checkpoint(log.checkpoint(33, WITNESSES[0]))
    blob = t.export()
    clock.now += 20
    back = WitnessTracker.restore(blob, SPACE, bytes(RELAY.verify_key), ONE, clock)
    assert (back.verified, back.root, back.witnessed_seq, back.reported_size) == (25, t.root, 25, 33)
    assert back.export() == blob
    assert back.next_deadline() == clock.now + 30  # restarted: the device was not running
    with pytest.raises(CheckpointRollbackError):
        back.observe_head(30, HEAD)
    log.feed(back, 33)
    assert back.witnessed_seq == 33


def test_a_corrupt_export_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="witness state is corrupt"):
        WitnessTracker.restore(b"\x81\xa1v\x01", SPACE, bytes(RELAY.verify_key), ONE, Clock())


# --- property: a client on one branch, checkpoints of another, in any order -------------------------


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 80),
    fork=st.integers(1, 81),
    events=st.lists(st.tuples(st.integers(0, 90), st.integers(0, 90)), min_size=1, max_size=8),
)
def test_witnessed_never_passes_a_fork_and_every_reachable_fork_is_caught(
    n: int, fork: int, events: list[tuple[int, int]]
) -> None:
    """The relay signs and the witness cosigns the honest branch; the client verifies a branch
    that leaves it at ``fork`` (no fork when fork > n). Checkpoints arrive interleaved with the
    client's progress; the lying relay answers proof requests from its branch."""
    honest, ours = Log(90), Log(n, fork_at=fork)
    t = tracker(ONE)
    sizes = [size for size, _ in events]
    steps = sorted(step for _, step in events)
    caught = False
    try:
        for size, step in zip(sizes, steps, strict=True):
            ours.feed(t, min(step, n))
            for req in t.add_checkpoint(honest.checkpoint(size, WITNESSES[0])):
                t.add_consistency_proof(req.first, req.second, ours.tree.consistency_proof(req.first, req.second))
            assert t.witnessed_seq is not None
            assert t.witnessed_seq <= min(t.verified, fork - 1)
        ours.feed(t, n)
    except CheckpointForkError as exc:
        caught = True
        assert exc.size >= fork
    reachable = [s for s in sizes if fork <= s <= n]
    # A divergent checkpoint at a size the client verified is always caught; nothing else is.
    assert caught == bool(reachable)
    if not caught:
        consistent = [s for s in sizes if s <= n]
        assert t.witnessed_seq == max(consistent, default=0)
        assert t.root == merkle.root_of([entry_leaf_hash(d) for d in ours.digests])


def test_a_new_connection_restarts_deadlines_and_asks_the_proofs_again() -> None:
    log = Log(20)
    clock = Clock()
    t = tracker(ONE, clock)
    log.feed(t, 10)
    t.add_checkpoint(log.checkpoint(15, WITNESSES[0]))
    t.add_checkpoint(log.checkpoint(4, WITNESSES[0]))
    clock.now += 25
    assert t.restart_deadlines() == [ProofRequest(4, 10)]
    clock.now += 25
    t.check_deadlines()  # 50 s since the checkpoints, 25 since the connection
    clock.now += 5
    with pytest.raises(CheckpointWithheldError):
        t.check_deadlines()


def test_a_newest_checkpoint_below_one_the_relay_signed_is_a_rollback() -> None:
    log = Log(30)
    t = tracker(ONE)
    log.feed(t, 10)
    witnessed = log.checkpoint(25, WITNESSES[0])
    t.add_checkpoint(witnessed)  # e.g. from a witness, polled directly
    assert t.add_latest(log.checkpoint(28)) == []  # newer: fine
    old = log.checkpoint(10)
    with pytest.raises(CheckpointRollbackError, match="newest checkpoint is of size 10, but it signed one of size 28"):
        t.add_latest(old)


def test_checkpoints_heard_of_before_the_genesis_wait_for_the_relay_key() -> None:
    log = Log(5)
    t = WitnessTracker(SPACE, None, ONE, Clock())
    assert t.add_checkpoint(log.checkpoint(5, WITNESSES[0])) == []
    other = note.Ed25519Signer(ORIGIN, nacl.signing.SigningKey(b"\x09" * 32))
    forged = note.SignedCheckpoint.sign(note.Checkpoint(ORIGIN, 5, log.tree.root(5)), other).encode()
    t.add_checkpoint(forged, from_witness=True)  # a witness's bad note: dropped once the key is known
    assert not t.settled
    t.set_relay_key(bytes(RELAY.verify_key))
    log.feed(t, 5)
    assert t.witnessed_seq == 5 and t.settled
    relay_forged = WitnessTracker(SPACE, None, ONE, Clock())
    relay_forged.add_checkpoint(forged)
    with pytest.raises(RelaySignatureError):
        relay_forged.set_relay_key(bytes(RELAY.verify_key))


def test_the_status_line() -> None:
    log = Log(9)
    t = tracker([rule(*WITNESSES[:3], quorum=2)])
    assert tracker([]).status().describe() == "not witnessed (no witnesses)"
    assert t.status().describe() == "not witnessed yet (quorum 2 of 3)"
    log.feed(t, 9)
    t.add_checkpoint(log.checkpoint(9, *WITNESSES[:2]))
    assert t.status().describe() == "witnessed through 9 (2 of 3)"


# --- inside the verifier: every verified entry grows the tree, kept in the client checkpoint ------


def test_the_verifier_feeds_the_tracker_and_keeps_it_in_its_checkpoint() -> None:
    from encspaces.core.encoding import pack, unpack
    from encspaces.core.entry import Entry
    from encspaces.core.verifier import LogVerifier
    from encspaces.core.witness_policy import Witness, WitnessPolicy

    from .fakes import FakeSpace

    witness = Witness(WITNESSES[0].name, bytes(WITNESSES[0].key.verify_key), "http://w.test")
    fs = FakeSpace(witnesses=WitnessPolicy((witness,), 1))
    for _ in range(4):
        fs.write(fs.alice)
    v = fs.verifier(through=fs.seq)
    leaves = [entry_leaf_hash(Entry.decode(raw).digest()) for raw in fs.raws]
    assert v.witness.verified == fs.seq and v.witness.root == merkle.root_of(leaves)
    assert v.witness.witnessed_seq == 0  # the genesis's policy is known: not None
    # A cosigned checkpoint of the verified log, signed by the relay key the genesis pins.
    origin = note.space_origin(fs.space)
    signed = note.SignedCheckpoint.sign(note.Checkpoint(origin, fs.seq, merkle.root_of(leaves)),
                                        note.Ed25519Signer(origin, fs.relay_key))
    v.witness.add_checkpoint(signed.with_signatures([signed.cosign(WITNESSES[0], 1)]).encode())
    assert v.witness.witnessed_seq == fs.seq
    heads = fs.heads[: fs.seq + 1]
    back, _ = LogVerifier.from_checkpoint(fs.space, fs.bob, v.export_checkpoint(), heads)
    assert (back.witness.verified, back.witness.root, back.witness.witnessed_seq) == (fs.seq, v.witness.root, fs.seq)
    assert not back.tree_missing
    # A checkpoint written before the tree existed: rebuilt once from the stored digests.
    old = unpack(v.export_checkpoint())
    del old["witness"]
    legacy, _ = LogVerifier.from_checkpoint(fs.space, fs.bob, pack(old), heads)
    assert legacy.tree_missing
    legacy.rebuild_tree([Entry.decode(raw).digest() for raw in fs.raws])
    assert not legacy.tree_missing and legacy.witness.root == v.witness.root
    fs.write(fs.alice)
    legacy.verify_frame(fs.frame(fs.seq))
    assert legacy.witness.verified == fs.seq


def test_a_frame_that_reaches_a_forked_checkpoint_raises_the_fork() -> None:
    from encspaces.core.witness_policy import Witness, WitnessPolicy

    from .fakes import FakeSpace

    witness = Witness(WITNESSES[0].name, bytes(WITNESSES[0].key.verify_key), "http://w.test")
    fs = FakeSpace(witnesses=WitnessPolicy((witness,), 1))
    v = fs.verifier(through=fs.seq)
    origin = note.space_origin(fs.space)
    other = note.SignedCheckpoint.sign(note.Checkpoint(origin, fs.seq + 2, bytes(32)),
                                       note.Ed25519Signer(origin, fs.relay_key))
    v.witness.add_checkpoint(other.encode())
    fs.write(fs.alice)
    fs.write(fs.alice)
    with pytest.raises(CheckpointForkError, match=f"size {fs.seq} with root 0000"):
        v.verify_frame(fs.frame(fs.seq - 1))


def test_a_welcome_head_below_a_signed_checkpoint_is_a_rollback() -> None:
    from encspaces.core.messages import Welcome
    from encspaces.core.witness_policy import WitnessPolicy

    from .fakes import FakeSpace

    fs = FakeSpace(witnesses=WitnessPolicy.NONE)
    v = fs.verifier(through=fs.seq)
    origin = note.space_origin(fs.space)
    ahead = note.SignedCheckpoint.sign(note.Checkpoint(origin, fs.seq + 5, bytes(32)),
                                       note.Ed25519Signer(origin, fs.relay_key)).encode()
    v.witness.add_checkpoint(ahead)
    with pytest.raises(CheckpointRollbackError) as err:
        v.check_welcome(Welcome(fs.signed(fs.seq), fs.signed(fs.seq)))
    assert err.value.evidence[0] == ahead
