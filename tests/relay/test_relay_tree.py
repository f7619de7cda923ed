"""The relay's Merkle tree (encspaces_relay/tree.py): stored levels, proofs read from rows, and
the frontier, checked against the core's in-memory tree (itself checked against RFC 9162 and an
independent implementation in tests/core/test_merkle.py)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from encspaces.core import crypto, merkle
from encspaces_relay.tree import STRIDE, RelayTree, TreeBuilder, expected_nodes, leaf_of, plan


class Rows:
    """A store's tree rows in dicts, as ``tree_rows`` answers them; counts what was read."""

    def __init__(self) -> None:
        self.digests: dict[int, bytes] = {}
        self.nodes: dict[int, bytes] = {}
        self.reads: list[int] = []

    async def tree_rows(self, space: bytes, seqs: Sequence[int], keys: Sequence[int]) -> tuple[
            dict[int, bytes], dict[int, bytes]]:
        self.reads.append(len(seqs) + len(keys))
        return ({s: self.digests[s] for s in seqs if s in self.digests},
                {k: self.nodes[k] for k in keys if k in self.nodes})


def _grow(n: int) -> tuple[RelayTree, Rows, merkle.MerkleTree]:
    rows, reference, tree = Rows(), merkle.MerkleTree(), RelayTree()
    for seq in range(1, n + 1):
        digest = crypto.hash_parts(b"test digest", seq.to_bytes(8, "big"))
        rows.digests[seq] = digest
        rows.nodes.update(tree.extend([digest]))
        reference.append_hash(leaf_of(digest))
    tree.mark_durable()
    return tree, rows, reference


async def test_proofs_from_stored_rows_are_the_rfc_proofs() -> None:
    tree, rows, reference = _grow(300)
    assert tree.durable == (300, reference.root())
    assert len(rows.nodes) == expected_nodes(300) == 300 // 16 + 300 // 256
    rng = random.Random(7)
    for _ in range(200):
        second = rng.randint(1, 300)
        first = rng.randint(0, second)
        proof = await tree.consistency_proof(rows, b"", first, second)
        assert proof == reference.consistency_proof(first, second)
        merkle.verify_consistency(first, second, reference.root(first), reference.root(second), proof)
        index = rng.randrange(second)
        assert await tree.inclusion_proof(rows, b"", index, second) == reference.inclusion_proof(index, second)
        assert await tree.root_at(rows, b"", second) == reference.root(second)


async def test_a_proof_reads_few_rows_at_a_million_leaves() -> None:
    # Only the rows a proof names, not a million: a plan for sizes near 2**20 stays small.
    for first, second in [(1, 1_000_000), (999_999, 1_000_000), (524_287, 1_000_001)]:
        wanted = plan(merkle.consistency_nodes(first, second))
        assert len(wanted.seqs) + len(wanted.keys) <= 2 ** (STRIDE - 1) * 2 * 21
    wanted = plan(merkle.inclusion_nodes(123_456, 1_000_000))
    assert len(wanted.seqs) + len(wanted.keys) <= 2 ** (STRIDE - 1) * 21


async def test_sizes_past_the_durable_log_are_refused() -> None:
    tree, rows, _ = _grow(20)
    tree.extend([bytes(32)])  # appended, not yet durable
    with pytest.raises(merkle.MerkleArgumentError, match="past the durable log's 20"):
        await tree.consistency_proof(rows, b"", 1, 21)
    tree.mark_durable()
    with pytest.raises(merkle.MissingNodeError, match="seq 21"):  # the rows were never stored
        await tree.consistency_proof(rows, b"", 20, 21)


def test_a_failed_commit_puts_the_frontier_back() -> None:
    tree, _, reference = _grow(17)
    tree.extend([bytes(32)] * 5)
    assert tree.durable == (17, reference.root())  # not durable yet
    tree.rollback()
    assert (tree.size, tree.frontier.root()) == (17, reference.root())
    tree.extend([bytes(32)])
    tree.mark_durable()
    reference.append_hash(leaf_of(bytes(32)))
    assert tree.durable == (18, reference.root())


def test_the_load_builds_the_same_nodes_as_the_commits() -> None:
    tree, rows, _ = _grow(1000)
    builder = TreeBuilder()
    for seq in range(1, 1001):
        builder.add(rows.digests[seq])
    assert dict(builder.nodes) == rows.nodes
    assert builder.done().durable == tree.durable


def test_old_witnesses_are_asked_until_they_cosigned_past_the_change() -> None:
    from encspaces.core.log_state import LogState
    from encspaces.core.witness_policy import Witness, WitnessPolicy
    from encspaces_relay.checkpoints import witnesses_of

    a, b, c = (Witness(n, bytes([i]) * 32, "http://w") for i, n in enumerate("abc", start=1))
    state = LogState(bytes(32))
    state.witness_policies = [(1, WitnessPolicy((a, b), 1)), (7, WitnessPolicy((c,), 1))]
    assert {w.name for w in witnesses_of(state, {})} == {"a", "b", "c"}
    assert {w.name for w in witnesses_of(state, {"a": 7, "b": 6})} == {"b", "c"}
    state.witness_policies = [(1, WitnessPolicy((a,), 1)), (9, WitnessPolicy.NONE)]
    assert {w.name for w in witnesses_of(state, {"a": 9})} == set()
    assert witnesses_of(LogState(bytes(32)), {}) == []


async def test_proof_requests_past_the_burst_wait_instead_of_being_refused() -> None:
    from encspaces_relay.proofs import Pacer

    slept: list[float] = []
    now = [100.0]

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(rate=10.0, burst=3, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await pacer.wait()
    assert slept == []  # the burst
    await pacer.wait()
    await pacer.wait()
    assert slept == pytest.approx([0.1, 0.1])  # then one every 1/rate seconds
    now[0] += 10.0  # idle: the bucket fills up to the burst again, not beyond
    for _ in range(3):
        await pacer.wait()
    assert len(slept) == 2
    await pacer.wait()
    assert len(slept) == 3
