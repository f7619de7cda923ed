"""The relay's proofs as served: size, relay time (store reads included) and client check time.

    python -m bench.proofs [--samples 200] [--seed 1] [--sizes 1000,100000,1000000] [--store DSN]

For each size a space of that many entries is written straight into a relay store (SQLite in a
temporary data dir, or ``--store postgresql://...``): entry rows with their digests (the raw
bytes are placeholders: proofs never read them) and the tree's stored levels as the relay's
commits write them (encspaces_relay/tree.py). Then, through the relay's own code path
(``RelayTree`` over ``Store.tree_rows``, the same calls a ``consistency_req`` or
``inclusion_req`` runs), random proofs are generated and checked with the core's RFC 9162
verifiers, as a client checks them. Reported: median proof hashes and wire bytes (the encoded
``consistency`` / ``inclusion`` message), rows read, median relay time, median check time, and
the tree's stored rows against the entries.

``bench.merkle`` measures the same proofs over an in-memory tree, without a store.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from encspaces.core import merkle
from encspaces.core.messages import Consistency, Inclusion
from encspaces_relay.store import DB_FILE, Store
from encspaces_relay.tree import RelayTree, TreeBuilder, expected_nodes, leaf_of

SIZES = (1_000, 100_000, 1_000_000)
_CHUNK = 50_000


def _digest(space: bytes, seq: int) -> bytes:
    return hashlib.sha256(space + seq.to_bytes(8, "big")).digest()


def _entry_rows(space: bytes, n: int, builder: TreeBuilder) -> Iterator[list[tuple[Any, ...]]]:
    """The entries table's rows for seqs 1..n, ``_CHUNK`` at a time; each digest joins ``builder``."""
    for start in range(1, n + 1, _CHUNK):
        rows: list[tuple[Any, ...]] = []
        for seq in range(start, min(n, start + _CHUNK - 1) + 1):
            digest = _digest(space, seq)
            builder.add(digest)
            rows.append((space, seq, space, seq, digest, digest, b"x"))
        yield rows


def _fill_sqlite(path: Path, space: bytes, n: int) -> RelayTree:
    """n entry rows and the tree's stored nodes, in one SQLite file (as the relay's schema has them)."""
    builder = TreeBuilder()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # filling only: the measured reads do not depend on it
    db.execute("BEGIN")
    db.execute("INSERT INTO spaces VALUES (?, ?, ?)", (space, 0, b"placeholder"))
    for rows in _entry_rows(space, n, builder):
        db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.executemany("INSERT INTO tree_nodes VALUES (?, ?, ?)", [(space, k, h) for k, h in builder.nodes])
    db.execute("COMMIT")
    db.close()
    return builder.done()


async def _fill_pg(store: object, space: bytes, n: int) -> RelayTree:
    from encspaces_relay.pg_store import PgStore

    assert isinstance(store, PgStore)
    builder = TreeBuilder()
    async with store.connection() as conn:
        await conn.execute("INSERT INTO spaces VALUES ($1, 0, $2, $3)", space, n, b"placeholder")
        for rows in _entry_rows(space, n, builder):
            await conn.copy_records_to_table("entries", records=rows)
        await conn.copy_records_to_table("tree_nodes", records=[(space, k, h) for k, h in builder.nodes])
    return builder.done()


def _us(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e6:.0f} µs"


class CountingStore:
    """Passes tree_rows through, counting the rows asked for."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rows = 0

    async def tree_rows(self, space: bytes, seqs: Sequence[int], keys: Sequence[int]) -> tuple[
            dict[int, bytes], dict[int, bytes]]:
        self.rows += len(seqs) + len(keys)
        return await self.store.tree_rows(space, seqs, keys)


async def _measure(store: Store, tree: RelayTree, space: bytes, n: int, samples: int, rng: random.Random) -> None:
    reader = CountingStore(store)
    root = tree.durable[1]
    for kind in ("inclusion", "consistency"):
        relay_t: list[float] = []
        check_t: list[float] = []
        hashes: list[int] = []
        wire: list[int] = []
        rows: list[int] = []
        for i in range(samples):
            reader.rows = 0
            if kind == "inclusion":
                index = rng.randrange(n)
                t = time.perf_counter()
                proof = await tree.inclusion_proof(reader, space, index, n)
                relay_t.append(time.perf_counter() - t)
                size = len(Inclusion(i, index + 1, n, proof).encode())
                leaf = leaf_of(_digest(space, index + 1))
                t = time.perf_counter()
                merkle.verify_inclusion(index, n, leaf, proof, root)
                check_t.append(time.perf_counter() - t)
            else:
                old = rng.randrange(1, n) if n > 1 else 1
                old_root = await tree.root_at(reader, space, old)  # what the client verified earlier
                reader.rows = 0
                t = time.perf_counter()
                proof = await tree.consistency_proof(reader, space, old, n)
                relay_t.append(time.perf_counter() - t)
                size = len(Consistency(i, old, n, proof).encode())
                t = time.perf_counter()
                merkle.verify_consistency(old, n, old_root, root, proof)
                check_t.append(time.perf_counter() - t)
            hashes.append(len(proof))
            wire.append(size)
            rows.append(reader.rows)
        print(f"| {n:,} | {kind} | {statistics.median(hashes):.0f} (max {max(hashes)}) | "
              f"{statistics.median(wire):.0f} B | {statistics.median(rows):.0f} (max {max(rows)}) | "
              f"{_us(relay_t)} | {_us(check_t)} |", flush=True)


async def run(samples: int, seed: int, sizes: list[int], dsn: str | None) -> None:
    rng = random.Random(seed)
    print(f"store: {'PostgreSQL ' + dsn if dsn else 'SQLite (WAL), the relay file'}; {samples} random proofs "
          "per size and kind; medians", flush=True)
    print("| entries | proof | hashes | wire (message) | rows read | relay (store reads + hashing) | client check |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    footprint = []
    with tempfile.TemporaryDirectory(prefix="bench-proofs-") as tmp:
        data_dir = Path(tmp)
        store: Store
        if dsn:
            from encspaces_relay.pg_store import PgStore

            store = await PgStore.open(dsn)  # type: ignore[assignment]
        else:
            store = await Store.open(data_dir)
        try:
            for n in sizes:
                space = hashlib.sha256(b"bench space" + n.to_bytes(8, "big") + rng.randbytes(8)).digest()
                t = time.perf_counter()
                if dsn:
                    tree = await _fill_pg(store, space, n)
                else:
                    tree = await asyncio.to_thread(_fill_sqlite, data_dir / DB_FILE, space, n)
                filled = time.perf_counter() - t
                await _measure(store, tree, space, n, samples, rng)
                footprint.append((n, filled))
        finally:
            await store.close()
    for n, filled in footprint:
        print(f"{n:,} entries: {expected_nodes(n):,} stored tree rows ({expected_nodes(n) / n:.1%} of the entry "
              f"rows, {expected_nodes(n) * 32 / 1024:.0f} KiB of hashes); filled in {filled:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proofs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--store", default=None, help="a postgresql:// URL (default: SQLite in a temporary dir)")
    args = parser.parse_args()
    asyncio.run(run(args.samples, args.seed, [int(s) for s in args.sizes.split(",")], args.store))


if __name__ == "__main__":
    main()
