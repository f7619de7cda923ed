"""The command line every trace-driven benchmark shares (B4 replay, cold open)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import CONTENDERS, DEFAULT_CONTENDERS, parse_contenders, write_result
from bench.traces import Trace, TraceMissing, load_trace

Run = Callable[[Trace, int, list[str], int, Path], Awaitable[dict[str, Any]]]


def trace_main(argv: list[str] | None, *, name: str, doc: str | None, rounds: int, run: Run,
               contenders_note: str = "") -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", default="automerge-paper", help="trace name in shared/traces")
    parser.add_argument("--limit", type=int, default=0, help="only the first N transactions (0: all)")
    parser.add_argument("--contenders", default=DEFAULT_CONTENDERS,
                        help=f"comma-separated subset of {','.join(CONTENDERS)}{contenders_note}")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"alternating rounds (default {rounds})")
    parser.add_argument("--quick", action="store_true", help="first 3,000 transactions, one round (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help=f"result JSON (default bench/results/{name}.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.rounds = args.limit or 3000, 1
    try:
        trace = load_trace(args.trace)
    except TraceMissing as exc:
        print(f"skipped: {exc}")
        return 0
    limit = min(args.limit or len(trace.txns), len(trace.txns))
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        payload = asyncio.run(run(trace, limit, parse_contenders(args.contenders), args.rounds, Path(tmp)))
    path = write_result(name, payload, args.out)
    print(f"wrote {path}")
    return 0
