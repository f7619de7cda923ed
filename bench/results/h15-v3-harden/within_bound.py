"""Cost of Peer.within_bound (called once per subscriber per fanned-out frame)."""
import sys, time, statistics
from pathlib import Path
from types import SimpleNamespace
from websockets.protocol import State
from encspaces_relay.config import RelayConfig
import encspaces_relay.peer as peer_mod

class T:
    def get_write_buffer_size(self): return int(sys.argv[2])
ws = SimpleNamespace(transport=T(), protocol=SimpleNamespace(state=State.OPEN))
config = RelayConfig(data_dir=Path("/tmp/unused"))
kw = {}
if hasattr(peer_mod, "UnsentLedger") and sys.argv[1] == "ledger":
    kw["unsent"] = peer_mod.UnsentLedger(config.max_buffered_total)
import asyncio
async def main():
    peers = [peer_mod.Peer(ws, i, config, **kw) for i in range(10)]
    runs = []
    for _ in range(15):
        t = time.perf_counter_ns()
        for _ in range(20000):
            for p in peers:
                p.within_bound()
        runs.append((time.perf_counter_ns() - t) / (20000 * len(peers)))
    print(f"{sys.argv[1]}: median {statistics.median(runs):.0f} ns per call, range {min(runs):.0f}-{max(runs):.0f}")
asyncio.run(main())
