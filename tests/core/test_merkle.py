"""RFC 6962/9162 Merkle hashing and proofs (encspaces/core/merkle.py).

Three independent references: a deliberately naive implementation written here from the RFC's
recursive definitions (MTH, PATH, SUBPROOF), the proof verifiers of tlog-scales (an independent
C2SP/RFC 9162 implementation installed from PyPI, dev extra), and its tile writer's roots.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_scales.tlog import ConsistencyProof, ConsistencyProofInvalid, InclusionProof, InclusionProofInvalid
from tlog_scales.writer import TilesWriter

from encspaces.core import merkle
from encspaces.errors import MerkleArgumentError, MerkleProofError, MissingNodeError

# --- the naive reference, straight from RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 -------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def naive_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _h(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:]))


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [naive_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, leaves[:k], b), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def leaves_of(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") * (i % 3) for i in range(n)]


def tree_of(leaves: list[bytes]) -> merkle.MerkleTree:
    tree = merkle.MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    return tree


SIZES = [*range(0, 34), 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000]


def test_hash_primitives_are_rfc6962() -> None:
    assert hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(b"abc") == _h(b"\x00abc")
    assert merkle.node_hash(b"L" * 32, b"R" * 32) == _h(b"\x01" + b"L" * 32 + b"R" * 32)
    assert merkle.root_of([]) == merkle.EMPTY_ROOT


@pytest.mark.parametrize("n", SIZES)
def test_roots_match_the_naive_definition_at_every_earlier_size(n: int) -> None:
    leaves = leaves_of(n)
    tree = tree_of(leaves)
    assert tree.root() == naive_mth(leaves)
    assert merkle.root_of([merkle.leaf_hash(x) for x in leaves]) == naive_mth(leaves)
    for m in range(min(n, 40) + 1):
        assert tree.root(m) == naive_mth(leaves[:m])


def test_roots_match_tlog_scales_tile_writer(tmp_path: Path) -> None:
    """tlog-scales computes the root through its own tiles (256-wide), across several commits."""
    writer = TilesWriter.create(tmp_path / "log", "example.org/test")
    tree = merkle.MerkleTree()
    for n in (1, 2, 3, 5, 255, 256, 257, 600):
        while tree.size < n:
            leaf = tree.size.to_bytes(8, "big")
            writer.add_leaf(leaf)
            tree.append(leaf)
        writer.commit([])
        assert writer.reader.calculate_root_hash() == tree.root(), n


@pytest.mark.parametrize("n", [n for n in SIZES if n > 0])
def test_inclusion_proofs_match_rfc_and_verify_independently(n: int) -> None:
    leaves = leaves_of(n)
    tree = tree_of(leaves)
    for size in sorted({1, n // 2 or 1, n}):
        root = tree.root(size)
        for m in range(size):
            proof = tree.inclusion_proof(m, size)
            assert proof == naive_path(m, leaves[:size])
            merkle.verify_inclusion(m, size, merkle.leaf_hash(leaves[m]), proof, root)
            InclusionProof(m, size, proof).check(merkle.leaf_hash(leaves[m]), root)


@pytest.mark.parametrize("n", [n for n in SIZES if 0 < n <= 257])
def test_root_and_every_proof_of_a_small_tree_match_the_rfc(n: int) -> None:
    leaves = leaves_of(n)
    root, proofs = merkle.root_and_proofs([merkle.leaf_hash(leaf) for leaf in leaves])
    assert root == naive_mth(leaves)
    assert proofs == [naive_path(m, leaves) for m in range(n)]


def test_root_and_proofs_needs_a_leaf() -> None:
    with pytest.raises(MerkleArgumentError):
        merkle.root_and_proofs([])


@pytest.mark.parametrize("n", [n for n in SIZES if n > 0])
def test_consistency_proofs_match_rfc_and_verify_independently(n: int) -> None:
    leaves = leaves_of(n)
    tree = tree_of(leaves)
    for old in range(0, n + 1):
        proof = tree.consistency_proof(old, n)
        expected = [] if old in (0, n) else naive_subproof(old, leaves, True)
        assert proof == expected
        merkle.verify_consistency(old, n, tree.root(old), tree.root(), proof)
        ConsistencyProof(old, n, proof).check(tree.root(old), tree.root())


def test_independent_verifier_rejects_what_we_reject() -> None:
    tree = tree_of(leaves_of(13))
    proof = tree.consistency_proof(5, 13)
    bad = [proof[0], bytes(32), *proof[2:]]
    with pytest.raises(MerkleProofError):
        merkle.verify_consistency(5, 13, tree.root(5), tree.root(), bad)
    with pytest.raises(ConsistencyProofInvalid):
        ConsistencyProof(5, 13, bad).check(tree.root(5), tree.root())
    iproof = tree.inclusion_proof(4, 13)
    with pytest.raises(MerkleProofError):
        merkle.verify_inclusion(5, 13, tree.leaf_hash_at(4), iproof, tree.root())
    with pytest.raises(InclusionProofInvalid):
        InclusionProof(5, 13, iproof).check(tree.leaf_hash_at(4), tree.root())


def test_sans_io_plan_names_exactly_the_nodes_read() -> None:
    leaves = leaves_of(1000)
    store = merkle.MemoryNodeStore()
    tree = merkle.MerkleTree(store)
    for leaf in leaves:
        tree.append(leaf)
    for index, size in [(0, 1000), (999, 1000), (517, 777), (3, 4)]:
        needed = merkle.inclusion_nodes(index, size)
        nodes = {k: store.get(*k) for k in needed}
        fetched = merkle.inclusion_proof(index, size, lambda lv, i, nodes=nodes: nodes[(lv, i)])
        assert fetched == tree.inclusion_proof(index, size)
        assert len(needed) <= 2 * size.bit_length()
    for old, new in [(1, 1000), (511, 1000), (600, 777), (999, 1000)]:
        needed = merkle.consistency_nodes(old, new)
        nodes = {k: store.get(*k) for k in needed}
        fetched = merkle.consistency_proof(old, new, lambda lv, i, nodes=nodes: nodes[(lv, i)])
        assert fetched == tree.consistency_proof(old, new)
        assert len(needed) <= 2 * new.bit_length()
    needed = merkle.root_nodes(777)
    nodes = {k: store.get(*k) for k in needed}
    assert merkle.root_at(777, lambda lv, i: nodes[(lv, i)]) == tree.root(777)


def test_frontier_reopens_a_stored_tree_and_extends_it() -> None:
    leaves = leaves_of(300)
    store = merkle.MemoryNodeStore()
    first = merkle.MerkleTree(store)
    first.extend_hashes(merkle.leaf_hash(x) for x in leaves[:123])
    again = merkle.MerkleTree(store)  # as after a restart: only the store survives
    assert again.size == 123 and again.root() == naive_mth(leaves[:123])
    for leaf in leaves[123:]:
        again.append(leaf)
    assert again.root() == naive_mth(leaves) and again.root(123) == naive_mth(leaves[:123])


def test_entry_leaf_is_context_then_digest() -> None:
    digest = bytes(range(32))
    assert merkle.entry_leaf(digest) == b"encspaces/v1/log-leaf\n" + digest
    with pytest.raises(MerkleArgumentError):
        merkle.entry_leaf(b"short")


def test_out_of_range_requests_are_refused_precisely() -> None:
    tree = tree_of(leaves_of(5))
    with pytest.raises(MerkleArgumentError, match="leaf index 5 is not in a tree of 5"):
        tree.inclusion_proof(5)
    with pytest.raises(MerkleArgumentError, match="past the tree's 5 leaves"):
        tree.root(6)
    with pytest.raises(MerkleArgumentError, match="from size 4 to size 3"):
        tree.consistency_proof(4, 3)
    with pytest.raises(MissingNodeError):
        merkle.MemoryNodeStore().get(0, 0)


def test_degenerate_consistency_cases() -> None:
    tree = tree_of(leaves_of(6))
    merkle.verify_consistency(0, 6, merkle.EMPTY_ROOT, tree.root(), [])
    merkle.verify_consistency(6, 6, tree.root(), tree.root(), [])
    with pytest.raises(MerkleProofError, match="two roots at one size"):
        merkle.verify_consistency(6, 6, tree.root(), tree.root(5), [])
    with pytest.raises(MerkleProofError, match="empty tree's root"):
        merkle.verify_consistency(0, 6, tree.root(), tree.root(), [])
    with pytest.raises(MerkleProofError, match="old size is larger"):
        merkle.verify_consistency(7, 6, tree.root(), tree.root(), [])
    with pytest.raises(MerkleProofError, match="empty proof"):
        merkle.verify_consistency(3, 6, tree.root(3), tree.root(), [])
    with pytest.raises(MerkleProofError, match="hash 0 has 31 bytes"):
        merkle.verify_inclusion(0, 6, tree.leaf_hash_at(0), [bytes(31)], tree.root())


# --- properties: every generated proof verifies, every one-bit mutation fails -------------------


def _flip(proof: list[bytes], bit: int) -> list[bytes]:
    i, rest = divmod(bit, 256)
    h = bytearray(proof[i])
    h[rest // 8] ^= 1 << (rest % 8)
    return [*proof[:i], bytes(h), *proof[i + 1 :]]


_TREE = tree_of(leaves_of(700))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_property_inclusion_verifies_and_every_bit_flip_fails(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, _TREE.size))
    index = data.draw(st.integers(0, size - 1))
    proof = _TREE.inclusion_proof(index, size)
    root, leaf = _TREE.root(size), _TREE.leaf_hash_at(index)
    merkle.verify_inclusion(index, size, leaf, proof, root)
    if proof:
        bit = data.draw(st.integers(0, 256 * len(proof) - 1))
        with pytest.raises(MerkleProofError):
            merkle.verify_inclusion(index, size, leaf, _flip(proof, bit), root)
    leaf_bit = data.draw(st.integers(0, 255))
    with pytest.raises(MerkleProofError):
        merkle.verify_inclusion(index, size, _flip([leaf], leaf_bit)[0], proof, root)
    with pytest.raises(MerkleProofError):
        merkle.verify_inclusion(index, size, leaf, proof, _flip([root], leaf_bit)[0])


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_property_consistency_verifies_and_every_bit_flip_fails(data: st.DataObject) -> None:
    new = data.draw(st.integers(1, _TREE.size))
    old = data.draw(st.integers(1, new))
    proof = _TREE.consistency_proof(old, new)
    old_root, new_root = _TREE.root(old), _TREE.root(new)
    merkle.verify_consistency(old, new, old_root, new_root, proof)
    if proof:
        bit = data.draw(st.integers(0, 256 * len(proof) - 1))
        with pytest.raises(MerkleProofError):
            merkle.verify_consistency(old, new, old_root, new_root, _flip(proof, bit))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(MerkleProofError):
        merkle.verify_consistency(old, new, _flip([old_root], bit)[0], new_root, proof)
    with pytest.raises(MerkleProofError):
        merkle.verify_consistency(old, new, old_root, _flip([new_root], bit)[0], proof)
