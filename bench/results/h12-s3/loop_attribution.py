"""One-off (issue 12, s3): ``bench.receive_cost.measure`` with a few more stages than
``--breakdown`` (dispatch, ``on_verified``) and every callback timed in the same run; wrote
loop-attribution-new.json. Run from the tree under test: ``python bench/results/h12-s3/loop_attribution.py``."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import websockets.asyncio.connection as wsc

import bench.receive_cost as rc
import encspaces.connection as conn
import encspaces.core.session as sess
import encspaces.space as sp

STAGES = [
    ("_guarded", rc.ClientSession, "_guarded"),
    ("decode_message", sess, "decode_message"),
    ("Connection._dispatch", conn.Connection, "_dispatch"),
    ("_Host.on_verified", sp._Host, "on_verified"),
    ("Space._apply_verified", sp.Space, "_apply_verified"),
    ("ws data_received", wsc.Connection, "data_received"),
    ("queued_messages", conn, "queued_messages"),
]


def main() -> None:
    with rc.timed_callbacks() as (cspent, ccalls), rc.timed_stages(STAGES) as (spent, calls), \
            tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(rc.measure(10, 1, 40, 5.0, Path(tmp)))
    pairs = result["pairs"]
    top = sorted(cspent, key=lambda name: -cspent[name])[:12]
    print(json.dumps({
        "loop": result["loop_cpu_us_per_pair"],
        "stages": {label: spent[label] / pairs * 1e6 for label, _, _ in STAGES},
        "calls": {label: calls[label] / pairs for label, _, _ in STAGES},
        "callbacks": {name: cspent[name] / pairs * 1e6 for name in top},
        "callback_calls": {name: ccalls[name] / pairs for name in top},
    }, indent=1))


if __name__ == "__main__":
    main()
