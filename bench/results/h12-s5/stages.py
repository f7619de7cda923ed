"""One-off (issue 12, s5): ``bench.receive_cost.measure`` (10 writers + 1 reader, 40 edits at 5/s)
with the apply's bookkeeping timed stage by stage (event-loop thread CPU, µs per (entry, Space)
pair). Run from the tree under test: ``python bench/results/h12-s5/stages.py [--out FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import bench.receive_cost as rc
import encspaces.connection as conn
import encspaces.evidence_keeper as ev
import encspaces.presence_channel as pc
import encspaces.snapshot_keeper as sk
import encspaces.space as sp
import encspaces.witness_watch as ww
from encspaces.core.outbox import Outbox
from encspaces.document import Document

STAGES = [
    ("Connection._dispatch", conn.Connection, "_dispatch"),
    ("_Host.on_verified", sp._Host, "on_verified"),
    ("Space._apply_verified", sp.Space, "_apply_verified"),
    ("Document.apply_remote", Document, "apply_remote"),
    ("Space._maintain", sp.Space, "_maintain"),
    ("Space._check_keys", sp.Space, "_check_keys"),
    ("Space._check_own_entries", sp.Space, "_check_own_entries"),
    ("SnapshotKeeper.begin_batch", sk.SnapshotKeeper, "begin_batch"),
    ("SnapshotKeeper.on_entry", sk.SnapshotKeeper, "on_entry"),
    ("SnapshotKeeper.after_entry", sk.SnapshotKeeper, "after_entry"),
    ("PresenceChannel.verified", pc.PresenceChannel, "verified"),
    ("EvidenceKeeper.verified", ev.EvidenceKeeper, "verified"),
    ("WitnessWatch.verified", ww.WitnessWatch, "verified"),
    # Calibration: one statement, once per batch; what it is charged is the wrapper's own cost.
    ("Outbox.needs_reissue (floor)", Outbox, "needs_reissue"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    args = parser.parse_args()
    with rc.timed_stages(STAGES) as (spent, calls), tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(rc.measure(10, 1, 40, 5.0, Path(tmp)))
    pairs = result["pairs"]
    line = json.dumps({
        "loop": result["loop_cpu_us_per_pair"],
        "process": result.get("cpu_us_per_pair"),
        "stages": {label: round(spent[label] / pairs * 1e6, 2) for label, _, _ in STAGES},
        "calls": {label: round(calls[label] / pairs, 3) for label, _, _ in STAGES},
    })
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
