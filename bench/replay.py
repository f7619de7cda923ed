"""B4 replay: one writer types a whole editing trace through the full stack, one reader follows.

Measures the time from the writer's first keystroke until the reader holds the trace's final
text, verified, against replaying the same trace into a bare pycrdt document in one process.
The relay runs as its own process, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pycrdt

import encspaces
from bench.traces import Trace, TraceMissing, load_trace
from relay.process import RelayProcess

YIELD_EVERY = 64  # keystrokes between yields to the event loop, so sending overlaps typing


def apply_patches(text: Any, txn: list[tuple[int, int, str]]) -> None:
    for pos, deleted, inserted in txn:
        if deleted:
            text.delete(pos, deleted)
        if inserted:
            text.insert(pos, inserted)


def bare_pycrdt(trace: Trace, limit: int) -> float:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    start = time.perf_counter()
    for txn in trace.txns[:limit]:
        for pos, deleted, inserted in txn:
            if deleted:
                del text[pos : pos + deleted]
            if inserted:
                text.insert(pos, inserted)
    return time.perf_counter() - start


async def full_stack(trace: Trace, limit: int, workdir: Path) -> dict[str, float]:
    expected = trace.end_content if limit >= len(trace.txns) else None
    async with RelayProcess(workdir / "relay") as relay:
        writer_id, reader_id = encspaces.Identity.generate(), encspaces.Identity.generate()
        writer = await encspaces.create_space(relay.url, writer_id, data_dir=workdir / "w")
        await writer.add_member(reader_id.public)
        reader = await encspaces.connect(relay.url, reader_id, writer.id, data_dir=workdir / "r")
        try:
            wt, rt = writer.text("t"), reader.text("t")
            start = time.perf_counter()
            for i, txn in enumerate(trace.txns[:limit]):
                apply_patches(wt, txn)
                if i % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            typed = time.perf_counter() - start
            await writer.sync()
            synced = time.perf_counter() - start
            await reader.wait_for_seq(writer.seq)
            done = time.perf_counter() - start
            if expected is not None and str(rt) != expected:
                raise AssertionError("the reader's final text differs from the trace's endContent")
            if str(rt) != str(wt):
                raise AssertionError("the reader's text differs from the writer's")
            return {"typed_s": typed, "writer_synced_s": synced, "reader_done_s": done,
                    "entries": float(writer.seq)}
        finally:
            await writer.close()
            await reader.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--trace", default="automerge-paper", help="trace name in shared/traces")
    parser.add_argument("--limit", type=int, default=0, help="replay only the first N transactions (0: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/replay.json"))
    args = parser.parse_args(argv)
    try:
        trace = load_trace(args.trace)
    except TraceMissing as exc:
        print(f"skipped: {exc}")
        return 0
    limit = args.limit or len(trace.txns)
    bare = bare_pycrdt(trace, limit)
    with tempfile.TemporaryDirectory() as tmp:
        stack = asyncio.run(full_stack(trace, limit, Path(tmp)))
    result = {
        "benchmark": "replay", "trace": args.trace, "transactions": limit,
        "bare_pycrdt_s": round(bare, 3), **{k: round(v, 3) for k, v in stack.items()},
        "ratio_reader_done_vs_bare": round(stack["reader_done_s"] / bare, 2),
        "python": platform.python_version(), "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
