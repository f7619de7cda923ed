"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and an append-only tree (pure).

The tree hashing is bit-exact RFC 6962 (§2.1) so that standard tools and test vectors verify:

- leaf hash ``SHA-256(0x00 || leaf input)``, interior node ``SHA-256(0x01 || left || right)``;
- the root of the empty tree is ``SHA-256()`` (of nothing);
- the root of n > 1 leaves splits at k, the largest power of two below n.

SHA-256 comes from hashlib: on 32 + 32 + 1 bytes it measured 0.53 µs a hash against 1.22 µs for
libsodium through ``nacl.bindings.crypto_hash_sha256`` (the FFI call dominates), and interior
hashing is the hot path of building trees and checking proofs.

**The leaf of an encspaces entry** (:func:`entry_leaf`) is ``LEAF_CONTEXT || digest`` where
``digest`` is the entry's 32-byte digest (``Entry.digest()``: BLAKE2b over its exact header bytes,
body hash and author signature, the value the relay's hash chain already commits to). Leaf index
``i`` holds the entry at seq ``i + 1``. Domain separation lives in that leaf input, the tree itself
is plain RFC 6962. The digest rather than the full entry bytes, because the relay may drop an
encrypted body (compaction, catch-up from a snapshot) and the leaf must stay checkable from what
a member holds after that; the digest covers the body through its signed hash.

**Storage.** :class:`MerkleTree` keeps every *complete subtree hash* in a :class:`NodeStore`,
keyed by ``(level, index)``: the node at level ``L``, index ``i`` is the root of the ``2**L``
leaves ``[i * 2**L, (i + 1) * 2**L)``; level 0 holds the leaf hashes. That is about ``2n``
hashes for n leaves, each written once when its subtree completes and never changed, and it is
enough to answer the root at *any* earlier size and every inclusion or consistency proof with
``O(log n)`` lookups: any range the RFC recursion visits is either a complete subtree (one lookup)
or a suffix ``[k, size)`` built from at most ``log2(size)`` complete subtrees, computed once per
call. The relay, which talks to SQLite asynchronously, can use the sans-I/O form instead: ask
:func:`inclusion_nodes` / :func:`consistency_nodes` / :func:`root_nodes` which ``(level, index)``
keys a proof needs, fetch them in one query, and call :func:`inclusion_proof` /
:func:`consistency_proof` / :func:`root_at` with a ``dict`` lookup; append through
:class:`Frontier` (the ``log2(n)`` peaks, kept in memory), which returns the nodes to persist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from ..errors import MerkleArgumentError, MerkleProofError, MissingNodeError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
# Fixed length, so LEAF_CONTEXT || digest is unambiguous.
LEAF_CONTEXT = b"encspaces/v1/log-leaf\n"
# RFC 9162 bounds: a proof for a tree of at most 2**64 leaves has at most 64 hashes.
MAX_PROOF_HASHES = 64

_sha256 = hashlib.sha256

Lookup = Callable[[int, int], bytes]
"""``lookup(level, index)`` -> the complete-subtree hash at that position."""

NodeId = tuple[int, int]


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``: the hash of one leaf input."""
    return _sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an interior node."""
    return _sha256(NODE_PREFIX + left + right).digest()


def entry_leaf(entry_digest: bytes) -> bytes:
    """The leaf input of an encspaces entry: ``LEAF_CONTEXT || Entry.digest()``."""
    if len(entry_digest) != HASH_SIZE:
        raise MerkleArgumentError(f"an entry digest has {HASH_SIZE} bytes, found {len(entry_digest)}")
    return LEAF_CONTEXT + entry_digest


def root_and_proofs(leaf_hashes: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root of a small tree and every leaf's inclusion proof, each subtree hashed once.

    O(n) hashes and O(n log n) list appends, against a proof per leaf from a node store:
    what signing a batch of heads needs (``head.SignedHead.create_batch``)."""
    if not leaf_hashes:
        raise MerkleArgumentError("a tree to prove inclusion in needs at least one leaf")
    proofs: list[list[bytes]] = [[] for _ in leaf_hashes]

    def build(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return leaf_hashes[lo]
        mid = lo + _split(hi - lo)
        left, right = build(lo, mid), build(mid, hi)
        for i in range(lo, mid):
            proofs[i].append(right)
        for i in range(mid, hi):
            proofs[i].append(left)
        return node_hash(left, right)

    return build(0, len(leaf_hashes)), proofs


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _peaks(start: int, end: int) -> list[NodeId]:
    """The complete aligned subtrees covering [start, end), largest first (RFC split order)."""
    out: list[NodeId] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while (1 << level) > end - start:
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Fold peaks from the right: node(p0, node(p1, ... node(p_{k-2}, p_{k-1})))."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 6962 root of these leaf hashes (already hashed with :func:`leaf_hash`)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    # Stack of (level, hash) peaks: merging equal levels as leaves arrive is the RFC structure.
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        level, acc = 0, h
        while stack and stack[-1][0] == level:
            acc = node_hash(stack.pop()[1], acc)
            level += 1
        stack.append((level, acc))
    return _fold([h for _, h in stack])


class _Ranges:
    """MTH over the ranges an RFC recursion visits, with complete subtrees looked up and
    incomplete (suffix) ranges computed once per call."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._memo: dict[tuple[int, int], bytes] = {}

    def mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            return self._lookup(level, start >> level)
        key = (start, end)
        found = self._memo.get(key)
        if found is None:
            k = _split(n)
            found = node_hash(self.mth(start, start + k), self.mth(start + k, end))
            self._memo[key] = found
        return found


def _check_size(size: int, tree_size: int | None) -> None:
    if size < 0:
        raise MerkleArgumentError(f"tree size {size} is negative")
    if tree_size is not None and size > tree_size:
        raise MerkleArgumentError(f"tree size {size} is past the tree's {tree_size} leaves")


def root_at(size: int, lookup: Lookup) -> bytes:
    """The root of the first ``size`` leaves, from complete-subtree hashes."""
    _check_size(size, None)
    if size == 0:
        return EMPTY_ROOT
    return _fold([lookup(level, index) for level, index in _peaks(0, size)])


def inclusion_proof(index: int, size: int, lookup: Lookup) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, bottom-up."""
    if not 0 <= index < size:
        raise MerkleArgumentError(f"leaf index {index} is not in a tree of {size} leaves")
    ranges = _Ranges(lookup)
    proof: list[bytes] = []
    start, end, m = 0, size, index
    # Walk down recording the sibling at each split; the RFC lists them deepest first.
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            proof.append(ranges.mth(start + k, end))
            end = start + k
        else:
            proof.append(ranges.mth(start, start + k))
            start, m = start + k, m - k
    proof.reverse()
    return proof


def consistency_proof(old_size: int, new_size: int, lookup: Lookup) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1 (empty when old is 0 or equal)."""
    if not 0 <= old_size <= new_size:
        raise MerkleArgumentError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    ranges = _Ranges(lookup)
    proof: list[bytes] = []
    start, end, m, complete = 0, new_size, old_size, True
    # SUBPROOF(m, D[start:end], complete), iteratively; appends go after the recursive part.
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(ranges.mth(start, end))
            break
        k = _split(n)
        if m <= k:
            proof.append(ranges.mth(start + k, end))
            end = start + k
        else:
            proof.append(ranges.mth(start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


def _recorded(run: Callable[[Lookup], object]) -> list[NodeId]:
    seen: dict[NodeId, None] = {}

    def record(level: int, index: int) -> bytes:
        seen[(level, index)] = None
        return bytes(HASH_SIZE)

    run(record)
    return list(seen)


def root_nodes(size: int) -> list[NodeId]:
    """The ``(level, index)`` keys :func:`root_at` reads for ``size``."""
    return _recorded(lambda lookup: root_at(size, lookup))


def inclusion_nodes(index: int, size: int) -> list[NodeId]:
    """The ``(level, index)`` keys :func:`inclusion_proof` reads (at most ~2·log2(size))."""
    return _recorded(lambda lookup: inclusion_proof(index, size, lookup))


def consistency_nodes(old_size: int, new_size: int) -> list[NodeId]:
    """The ``(level, index)`` keys :func:`consistency_proof` reads."""
    return _recorded(lambda lookup: consistency_proof(old_size, new_size, lookup))


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------------------


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise MerkleProofError(f"{what} has {len(proof)} hashes, at most {MAX_PROOF_HASHES} are possible")
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise MerkleProofError(f"{what}: hash {i} has {len(h)} bytes, expected {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` yields for leaf hash ``leaf`` at ``index`` in a tree of ``size``."""
    if not 0 <= index < size:
        raise MerkleProofError(f"inclusion proof: leaf index {index} is not in a tree of {size} leaves")
    _check_hashes(proof, "inclusion proof")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise MerkleProofError(f"inclusion proof of leaf {index} in size {size}: {len(proof)} hashes, too many")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError(f"inclusion proof of leaf {index} in size {size}: {len(proof)} hashes, too few")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise MerkleProofError unless ``proof`` shows leaf hash ``leaf`` at ``index`` under ``root``."""
    found = root_from_inclusion(index, size, leaf, proof)
    if found != root:
        raise MerkleProofError(
            f"inclusion proof of leaf {index} in size {size}: yields root {found.hex()[:16]}…, "
            f"expected {root.hex()[:16]}…"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise MerkleProofError unless ``proof`` shows the tree ``old_root`` of ``old_size`` is a
    prefix of the tree ``new_root`` of ``new_size``."""
    where = f"consistency proof from size {old_size} to {new_size}"
    if not 0 <= old_size <= new_size:
        raise MerkleProofError(f"{where}: the old size is larger")
    _check_hashes(proof, where)
    if old_size == new_size:
        if proof:
            raise MerkleProofError(f"{where}: equal sizes take an empty proof, found {len(proof)} hashes")
        if old_root != new_root:
            raise MerkleProofError(
                f"{where}: two roots at one size, {old_root.hex()[:16]}… and {new_root.hex()[:16]}…"
            )
        return
    if old_size == 0:
        if proof:
            raise MerkleProofError(f"{where}: the empty tree takes an empty proof, found {len(proof)} hashes")
        if old_root != EMPTY_ROOT:
            raise MerkleProofError(f"{where}: the empty tree's root is SHA-256(''), found {old_root.hex()[:16]}…")
        return
    if not proof:
        raise MerkleProofError(f"{where}: empty proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleProofError(f"{where}: {len(proof)} hashes, too many")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError(f"{where}: {len(proof)} hashes, too few")
    if fr != old_root:
        raise MerkleProofError(f"{where}: yields old root {fr.hex()[:16]}…, expected {old_root.hex()[:16]}…")
    if sr != new_root:
        raise MerkleProofError(f"{where}: yields new root {sr.hex()[:16]}…, expected {new_root.hex()[:16]}…")


# --- the append-only tree ----------------------------------------------------------------------


class NodeStore(Protocol):
    """Where a :class:`MerkleTree` keeps its complete-subtree hashes (see the module docstring)."""

    def get(self, level: int, index: int) -> bytes:
        """The hash at ``(level, index)``; raise :class:`MissingNodeError` if absent."""
        ...

    def put_many(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Store ``(level, index, hash)`` rows; they are written once and never change."""
        ...

    def leaf_count(self) -> int:
        """How many level-0 nodes (leaf hashes) are stored: the tree's size."""
        ...


class MemoryNodeStore:
    """A :class:`NodeStore` in a dict, for tests, the witness and benchmarks."""

    def __init__(self) -> None:
        self._nodes: dict[NodeId, bytes] = {}
        self._leaves = 0

    def get(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[(level, index)]
        except KeyError:
            raise MissingNodeError(f"no complete subtree hash at level {level}, index {index}") from None

    def put_many(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        for level, index, value in nodes:
            self._nodes[(level, index)] = value
            if level == 0:
                self._leaves = max(self._leaves, index + 1)

    def leaf_count(self) -> int:
        return self._leaves


class Frontier:
    """The peaks of a tree (its ``log2(n)`` largest complete subtrees): enough to append a leaf
    and give the new root without reading any store. ``append`` returns the new complete
    subtrees to persist."""

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        expected = _peaks(0, size)
        if len(peaks) != len(expected):
            raise MerkleArgumentError(f"a tree of {size} leaves has {len(expected)} peaks, given {len(peaks)}")
        self.size = size
        self._peaks: list[tuple[int, bytes]] = [(level, h) for (level, _), h in zip(expected, peaks, strict=True)]

    @classmethod
    def load(cls, size: int, lookup: Lookup) -> Frontier:
        """The frontier of a stored tree of ``size`` leaves (``log2(size)`` lookups)."""
        return cls(size, [lookup(level, index) for level, index in _peaks(0, size)])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add the leaf hash ``leaf``; return the ``(level, index, hash)`` nodes it completes."""
        index = self.size
        level, acc = 0, leaf
        new = [(0, index, leaf)]
        peaks = self._peaks
        while peaks and peaks[-1][0] == level:
            acc = node_hash(peaks.pop()[1], acc)
            level += 1
            index >>= 1
            new.append((level, index, acc))
        peaks.append((level, acc))
        self.size += 1
        return new

    def root(self) -> bytes:
        return _fold([h for _, h in self._peaks]) if self._peaks else EMPTY_ROOT

    def peaks(self) -> list[bytes]:
        """The peak hashes, largest subtree first: with ``size``, what :class:`Frontier` takes back."""
        return [h for _, h in self._peaks]

    def copy(self) -> Frontier:
        """An independent frontier of the same tree: to keep, or to put back (one list copy of
        the ``log2(n)`` peaks, cheap enough for every commit)."""
        clone = Frontier.__new__(Frontier)
        clone.size = self.size
        clone._peaks = list(self._peaks)  # (level, hash) tuples are immutable: sharing them is safe
        return clone


class MerkleTree:
    """An append-only RFC 6962 tree over a :class:`NodeStore`."""

    def __init__(self, store: NodeStore | None = None) -> None:
        self._store: NodeStore = MemoryNodeStore() if store is None else store
        self._frontier = Frontier.load(self._store.leaf_count(), self._store.get)

    @property
    def size(self) -> int:
        return self._frontier.size

    def append(self, leaf_input: bytes) -> int:
        """Append a leaf input (hashed here); return its index."""
        return self.append_hash(leaf_hash(leaf_input))

    def append_hash(self, leaf: bytes) -> int:
        """Append an already hashed leaf; return its index."""
        if len(leaf) != HASH_SIZE:
            raise MerkleArgumentError(f"a leaf hash has {HASH_SIZE} bytes, found {len(leaf)}")
        index = self._frontier.size
        self._store.put_many(self._frontier.append(leaf))
        return index

    def extend_hashes(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes with one ``put_many``."""
        nodes: list[tuple[int, int, bytes]] = []
        for leaf in leaves:
            if len(leaf) != HASH_SIZE:
                raise MerkleArgumentError(f"a leaf hash has {HASH_SIZE} bytes, found {len(leaf)}")
            nodes.extend(self._frontier.append(leaf))
        self._store.put_many(nodes)

    def root(self, size: int | None = None) -> bytes:
        """The root now, or at an earlier ``size``."""
        if size is None:
            return self._frontier.root()
        _check_size(size, self.size)
        return root_at(size, self._store.get)

    def leaf_hash_at(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise MerkleArgumentError(f"leaf index {index} is not in a tree of {self.size} leaves")
        return self._store.get(0, index)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        _check_size(size, self.size)
        return inclusion_proof(index, size, self._store.get)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = self.size if new_size is None else new_size
        _check_size(new_size, self.size)
        return consistency_proof(old_size, new_size, self._store.get)
