"""``python -m bench.pg_driver``: asyncpg against psycopg 3 on the relay's commit path.

One commit of the PostgreSQL relay store (encspaces_relay/pg_store.py) is: BEGIN; lock the space's
head row (``SELECT head_seq ... FOR UPDATE``) and check it is the seq the batch extends;
insert the batch's entries; move the head; COMMIT (synchronous_commit=on, so one WAL flush).
This runs exactly that with each driver, for batches of 1, 10 and 100 entries of
``--entry-bytes`` each, alternating the drivers over ``--rounds`` rounds in one process
against one server, and prints the median milliseconds per commit and entries per second.
Also measured: the relay process's CPU per commit (``time.process_time``), which is what the
driver itself costs (the server's fsync is the same for both).

Needs a PostgreSQL server (``--dsn``, default the test database on 127.0.0.1:5432) and both
drivers installed (``pip install asyncpg 'psycopg[binary]'``); each run works in a schema of
its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SIZES = (1, 10, 100)

_SCHEMA = """
CREATE TABLE spaces (space_id bytea PRIMARY KEY, head_seq bigint NOT NULL, signed_head bytea NOT NULL);
CREATE TABLE entries (
    space_id bytea NOT NULL, seq bigint NOT NULL, author bytea NOT NULL, author_seq bigint NOT NULL,
    digest bytea NOT NULL, head bytea NOT NULL, raw bytea NOT NULL,
    PRIMARY KEY (space_id, seq), UNIQUE (space_id, author, author_seq));
"""

Commit = Callable[[bytes, int, list[tuple[Any, ...]]], Awaitable[None]]


def _rows(space: bytes, first: int, count: int, size: int) -> list[tuple[Any, ...]]:
    author = os.urandom(32)
    return [(space, first + i, author, first + i, os.urandom(32), os.urandom(32), os.urandom(size))
            for i in range(count)]


async def _asyncpg(dsn: str, schema: str) -> tuple[Commit, Callable[[], Awaitable[None]]]:
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema, "synchronous_commit": "on"})

    async def commit(space: bytes, after: int, rows: list[tuple[Any, ...]]) -> None:
        async with conn.transaction():
            found = await conn.fetchval("SELECT head_seq FROM spaces WHERE space_id = $1 FOR UPDATE", space)
            if found != after:
                raise RuntimeError(f"head moved: {found} != {after}")
            await conn.executemany("INSERT INTO entries VALUES ($1, $2, $3, $4, $5, $6, $7)", rows)
            await conn.execute("UPDATE spaces SET head_seq = $2, signed_head = $3 WHERE space_id = $1",
                               space, after + len(rows), os.urandom(120))

    return commit, conn.close


async def _psycopg(dsn: str, schema: str) -> tuple[Commit, Callable[[], Awaitable[None]]]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(dsn, options=f"-c search_path={schema} -c synchronous_commit=on",
                                                 autocommit=True, prepare_threshold=0)

    async def commit(space: bytes, after: int, rows: list[tuple[Any, ...]]) -> None:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT head_seq FROM spaces WHERE space_id = %s FOR UPDATE", (space,))
            row = await cur.fetchone()
            if row is None or row[0] != after:
                raise RuntimeError(f"head moved: {row} != {after}")
            await cur.executemany("INSERT INTO entries VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
            await cur.execute("UPDATE spaces SET head_seq = %s, signed_head = %s WHERE space_id = %s",
                              (after + len(rows), os.urandom(120), space))

    return commit, conn.close


DRIVERS = {"asyncpg": _asyncpg, "psycopg": _psycopg}


async def _measure(commit: Commit, space: bytes, head: list[int], size: int, count: int,
                   entry_bytes: int) -> tuple[list[float], float]:
    """``count`` commits of ``size`` entries; wall ms of each and process CPU ms per commit."""
    batches = [_rows(space, head[0] + 1 + i * size, size, entry_bytes) for i in range(count)]
    walls = []
    cpu0 = time.process_time()
    for rows in batches:
        t0 = time.perf_counter()
        await commit(space, head[0], rows)
        walls.append((time.perf_counter() - t0) * 1000)
        head[0] += size
    return walls, (time.process_time() - cpu0) * 1000 / count


async def run(dsn: str, rounds: int, commits: int, entry_bytes: int) -> dict[str, Any]:
    import asyncpg

    schema = f"bench_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        await admin.execute(f"SET search_path = {schema}; {_SCHEMA}")
        opened = {name: await make(dsn, schema) for name, make in DRIVERS.items()}
        spaces = {}
        for name in DRIVERS:
            spaces[name] = os.urandom(32)
            await admin.execute("INSERT INTO spaces VALUES ($1, 0, $2)", spaces[name], b"")
        heads = {name: [0] for name in DRIVERS}
        walls: dict[str, dict[int, list[float]]] = {name: {s: [] for s in SIZES} for name in DRIVERS}
        cpus: dict[str, dict[int, list[float]]] = {name: {s: [] for s in SIZES} for name in DRIVERS}
        for _ in range(rounds):
            for size in SIZES:
                for name in DRIVERS:  # alternate, so drift on a shared machine hits both
                    count = max(5, commits // size) if size > 1 else commits
                    wall, cpu = await _measure(opened[name][0], spaces[name], heads[name], size, count, entry_bytes)
                    walls[name][size].extend(wall)
                    cpus[name][size].append(cpu)
        for _, close in opened.values():
            await close()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    result: dict[str, Any] = {"entry_bytes": entry_bytes, "rounds": rounds, "drivers": {}}
    for name in DRIVERS:
        result["drivers"][name] = {
            str(size): {
                "commits": len(walls[name][size]),
                "median_ms": statistics.median(walls[name][size]),
                "p90_ms": statistics.quantiles(walls[name][size], n=10)[-1],
                "entries_per_s": size * 1000 / statistics.median(walls[name][size]),
                "cpu_ms_per_commit": statistics.median(cpus[name][size]),
            } for size in SIZES}
    return result


def _table(result: dict[str, Any]) -> str:
    lines = ["| driver | batch | median ms/commit | p90 ms | entries/s | client CPU ms/commit |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, by_size in result["drivers"].items():
        for size, r in by_size.items():
            lines.append(f"| {name} | {size} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                         f"{r['entries_per_s']:.0f} | {r['cpu_ms_per_commit']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_driver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("ENCSPACES_TEST_PG", DEFAULT_DSN))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commits", type=int, default=200, help="commits of one entry per round (fewer for bigger)")
    parser.add_argument("--entry-bytes", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="1 round of 20 commits")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.commits = 1, 20
    try:
        result = asyncio.run(run(args.dsn, args.rounds, args.commits, args.entry_bytes))
    except ImportError as exc:
        print(f"bench.pg_driver needs both drivers: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bench.pg_driver: cannot reach PostgreSQL at {args.dsn}: {exc}", file=sys.stderr)
        return 1
    print(_table(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
