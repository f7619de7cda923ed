"""The witness policy: its validation and encoding, in genesis and in the ``witnesses`` control
entry, and its history in LogState (which checkpoint sizes each policy governs)."""

from __future__ import annotations

import nacl.signing
import pytest

from encspaces.core.encoding import pack, unpack
from encspaces.core.entry import Entry, Kind
from encspaces.core.log_state import LogState
from encspaces.core.membership import GenesisBody, Role
from encspaces.core.note import Checkpoint, CosignatureSigner, Ed25519Signer, SignedCheckpoint, space_origin
from encspaces.core.witness_policy import MAX_WITNESSES, Witness, WitnessPolicy
from encspaces.errors import InvalidArgumentError, MalformedEntryError, PermissionDeniedError, ProtocolError

from .fakes import FakeSpace


def _witness(i: int) -> Witness:
    key = bytes(nacl.signing.SigningKey(bytes([i + 1]) * 32).verify_key)
    return Witness(f"witness-{i}.example", key, f"https://w{i}.example:8766")


def _replay(fs: FakeSpace) -> LogState:
    state = LogState(fs.space)
    for seq in range(1, fs.seq + 1):
        entry = Entry.decode(fs.raws[seq - 1])
        state.check(entry, seq)
        state.apply(entry, seq, fs.heads[seq])
    return state


def test_validation_names_what_is_wrong() -> None:
    a, b = _witness(0), _witness(1)
    assert WitnessPolicy((a, b), 2).quorum == 2
    with pytest.raises(InvalidArgumentError, match="quorum of 3 with 2 witnesses"):
        WitnessPolicy((a, b), 3)
    with pytest.raises(InvalidArgumentError, match="quorum of 0 with 2"):
        WitnessPolicy((a, b), 0)
    with pytest.raises(InvalidArgumentError, match="without witnesses"):
        WitnessPolicy((), 1)
    with pytest.raises(InvalidArgumentError, match="share a name"):
        WitnessPolicy((a, Witness(a.name, b.key, b.url)), 1)
    with pytest.raises(InvalidArgumentError, match="share a key"):
        WitnessPolicy((a, Witness("other", a.key, b.url)), 1)
    with pytest.raises(InvalidArgumentError, match=f"at most {MAX_WITNESSES}"):
        WitnessPolicy(tuple(_witness(i) for i in range(MAX_WITNESSES + 1)), 1)
    with pytest.raises(InvalidArgumentError, match="key name"):
        Witness("has space", a.key, a.url)
    with pytest.raises(InvalidArgumentError, match="32 bytes"):
        Witness("w", b"short", a.url)
    with pytest.raises(InvalidArgumentError, match="http"):
        Witness("w", a.key, "ftp://w.example")
    # An API caller's defaults: a majority; nothing at all is NONE.
    assert WitnessPolicy.of([a, b, _witness(2)], None).quorum == 2
    assert WitnessPolicy.of(None, None) is WitnessPolicy.NONE
    assert not WitnessPolicy.NONE.enabled


def test_a_witness_from_the_key_the_daemon_prints() -> None:
    signer = CosignatureSigner("encspaces-witness/abc", nacl.signing.SigningKey.generate())
    w = Witness.from_vkey(signer.verifier().vkey() + "\n", "http://127.0.0.1:8766/")
    assert (w.name, w.key, w.url) == ("encspaces-witness/abc", signer.verifier().public_key, "http://127.0.0.1:8766")
    assert w.vkey == signer.verifier().vkey()
    log_key = Ed25519Signer("relay", nacl.signing.SigningKey.generate()).verifier().vkey()
    with pytest.raises(InvalidArgumentError, match="type 0x04"):
        Witness.from_vkey(log_key, "http://x")


def test_quorum_counts_only_this_policys_witnesses() -> None:
    keys = [nacl.signing.SigningKey.generate() for _ in range(3)]
    signers = [CosignatureSigner(f"w{i}", k) for i, k in enumerate(keys)]
    policy = WitnessPolicy(tuple(Witness(s.name, s.verifier().public_key, "http://w") for s in signers[:2]), 2)
    relay = Ed25519Signer(space_origin(bytes(32)), nacl.signing.SigningKey.generate())
    cp = SignedCheckpoint.sign(Checkpoint(relay.name, 3, bytes(32)), relay)
    cosigned = cp.with_signatures([cp.cosign(s, 10) for s in signers])
    verified = cosigned.verify([relay.verifier(), *policy.verifiers(), signers[2].verifier()])
    assert policy.cosigners(verified) == {"w0", "w1"}
    assert policy.met_by({"w0", "w1"}) and not policy.met_by({"w0", "w2"})
    assert not WitnessPolicy.NONE.met_by(set())


def test_encoding_round_trips_and_refuses_bad_forms() -> None:
    policy = WitnessPolicy((_witness(0), _witness(1)), 1)
    encoded = policy.encode()
    assert encoded == {"witnesses": [[w.name, w.key, w.url] for w in policy.witnesses], "quorum": 1}
    assert WitnessPolicy.decode(unpack(pack(encoded))) == policy
    assert WitnessPolicy.decode_body(policy.encode_body()) == policy
    assert unpack(policy.encode_body())["v"] == 1
    with pytest.raises(ProtocolError, match="quorum of 2 with 1"):
        WitnessPolicy.decode({"witnesses": [encoded["witnesses"][0]], "quorum": 2})
    with pytest.raises(ProtocolError, match="witness key"):
        WitnessPolicy.decode({"witnesses": [["w", b"x", "http://w"]], "quorum": 1})
    with pytest.raises(ProtocolError, match="version 2"):
        WitnessPolicy.decode_body(pack({"v": 2, **encoded}))


def test_a_genesis_without_witnesses_has_the_bytes_of_before() -> None:
    fs = FakeSpace(with_members=False)
    body = unpack(fs.genesis.body)
    assert set(body) == {"v", "creator_box", "relay", "key", "commit", "client_ids"}  # (client ids: core/client_ids.py)
    assert GenesisBody.decode(fs.genesis.body).witnesses is WitnessPolicy.NONE
    state = _replay(fs)
    assert state.witness_policy is WitnessPolicy.NONE
    assert state.witness_policies == [(1, WitnessPolicy.NONE)]


def test_genesis_names_the_witnesses() -> None:
    policy = WitnessPolicy((_witness(0), _witness(1), _witness(2)), 2)
    fs = FakeSpace(witnesses=policy)
    assert unpack(fs.genesis.body)["quorum"] == 2
    state = _replay(fs)
    assert state.witness_policy == policy
    assert state.witness_policy_at(1) == state.witness_policy_at(10**9) == policy


def test_an_empty_policy_in_genesis_is_refused() -> None:
    fs = FakeSpace(with_members=False)
    body = unpack(fs.genesis.body)
    body.update({"witnesses": [], "quorum": 0})
    with pytest.raises(MalformedEntryError, match="leaving the keys out"):
        GenesisBody.decode(pack(body))


def test_an_admin_replaces_the_policy_and_the_history_says_from_which_size() -> None:
    first = WitnessPolicy((_witness(0),), 1)
    second = WitnessPolicy((_witness(1), _witness(2)), 2)
    fs = FakeSpace(witnesses=first)  # seqs 1..3
    fs.write(fs.bob)  # 4
    fs.write(fs.alice, second.encode_body(), kind=Kind.WITNESSES)  # 5
    fs.write(fs.bob)  # 6
    fs.write(fs.alice, WitnessPolicy.NONE.encode_body(), kind=Kind.WITNESSES)  # 7: witnesses dropped
    state = _replay(fs)
    assert state.witness_policies == [(1, first), (5, second), (7, WitnessPolicy.NONE)]
    assert state.witness_policy is not None and not state.witness_policy.enabled
    assert [state.witness_policy_at(n) for n in (0, 1, 4, 5, 6, 7, 100)] == [
        WitnessPolicy.NONE, first, first, second, second, WitnessPolicy.NONE, WitnessPolicy.NONE]
    # A checkpoint of the state carries the history.
    restored = LogState.restore(fs.space, state.export(), list(state.heads))
    assert restored.witness_policies == state.witness_policies


def test_only_an_admin_sets_the_witnesses() -> None:
    fs = FakeSpace()
    entry = fs.make(fs.bob, WitnessPolicy((_witness(0),), 1).encode_body(), kind=Kind.WITNESSES)
    entry.check_signature()
    with pytest.raises(PermissionDeniedError, match="may not set the witnesses"):
        fs.state.check(entry, fs.seq + 1)
    assert fs.state.role_of(fs.bob.public.sign_key) is Role.WRITER


def test_a_malformed_witnesses_entry_is_refused_and_changes_nothing() -> None:
    fs = FakeSpace()
    bad = pack({"v": 1, "witnesses": [["w", bytes(32), "http://w"]], "quorum": 2})
    entry = fs.make(fs.alice, bad, kind=Kind.WITNESSES)
    with pytest.raises(MalformedEntryError, match="quorum of 2 with 1"):
        fs.state.check(entry, fs.seq + 1)
    assert fs.state.witness_policies == [(1, WitnessPolicy.NONE)]


def test_rollback_restores_the_policy() -> None:
    fs = FakeSpace()
    state = _replay(fs)
    fs.write(fs.alice, WitnessPolicy((_witness(0),), 1).encode_body(), kind=Kind.WITNESSES)
    state.begin()
    entry = Entry.decode(fs.raws[-1])
    state.check(entry, fs.seq)
    state.apply(entry, fs.seq, fs.heads[fs.seq])
    assert state.witness_policy.enabled
    state.rollback()
    assert state.witness_policies == [(1, WitnessPolicy.NONE)]
