"""A space's Merkle tree at the relay: the in-memory frontier, the stored nodes, and proofs.

The tree is RFC 6962 over the space's log (``encspaces.core.merkle``: leaf ``i`` is the entry
at seq ``i + 1``, leaf input ``LEAF_CONTEXT || Entry.digest()``). What is kept where:

- **Leaves** are not stored again: each entry row already holds its digest, and a leaf hash
  is one SHA-256 of it.
- **Interior nodes** are stored only at every ``STRIDE``-th level (4, 8, 12, ...): the root of
  each complete, aligned run of 16, 256, 4096... leaves, about ``n / 15`` rows for ``n``
  entries, written in the same transaction as the entries that complete them (so the stored
  tree never lags the stored log). Any other complete subtree hash is folded from at most
  ``2 ** (STRIDE - 1) = 8`` stored nodes (or leaves) of the stored level below it, so a proof
  reads ``O(log n)`` rows with one query and hashes ``O(log n)``.
- **The frontier** (``merkle.Frontier``: the ``log2 n`` peaks) lives in memory, rebuilt when
  the space loads: appending is ``O(1)`` amortised, the root at the head ``O(log n)``.

Stored node keys pack ``(level, index)`` into one integer, ``level << 48 | index``, so a store
fetches a proof's nodes with one ``IN`` (or ``= ANY``) over a single primary-key column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from encspaces.core import merkle
from encspaces.errors import MerkleArgumentError, MissingNodeError

STRIDE = 4
_INDEX_BITS = 48
NodeId = tuple[int, int]
StoredNode = tuple[int, bytes]  # (packed key, hash)


def leaf_of(digest: bytes) -> bytes:
    """The leaf hash of the entry with this digest."""
    return merkle.leaf_hash(merkle.entry_leaf(digest))


def node_key(level: int, index: int) -> int:
    if not 0 < level < 64 or not 0 <= index < 1 << _INDEX_BITS:
        raise MerkleArgumentError(f"no stored node at level {level}, index {index}")
    return level << _INDEX_BITS | index


def is_stored_level(level: int) -> bool:
    return level > 0 and level % STRIDE == 0


class TreeReader(Protocol):
    """What proofs read from a store: leaf digests by seq and stored nodes by packed key."""

    async def tree_rows(self, space: bytes, seqs: Sequence[int], keys: Sequence[int]) -> tuple[
        dict[int, bytes], dict[int, bytes]]:
        """``({seq: digest}, {packed key: hash})`` of those that exist."""
        ...


@dataclass(frozen=True)
class _Plan:
    """The rows a set of subtree hashes needs: leaves by seq and stored nodes by packed key."""

    seqs: list[int]
    keys: list[int]


def _base(level: int) -> int:
    return level - level % STRIDE


def plan(nodes: Iterable[NodeId]) -> _Plan:
    """The stored rows that the complete subtrees ``nodes`` are folded from."""
    seqs: set[int] = set()
    keys: set[int] = set()
    for level, index in nodes:
        base = _base(level)
        span = level - base
        first, count = index << span, 1 << span
        if base == 0:
            seqs.update(range(first + 1, first + count + 1))
        else:
            keys.update(node_key(base, i) for i in range(first, first + count))
    return _Plan(sorted(seqs), sorted(keys))


def fold(nodes: Iterable[NodeId], digests: dict[int, bytes], stored: dict[int, bytes]) -> dict[NodeId, bytes]:
    """The hash of each of ``nodes`` from the rows ``plan`` named; MissingNodeError if one is absent."""
    out: dict[NodeId, bytes] = {}
    for level, index in nodes:
        base = _base(level)
        span = level - base
        first, count = index << span, 1 << span
        layer: list[bytes] = []
        for i in range(first, first + count):
            if base == 0:
                digest = digests.get(i + 1)
                if digest is None:
                    raise MissingNodeError(f"no stored entry at seq {i + 1}")
                layer.append(leaf_of(digest))
            else:
                found = stored.get(node_key(base, i))
                if found is None:
                    raise MissingNodeError(f"no stored tree node at level {base}, index {i}")
                layer.append(found)
        while len(layer) > 1:
            layer = [merkle.node_hash(layer[j], layer[j + 1]) for j in range(0, len(layer), 2)]
        out[(level, index)] = layer[0]
    return out


class RelayTree:
    """The frontier of one space's tree, and proofs read from the store it was built over."""

    def __init__(self, frontier: merkle.Frontier | None = None) -> None:
        self.frontier = frontier or merkle.Frontier()
        # The frontier of the durable log (what checkpoints sign and proofs are bounded by), and
        # its root once asked for: a commit only copies the peaks, the root is computed by the
        # checkpointer, off the commit path.
        self._durable = self.frontier.copy()
        self._durable_root: bytes | None = None

    @property
    def durable(self) -> tuple[int, bytes]:
        """(size, root) of the durable log."""
        if self._durable_root is None:
            self._durable_root = self._durable.root()
        return self._durable.size, self._durable_root

    @property
    def size(self) -> int:
        return self.frontier.size

    def extend(self, digests: Iterable[bytes]) -> list[StoredNode]:
        """Append the leaves of these entries; the stored-level nodes they complete."""
        out: list[StoredNode] = []
        for digest in digests:
            for level, index, h in self.frontier.append(leaf_of(digest)):
                if is_stored_level(level):
                    out.append((node_key(level, index), h))
        return out

    def rollback(self) -> None:
        """A commit did not happen (another relay's came first): back to the durable tree."""
        self.frontier = self._durable.copy()

    def mark_durable(self) -> None:
        """The log is durable through the frontier's size (a copy of the peaks, O(log n) small)."""
        self._durable = self.frontier.copy()
        self._durable_root = None

    async def subtrees(self, reader: TreeReader, space: bytes, nodes: Sequence[NodeId]) -> dict[NodeId, bytes]:
        wanted = plan(nodes)
        digests, stored = await reader.tree_rows(space, wanted.seqs, wanted.keys)
        return fold(nodes, digests, stored)

    async def consistency_proof(self, reader: TreeReader, space: bytes, first: int, second: int) -> list[bytes]:
        """PROOF(first, D[0:second]) from stored rows; sizes at most the durable size."""
        self._check(second)
        nodes = merkle.consistency_nodes(first, second)
        found = await self.subtrees(reader, space, nodes)
        return merkle.consistency_proof(first, second, lambda level, index: found[(level, index)])

    async def inclusion_proof(self, reader: TreeReader, space: bytes, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) from stored rows."""
        self._check(size)
        nodes = merkle.inclusion_nodes(index, size)
        found = await self.subtrees(reader, space, nodes)
        return merkle.inclusion_proof(index, size, lambda level, i: found[(level, i)])

    async def root_at(self, reader: TreeReader, space: bytes, size: int) -> bytes:
        self._check(size)
        if size == self._durable.size:
            return self.durable[1]
        nodes = merkle.root_nodes(size)
        found = await self.subtrees(reader, space, nodes)
        return merkle.root_at(size, lambda level, i: found[(level, i)])

    def _check(self, size: int) -> None:
        if size > self._durable.size:
            raise MerkleArgumentError(f"tree size {size} is past the durable log's {self._durable.size} entries")

    @property
    def durable_size(self) -> int:
        return self._durable.size


class TreeBuilder:
    """Builds a tree while a store replays a space at load, collecting the stored-level nodes,
    so that a store written before the tree existed gets them (the migration)."""

    def __init__(self) -> None:
        self.tree = RelayTree()
        self.nodes: list[StoredNode] = []

    def add(self, digest: bytes) -> None:
        self.nodes.extend(self.tree.extend((digest,)))

    def done(self) -> RelayTree:
        self.tree.mark_durable()
        return self.tree


def expected_nodes(size: int) -> int:
    """How many stored-level nodes a tree of ``size`` leaves has."""
    total, level = 0, STRIDE
    while (1 << level) <= size:
        total += size >> level
        level += STRIDE
    return total
