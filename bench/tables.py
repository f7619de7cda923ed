"""Table reads and queries at 10^3, 10^4 and 10^5 rows: what a request handler would block on.

One local document (no network: this is about the read path), a table ``tasks`` filled with
rows ``{title, status, owner, prio, done}`` (3 statuses, 100 owners, 10 priorities). After
the first read (which builds the table's index; timed on its own as ``first_read``), each
operation is timed ``--rounds`` times and the median reported, in milliseconds:

* ``len``: ``len(table)``
* ``get``: ``table.get(row_id)`` of one existing row
* ``limit10``: ``table.query(limit=10)``
* ``where``: ``table.query(where={"owner": "user7"})`` (about 1% of the rows)
* ``where_limit10``: ``table.query(where={"status": "open"}, limit=10)``
* ``order_limit10``: ``table.query(order_by="-prio", limit=10)``
* ``range_limit10``: ``table.query(where={"prio": {">=": 8}}, limit=10)`` (no index: a walk)
* ``insert``: one ``table.insert`` while the index is kept (the cost of maintaining it)

Implementations, each in its own process: ``index`` is this tree's ``SharedTable``;
``scan`` is the original evaluation kept in this tree for the property test (read every row
from the document, filter, sort); ``--before DIR`` also measures the ``encspaces`` package
of another checkout (e.g. ``--before /work/main``) through the same public calls.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import machine_info, write_result

OPS = ["first_read", "len", "get", "limit10", "where", "where_limit10", "order_limit10", "range_limit10", "insert"]


def fill(table: Any, document: Any, rows: int, rng: random.Random) -> list[str]:
    ids: list[str] = []
    # 200 rows a transaction: one transaction must fit one entry (the size gate's estimate).
    for start in range(0, rows, 200):
        with document.transaction():
            for i in range(start, min(rows, start + 200)):
                ids.append(table.insert({
                    "title": f"task {i}",
                    "status": rng.choice(["open", "doing", "done"]),
                    "owner": f"user{rng.randrange(100)}",
                    "prio": rng.randrange(10),
                    "done": rng.random() < 0.5,
                }))
    return ids


def measure(rows: int, rounds: int, impl: str) -> dict[str, float]:
    """Median milliseconds of each operation; ``impl`` is "index", "scan" or "before"."""
    from encspaces.document import Document

    document = Document(lambda update: None)
    table = document.table("tasks", lambda: None)
    rng = random.Random(rows)
    ids = fill(table, document, rows, rng)
    if impl == "scan":
        from encspaces.shared.values import to_plain

        ops: dict[str, Callable[[], object]] = {
            "len": lambda: sum(1 for _ in table._row_items()),
            "get": lambda: to_plain(table._row(rng.choice(ids))),
            "limit10": lambda: table._scan_query(limit=10),
            "where": lambda: table._scan_query(where={"owner": "user7"}),
            "where_limit10": lambda: table._scan_query(where={"status": "open"}, limit=10),
            "order_limit10": lambda: table._scan_query(order_by="-prio", limit=10),
            "range_limit10": lambda: table._scan_query(where={"prio": {">=": 8}}, limit=10),
        }
    else:
        ops = {
            "len": lambda: len(table),
            "get": lambda: table.get(rng.choice(ids)),
            "limit10": lambda: table.query(limit=10),
            "where": lambda: table.query(where={"owner": "user7"}),
            "where_limit10": lambda: table.query(where={"status": "open"}, limit=10),
            "order_limit10": lambda: table.query(order_by="-prio", limit=10),
            "range_limit10": lambda: table.query(where={"prio": {">=": 8}}, limit=10),
        }
    counter = iter(range(10**9))
    ops["insert"] = lambda: table.insert({"title": f"new {next(counter)}", "status": "open", "owner": "user7",
                                          "prio": 5, "done": False})
    result: dict[str, float] = {}
    start = time.perf_counter()
    (ops["len"] if impl == "scan" else (lambda: len(table)))()
    result["first_read"] = (time.perf_counter() - start) * 1000
    for name, op in ops.items():
        op()  # warm: builds the indexes this query uses
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            op()
            times.append((time.perf_counter() - start) * 1000)
        result[name] = statistics.median(times)
    return {name: round(result[name], 4) for name in OPS}


def worker(args: argparse.Namespace) -> int:
    if args.src:
        sys.path.insert(0, str(Path(args.src).resolve()))
    import encspaces

    out: dict[str, Any] = {str(rows): measure(rows, args.rounds, args.impl) for rows in args.sizes}
    out["package"] = str(Path(encspaces.__file__).resolve().parent)  # which checkout was measured
    print(json.dumps(out))
    return 0


def run_impl(impl: str, sizes: list[int], rounds: int, src: str | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.tables", "--worker", "--impl", impl, "--rounds", str(rounds),
               "--sizes", ",".join(map(str, sizes))]
    if src:
        command += ["--src", src]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    by_size: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return by_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="row counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="timings per operation (median reported)")
    parser.add_argument("--before", default=None, help="also measure the encspaces package of this checkout")
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 rows, 2 rounds (smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="index", choices=["index", "scan", "before"], help=argparse.SUPPRESS)
    parser.add_argument("--src", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [100, 1000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    if args.quick:
        args.rounds = 2
    if args.worker:
        return worker(args)
    results: dict[str, Any] = {"index": run_impl("index", args.sizes, args.rounds, None),
                               "scan": run_impl("scan", args.sizes, args.rounds, None)}
    if args.before:
        results["before"] = run_impl("before", args.sizes, args.rounds, args.before)
    payload = {"benchmark": "tables", "sizes": args.sizes, "rounds": args.rounds, "ops": OPS,
               "before_src": args.before, "results": results, "machine": machine_info()}
    path = write_result("tables", payload, args.out)
    for impl, by_size in results.items():
        if "error" in by_size:
            print(f"{impl}: failed: {by_size['error']}")
            continue
        for rows, ms in by_size.items():
            if rows == "package":
                print(f"{impl:>6}: {ms}")
                continue
            print(f"{impl:>6} {int(rows):>7,} rows: " + "  ".join(f"{op} {ms[op]:.3g}" for op in OPS) + " (ms)")
    print(f"results in {path}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
