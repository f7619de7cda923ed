"""Checkpoint statements in evidence files (encspaces.core.evidence): a relay-signed checkpoint
proves a fork against two of its own checkpoints or against the leaves of a head it signed, a
rollback against a shorter log it presented, a withholding past what the reporter verified; the
checker names the genesis policy's witnesses that cosigned, and refuses a note the relay did not
sign as it stands."""

from __future__ import annotations

import nacl.signing
import pytest

from encspaces.core import crypto, evidence, merkle, note
from encspaces.core.entry import Entry
from encspaces.core.evidence import (
    CheckpointStatement,
    Evidence,
    EvidenceKind,
    HeadStatement,
    LeavesStatement,
    Role,
    Statement,
)
from encspaces.core.reverify import reverify_log
from encspaces.core.witness_policy import Witness, WitnessPolicy
from encspaces.core.witnessing import entry_leaf_hash
from encspaces.errors import CheckpointForkError, EvidenceError, StoreError

from .fakes import FakeSpace

W0 = note.CosignatureSigner("witness.test/w0", nacl.signing.SigningKey(bytes([1]) * 32))
STRANGER = note.CosignatureSigner("witness.test/stranger", nacl.signing.SigningKey(bytes([2]) * 32))
OTHER_ROOT = crypto.hash_parts(b"another history")


def space(n: int = 6) -> FakeSpace:
    policy = WitnessPolicy.of([Witness(W0.name, bytes(W0.key.verify_key), "https://w0.example")], 1)
    fs = FakeSpace(witnesses=policy)
    for _ in range(n - fs.seq):
        fs.write(fs.alice)
    return fs


def digests(fs: FakeSpace) -> tuple[bytes, ...]:
    return tuple(Entry.decode(raw).digest() for raw in fs.raws)


def root(fs: FakeSpace, size: int) -> bytes:
    tree = merkle.MerkleTree()
    tree.extend_hashes(entry_leaf_hash(d) for d in digests(fs)[:size])
    return tree.root()


def checkpoint(fs: FakeSpace, size: int, at: bytes | None = None, *cosigners: note.CosignatureSigner,
               key: nacl.signing.SigningKey | None = None) -> bytes:
    signer = note.Ed25519Signer(note.space_origin(fs.space), key or fs.relay_key)
    at = root(fs, size) if at is None else at
    signed = note.SignedCheckpoint.sign(note.Checkpoint(signer.name, size, at), signer)
    return signed.with_signatures([signed.cosign(w, 1_700_000_000) for w in cosigners]).encode()


def file(fs: FakeSpace, kind: EvidenceKind, *statements: Statement) -> bytes:
    return Evidence(kind, fs.space, fs.relay_pk, statements, genesis=fs.genesis.raw).encode(fs.bob)


def test_a_checkpoint_against_the_leaves_of_a_signed_head_is_a_fork_naming_the_policy_cosigners() -> None:
    fs = space()
    lie = CheckpointStatement(Role.CHECKPOINT, checkpoint(fs, 4, OTHER_ROOT, W0, STRANGER))
    ours = HeadStatement(Role.VERIFIED, fs.signed(fs.seq))
    finding = evidence.check(file(fs, EvidenceKind.FORK, lie, ours, LeavesStatement(Role.VERIFIED, digests(fs))))
    assert finding.kind is EvidenceKind.FORK and finding.seq == 4 and finding.bound
    assert finding.cosigners == (W0.name,)  # the stranger's key is in no policy: not counted
    assert "cosigned by witness.test/w0" in finding.proves

    honest = CheckpointStatement(Role.CHECKPOINT, checkpoint(fs, 4, None, W0))
    with pytest.raises(EvidenceError, match="no fork"):
        evidence.check(file(fs, EvidenceKind.FORK, honest, ours, LeavesStatement(Role.VERIFIED, digests(fs))))
    # A head below the checkpoint's size does not bind the relay to a root at that size.
    short = HeadStatement(Role.VERIFIED, fs.signed(3))
    with pytest.raises(EvidenceError, match="no fork"):
        evidence.check(file(fs, EvidenceKind.FORK, lie, short, LeavesStatement(Role.VERIFIED, digests(fs)[:3])))
    # Leaves the relay never signed a head over prove nothing.
    forged = (*digests(fs)[:2], crypto.hash_parts(b"x"), *digests(fs)[3:])
    with pytest.raises(EvidenceError, match="chain to no signed head"):
        evidence.check(file(fs, EvidenceKind.FORK, lie, ours, LeavesStatement(Role.VERIFIED, forged)))
    with pytest.raises(EvidenceError, match="not filled in"):
        Evidence(EvidenceKind.FORK, fs.space, fs.relay_pk, (lie, LeavesStatement(Role.VERIFIED, None, 4))).encode()


def test_two_relay_checkpoints_of_one_size_with_two_roots_are_a_fork() -> None:
    fs = space()
    a = CheckpointStatement(Role.CHECKPOINT, checkpoint(fs, 5, None, W0))
    b = CheckpointStatement(Role.CHECKPOINT, checkpoint(fs, 5, OTHER_ROOT))
    finding = evidence.check(file(fs, EvidenceKind.FORK, a, b))
    assert finding.seq == 5 and "two different logs of size 5" in finding.proves
    with pytest.raises(EvidenceError):
        evidence.check(file(fs, EvidenceKind.FORK, a, CheckpointStatement(Role.CHECKPOINT, checkpoint(fs, 5))))


@pytest.mark.parametrize("damage", ["text", "key", "origin"])
def test_a_checkpoint_the_relay_did_not_sign_as_it_stands_is_refused(damage: str) -> None:
    fs = space()
    b = CheckpointStatement(Role.CHECKPOINT, checkpoint(fs, 5, OTHER_ROOT))
    good = checkpoint(fs, 5, None, W0)
    if damage == "text":
        bad = good.replace(b"\n5\n", b"\n6\n", 1)
        match = "relay's signature does not verify"
    elif damage == "key":
        bad = checkpoint(fs, 5, None, W0, key=nacl.signing.SigningKey.generate())
        match = "no signature of the relay key"
    else:
        other = FakeSpace()
        signer = note.Ed25519Signer(note.space_origin(other.space), fs.relay_key)
        bad = note.SignedCheckpoint.sign(note.Checkpoint(signer.name, 5, root(fs, 5)), signer).encode()
        match = "not the space's"
    with pytest.raises(EvidenceError, match=match):
        evidence.check(file(fs, EvidenceKind.FORK, CheckpointStatement(Role.CHECKPOINT, bad), b))


def test_a_shorter_log_presented_after_a_checkpoint_is_a_rollback() -> None:
    fs = space()
    top = CheckpointStatement(Role.CHECKPOINT, checkpoint(fs, 6, None, W0))
    finding = evidence.check(file(fs, EvidenceKind.ROLLBACK, top, HeadStatement(Role.WELCOME, fs.signed(3))))
    assert finding.kind is EvidenceKind.ROLLBACK and finding.seq == 3 and finding.cosigners == (W0.name,)
    latest = CheckpointStatement(Role.LATEST, checkpoint(fs, 4))
    assert evidence.check(file(fs, EvidenceKind.ROLLBACK, top, latest)).seq == 4
    with pytest.raises(EvidenceError):
        evidence.check(file(fs, EvidenceKind.ROLLBACK, top, HeadStatement(Role.WELCOME, fs.signed(6))))


def test_a_checkpoint_past_what_the_reporter_verified_is_withholding() -> None:
    fs = space()
    top = CheckpointStatement(Role.CHECKPOINT, checkpoint(fs, 6, None, W0))
    finding = evidence.check(file(fs, EvidenceKind.WITHHOLDING, top, HeadStatement(Role.VERIFIED, fs.signed(2))))
    assert finding.kind is EvidenceKind.WITHHOLDING and finding.seq == 6
    with pytest.raises(EvidenceError, match="not below"):
        evidence.check(file(fs, EvidenceKind.WITHHOLDING, top, HeadStatement(Role.VERIFIED, fs.signed(6))))


def test_the_trackers_fork_proof_completed_with_the_leaves_checks() -> None:
    """What the SDK does: the tracker's proof carries the checkpoint and the newest digests; the
    leaves (here all of them, as the tracker saw them) and a signed head complete it."""
    fs = space()
    v = fs.verifier(through=fs.seq)
    with pytest.raises(CheckpointForkError) as caught:
        v.witness.add_checkpoint(checkpoint(fs, fs.seq, OTHER_ROOT, W0))  # at our size: compared at once
    proof = caught.value.proof
    assert proof is not None and not proof.complete
    leaves = proof.leaves
    assert leaves is not None and leaves.tail_from == 1 and leaves.tail == digests(fs)
    done = proof.replace(genesis=fs.genesis.raw, statements=(
        *(s for s in proof.statements if s is not leaves), LeavesStatement(Role.VERIFIED, leaves.tail)))
    if not done.heads:
        done = done.replace(statements=(*done.statements, HeadStatement(Role.VERIFIED, fs.signed(fs.seq))))
    finding = evidence.check(done.encode(fs.bob))
    assert finding.kind is EvidenceKind.FORK and finding.seq == fs.seq and finding.cosigners == (W0.name,)


def test_a_fork_found_mid_frame_carries_the_frame_and_is_raised_again_as_it_is() -> None:
    """The frame's entries are not stored when the space fails: its digests and signed head go
    into the proof; the tree stopped mid-frame, so a later checkpoint re-raises the same error."""
    fs = space()
    v = fs.verifier(through=3)
    assert v.witness.add_checkpoint(checkpoint(fs, 5, OTHER_ROOT, W0)) == []  # past our log: pending
    with pytest.raises(CheckpointForkError) as caught:
        v.verify_frame(fs.frame(4, fs.seq))
    proof = caught.value.proof
    assert proof is not None
    leaves = proof.leaves
    assert leaves is not None and leaves.tail_from == 1 and leaves.tail == digests(fs)
    assert (Role.FRAME, fs.seq) in [(h.role, h.head.seq) for h in proof.heads]
    done = proof.replace(genesis=fs.genesis.raw, statements=(
        *(s for s in proof.statements if s is not leaves), LeavesStatement(Role.VERIFIED, leaves.tail)))
    assert evidence.check(done.encode(fs.bob)).seq == 5
    with pytest.raises(CheckpointForkError) as again:
        v.witness.add_checkpoint(checkpoint(fs, 6))
    assert again.value is caught.value


def rows(fs: FakeSpace) -> list[tuple[int, bytes, bytes]]:
    return [(seq, raw, fs.heads[seq]) for seq, raw in enumerate(fs.raws, start=1)]


def test_reverify_rechecks_kept_cosigned_checkpoints_against_the_stored_log() -> None:
    fs = space()
    good = checkpoint(fs, 4, None, W0, STRANGER)
    report = reverify_log(fs.space, fs.bob, rows(fs), checkpoints=[good, checkpoint(fs, fs.seq, None, W0)])
    assert report.error is None
    assert report.checkpoints_checked == [(4, (W0.name,)), (fs.seq, (W0.name,))]
    for bad, why in [(checkpoint(fs, 4, OTHER_ROOT, W0), "not the stored log's root"),
                     (checkpoint(fs, 4, None, STRANGER), "no cosignature of a witness"),
                     (checkpoint(fs, 4, None, W0, key=nacl.signing.SigningKey.generate()), "not signed by"),
                     (good.replace(b"\n4\n", b"\n3\n", 1), "not signed by")]:
        failed = reverify_log(fs.space, fs.bob, rows(fs), checkpoints=[bad])
        assert isinstance(failed.error, StoreError) and why in str(failed.error), failed.error
    # A checkpoint past the stored log is not re-checked (nothing to compare it with).
    assert reverify_log(fs.space, fs.bob, rows(fs)[:3], checkpoints=[good]).checkpoints_checked == []
