"""Merkle proofs at 10^3, 10^5 and 10^6 entries: size, generation and check time.

    python -m bench.merkle [--samples 300] [--seed 1]

The trees are built level by level into packed byte strings (32 bytes a node), the layout a
store keyed by (level, index) amounts to; proofs are generated through ``encspaces.core.merkle``'s
lookup interface and checked with its RFC 9162 verifiers. Medians over random leaves and sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time

from encspaces.core import merkle

SIZES = (1_000, 100_000, 1_000_000)


class PackedLevels:
    """Every complete subtree hash, one packed bytes object per level."""

    def __init__(self, n: int) -> None:
        sha = hashlib.sha256
        leaves = b"".join(sha(b"\x00encspaces-bench" + i.to_bytes(8, "big")).digest() for i in range(n))
        self.levels = [leaves]
        level = leaves
        while len(level) >= 64:
            pairs = len(level) // 64
            level = b"".join(sha(b"\x01" + level[64 * i : 64 * i + 64]).digest() for i in range(pairs))
            self.levels.append(level)

    def get(self, level: int, index: int) -> bytes:
        return self.levels[level][32 * index : 32 * index + 32]


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def run(samples: int, seed: int) -> None:
    rng = random.Random(seed)
    print("| entries | build | proof | hashes (bytes) | generate, median | check, median |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in SIZES:
        t0 = time.perf_counter()
        tree = PackedLevels(n)
        root = merkle.root_at(n, tree.get)
        build = time.perf_counter() - t0
        gen: list[float] = []
        check: list[float] = []
        lengths: list[int] = []
        for _ in range(samples):
            index = rng.randrange(n)
            t = time.perf_counter()
            proof = merkle.inclusion_proof(index, n, tree.get)
            gen.append(time.perf_counter() - t)
            leaf = tree.get(0, index)
            t = time.perf_counter()
            merkle.verify_inclusion(index, n, leaf, proof, root)
            check.append(time.perf_counter() - t)
            lengths.append(len(proof))
        print(
            f"| {n:,} | {build:.2f} s | inclusion | {statistics.median(lengths):.0f} "
            f"({32 * statistics.median(lengths):.0f} B), max {max(lengths)} | {_median_us(gen):.0f} µs "
            f"| {_median_us(check):.0f} µs |"
        )
        gen, check, lengths = [], [], []
        for _ in range(samples):
            old = rng.randrange(1, n)
            t = time.perf_counter()
            proof = merkle.consistency_proof(old, n, tree.get)
            gen.append(time.perf_counter() - t)
            old_root = merkle.root_at(old, tree.get)
            t = time.perf_counter()
            merkle.verify_consistency(old, n, old_root, root, proof)
            check.append(time.perf_counter() - t)
            lengths.append(len(proof))
        print(
            f"| {n:,} | | consistency | {statistics.median(lengths):.0f} "
            f"({32 * statistics.median(lengths):.0f} B), max {max(lengths)} | {_median_us(gen):.0f} µs "
            f"| {_median_us(check):.0f} µs |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.merkle", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="proofs per size and kind (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    run(args.samples, args.seed)


if __name__ == "__main__":
    main()
