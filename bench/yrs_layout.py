"""Yrs in a busy process: replays a trace into bare pycrdt documents, one variant after another.

    python -m bench.yrs_layout --trace automerge-paper --variants bare,obs,obs+rdr,bare,obs+rdr+relayout

Variants (``+``-joined): ``bare`` one document; ``obs`` with an update observer collecting
every update (as a networked client does); ``rdr`` with a second document in the process
applying those updates merged 16 at a time every 200 transactions (the SDK's reader);
``relayout`` rebuilding the documents from their state every ``--relayout-every``
transactions. Prints, per variant, the CPU of the replay and of a probe afterwards (2,000
insert+delete pairs in the middle of the writer's document): running a variant after others
in the same process shows what the heap they left behind does to Yrs (bench/README.md,
"Replay: why Yrs was slower in the full stack").
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import pycrdt

from bench.replay import apply_patches_pycrdt
from bench.traces import Trace, load_trace

PROBE_PAIRS = 2000
READER_BATCH = 200  # transactions per entry, about what the SDK batches in this replay
MERGE_FAN_IN = 16


def _rebuilt(doc: pycrdt.Doc[Any]) -> pycrdt.Doc[Any]:
    fresh: pycrdt.Doc[Any] = pycrdt.Doc(client_id=doc.client_id)
    fresh.apply_update(doc.get_update())
    return fresh


def run_variant(trace: Trace, limit: int, variant: str, relayout_every: int) -> tuple[float, float]:
    """CPU seconds of the replay and of the probe after it."""
    parts = set(variant.split("+"))
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    text.insert(0, trace.start_content)
    updates: list[bytes] = []
    observed = "obs" in parts or "rdr" in parts
    subscription = doc.observe(lambda event: updates.append(event.update)) if observed else None
    reader: pycrdt.Doc[Any] | None = None
    if "rdr" in parts:
        reader = pycrdt.Doc()
        reader.apply_update(doc.get_update())
    txns = trace.utf8_txns(limit)
    cpu = time.process_time()
    for i, txn in enumerate(txns):
        apply_patches_pycrdt(text, txn)
        if "relayout" in parts and i and i % relayout_every == 0:
            if subscription is not None:
                doc.unobserve(subscription)
            doc = _rebuilt(doc)
            text = doc.get("t", type=pycrdt.Text)
            if subscription is not None:
                subscription = doc.observe(lambda event: updates.append(event.update))
            if reader is not None:
                reader = _rebuilt(reader)
        if reader is not None and len(updates) >= READER_BATCH:
            groups = [pycrdt.merge_updates(*updates[j : j + MERGE_FAN_IN])
                      for j in range(0, len(updates), MERGE_FAN_IN)]
            reader.apply_update(pycrdt.merge_updates(*groups))
            updates.clear()
        elif reader is None:
            updates.clear()
    if reader is not None and updates:
        reader.apply_update(pycrdt.merge_updates(*updates))
    replay = time.process_time() - cpu
    middle = len(text) // 2
    cpu = time.process_time()
    for _ in range(PROBE_PAIRS):
        with doc.transaction():
            text.insert(middle, "x")
            del text[middle : middle + 1]
    return replay, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.yrs_layout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", default="automerge-paper")
    parser.add_argument("--limit", type=int, default=None, help="first N transactions (default: all)")
    parser.add_argument("--variants", default="bare,obs,obs+rdr,bare,obs+rdr+relayout")
    parser.add_argument("--relayout-every", type=int, default=20_000)
    args = parser.parse_args(argv)
    trace = load_trace(args.trace)
    limit = len(trace.txns) if args.limit is None else args.limit
    for variant in args.variants.split(","):
        gc.collect()
        replay, probe = run_variant(trace, limit, variant, args.relayout_every)
        print(f"{variant:24s} replay {replay:7.3f} s CPU   probe {probe:6.3f} s CPU", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
