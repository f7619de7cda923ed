"""Evidence files (encspaces.core.evidence): what the verifier raises is checkable offline, and nothing
else passes the check; the withholding deadline (encspaces.core.withholding) counts the right time."""

from __future__ import annotations

import nacl.signing
import pytest

from encspaces.core import crypto, evidence
from encspaces.core.encoding import pack, unpack
from encspaces.core.entry import Entry
from encspaces.core.evidence import Evidence, EvidenceKind, HeadStatement, LinkStatement, OtherStatement, Role
from encspaces.core.messages import Welcome
from encspaces.core.withholding import WithholdingWatch
from encspaces.errors import EvidenceError, ForkError, RollbackError

from .fakes import FakeSpace


def complete(fs: FakeSpace, proof: Evidence | None) -> Evidence:
    assert proof is not None
    return proof.replace(genesis=fs.genesis.raw)


def test_a_forked_welcome_anchor_is_proof_of_a_fork() -> None:
    fs = FakeSpace()
    fs.write(fs.alice)
    v = fs.verifier(through=fs.seq)
    lie = fs.signed(fs.seq, crypto.hash_parts(b"other history"))
    with pytest.raises(ForkError) as caught:
        v.check_welcome(Welcome(fs.signed(fs.seq), lie))
    error = caught.value
    assert [unpack(raw) for raw in error.evidence] == [lie.encode(), fs.signed(fs.seq).encode()]
    finding = evidence.check(complete(fs, error.proof).encode(fs.bob))
    assert finding.kind is EvidenceKind.FORK and finding.seq == fs.seq and finding.bound
    assert finding.reporter == fs.bob.public.sign_key
    assert "two different heads" in finding.proves


def test_a_fork_below_our_head_needs_the_chain_link() -> None:
    fs = FakeSpace()
    for _ in range(3):
        fs.write(fs.alice)
    v = fs.verifier(through=fs.seq)
    old = fs.seq - 2
    lie = fs.signed(old, crypto.hash_parts(b"other history"))
    with pytest.raises(ForkError) as caught:
        v.note_signed_head(lie)
    proof = complete(fs, caught.value.proof)
    assert not proof.complete  # the digests between come from the store
    with pytest.raises(EvidenceError, match="not filled in"):
        proof.encode()
    digests = tuple(Entry.decode(raw).digest() for raw in fs.raws[old:fs.seq])
    linked = proof.replace(statements=tuple(
        LinkStatement(s.role, s.seq, s.head, digests) if isinstance(s, LinkStatement) else s
        for s in proof.statements))
    finding = evidence.check(linked.encode())
    assert finding.seq == old and f"h({old})" in finding.proves
    # The same heads with the honest h(old) prove nothing: no signed head differs from it.
    honest = linked.replace(statements=(HeadStatement(Role.ACK, fs.signed(old)), *linked.statements[1:]))
    with pytest.raises(EvidenceError, match="differs"):
        evidence.check(honest.encode())


def test_rollback_and_withholding_evidence() -> None:
    fs = FakeSpace()
    fs.write(fs.alice)
    v = fs.verifier(through=fs.seq)
    with pytest.raises(RollbackError) as caught:
        v.check_welcome(Welcome(fs.signed(fs.seq - 1), None))
    finding = evidence.check(complete(fs, caught.value.proof).encode())
    assert finding.kind is EvidenceKind.ROLLBACK and finding.seq == fs.seq - 1
    assert "presented seq" in finding.reported

    watch = WithholdingWatch()
    watch.connected(0.0)
    ahead = fs.signed(fs.seq, crypto.hash_parts(b"never served"))
    ahead = ahead.__class__.create(fs.relay_key, fs.space, fs.seq + 2, ahead.head)
    watch.saw(ahead, Role.ACK, fs.seq, 5.0)
    assert watch.overdue(fs.seq, v.verified_head, 34.0, 30.0) is None  # 29 s since the ack
    error = watch.overdue(fs.seq, v.verified_head, 36.0, 30.0)
    assert error is not None and error.seq == fs.seq + 2 and error.verified == fs.seq
    finding = evidence.check(complete(fs, error.proof.replace(relay_key=fs.relay_pk) if error.proof else None)
                             .encode(fs.bob))
    assert finding.kind is EvidenceKind.WITHHOLDING and finding.seq == fs.seq + 2
    assert f"only through seq {fs.seq}" in finding.reported


def test_the_deadline_counts_connected_time_without_progress() -> None:
    fs = FakeSpace()
    head = fs.signed(fs.seq)
    watch = WithholdingWatch()
    watch.connected(0.0)
    watch.saw(head, Role.WELCOME, fs.seq - 2, 1.0)  # a welcome counts from its connection
    watch.disconnected(20.0)
    assert watch.overdue(fs.seq - 2, None, 500.0, 30.0) is None  # offline: not the relay's time
    watch.connected(500.0)
    assert watch.overdue(fs.seq - 2, None, 509.0, 30.0) is None
    assert watch.overdue(fs.seq - 2, None, 511.0, 30.0) is not None  # 20 + 11 s connected
    watch.progressed(fs.seq - 1, 511.0)  # progress: the clock starts again
    assert watch.overdue(fs.seq - 1, None, 540.0, 30.0) is None
    assert watch.overdue(fs.seq - 1, None, 542.0, 30.0) is not None
    watch.progressed(fs.seq, 542.0)  # reached: nothing is held any more
    assert watch.ahead is None and watch.overdue(fs.seq, None, 1e6, 30.0) is None
    # Idle time before a head ahead arrives is not held against the relay.
    later = fs.signed(fs.seq).__class__.create(fs.relay_key, fs.space, fs.seq + 1, bytes(32))
    watch.saw(later, Role.ACK, fs.seq, 2e6)
    assert watch.overdue(fs.seq, None, 2e6 + 29, 30.0) is None


def test_a_file_that_does_not_prove_its_claim_is_refused() -> None:
    fs = FakeSpace()
    fs.write(fs.alice)
    lie = fs.signed(fs.seq, crypto.hash_parts(b"other history"))
    good = Evidence(EvidenceKind.FORK, fs.space, fs.relay_pk,
                    (HeadStatement(Role.VERIFIED, fs.signed(fs.seq)), HeadStatement(Role.PRESENCE, lie)),
                    genesis=fs.genesis.raw)
    evidence.check(good.encode())
    # Unknown statement types are carried and ignored (a later version adds cosigned checkpoints).
    extended = good.replace(statements=(*good.statements, OtherStatement("checkpoint-v9", "witness", b"note")))
    assert evidence.check(extended.encode()).ignored == ("checkpoint-v9",)

    other_key = nacl.signing.SigningKey.generate()
    forged = good.replace(statements=(good.statements[0], HeadStatement(
        Role.PRESENCE, fs.signed(fs.seq, lie.head, key=other_key))))
    with pytest.raises(EvidenceError, match="statement 2"):
        evidence.check(forged.encode())
    with pytest.raises(EvidenceError, match="pins relay key"):
        evidence.check(good.replace(relay_key=bytes(other_key.verify_key)).encode())
    with pytest.raises(EvidenceError, match="another space's"):
        evidence.check(good.replace(genesis=FakeSpace().genesis.raw).encode())
    with pytest.raises(EvidenceError, match="two heads at one seq"):
        evidence.check(good.replace(statements=good.statements[:1]).encode())
    signed = good.encode(fs.bob)
    body, signature = unpack(signed)
    with pytest.raises(EvidenceError, match="reporter's signature"):
        evidence.check(pack([body.replace(b"verified", b"verifiex"), signature]))
    fields = unpack(body)
    fields["v"] = 2
    with pytest.raises(EvidenceError, match="version 2"):
        evidence.check(pack([pack(fields), None]))
    with pytest.raises(EvidenceError, match="not an evidence file"):
        evidence.check(b"\x93not evidence")


def test_an_ack_head_ahead_that_a_later_frame_contradicts_is_a_fork_with_its_link() -> None:
    """An ack's head past our seq, then a frame through a later seq whose chain passes another
    hash there: the two heads and the frame's digests after that seq prove the fork, before
    anything of the frame is applied."""
    fs = FakeSpace()
    fs.write(fs.alice)
    v = fs.verifier(through=fs.seq)
    seq = v.seq
    v.note_signed_head(fs.signed(seq + 1, crypto.hash_parts(b"never served")))
    for _ in range(3):
        fs.write(fs.alice)
    with pytest.raises(ForkError) as caught:
        v.verify_frame(fs.frame(seq + 1))
    assert v.seq == seq
    finding = evidence.check(complete(fs, caught.value.proof).encode(fs.bob))
    assert finding.kind is EvidenceKind.FORK and finding.seq == seq + 1 and finding.bound
    assert "2 entries by digest" in finding.proves
    honest = fs.verifier(through=seq)
    honest.note_signed_head(fs.signed(seq + 1))
    honest.verify_frame(fs.frame(seq + 1))  # the same frame under an ack head that matches: fine
    assert honest.seq == fs.seq
