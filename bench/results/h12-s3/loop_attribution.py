# One-off: bench.receive_cost.measure with extra stages (dispatch, on_verified, ...) and every
# callback timed in the same run; output: loop-attribution-new.json. Run from the tree under test.
import asyncio, sys, tempfile, json
from pathlib import Path
import bench.receive_cost as rc
import encspaces.connection as conn, encspaces.space as sp
import encspaces.core.session as sess
import websockets.asyncio.connection as wsc
S = [
 ("_guarded", rc.ClientSession, "_guarded"),
 ("decode_message", sess, "decode_message"),
 ("Connection._dispatch", conn.Connection, "_dispatch"),
 ("_Host.on_verified", sp._Host, "on_verified"),
 ("Space._apply_verified", sp.Space, "_apply_verified"),
 ("ws data_received", wsc.Connection, "data_received"),
 ("queued_messages", conn, "queued_messages"),
]
with rc.timed_callbacks() as (cspent, ccalls), rc.timed_stages(S) as (spent, calls):
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(rc.measure(10, 1, 40, 5.0, Path(tmp)))
pairs = r["pairs"]; us = lambda x: x / pairs * 1e6
out = {"loop": r["loop_cpu_us_per_pair"], "stages": {k: us(spent[k]) for k, _, _ in S}, "calls": {k: calls[k] / pairs for k, _, _ in S},
       "callbacks": {k: us(v) for k, v in sorted(cspent.items(), key=lambda kv: -kv[1])[:12]},
       "callback_calls": {k: ccalls[k] / pairs for k, v in sorted(cspent.items(), key=lambda kv: -kv[1])[:12]}}
print(json.dumps(out, indent=1))
