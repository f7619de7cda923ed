"""Cost of Peer.within_bound, called once per subscriber per fanned-out frame.

Usage (bench/README.md, "The relay-wide bound on unsent bytes"), from the tree to measure:
``PYTHONPATH=. python bench/results/h15-v3-harden/within_bound.py LABEL UNSENT`` where LABEL is
``ledger`` to give the peers the relay's UnsentLedger (if the tree has it) and UNSENT the bytes
the stand-in transport reports waiting.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from websockets.protocol import State

import encspaces_relay.peer as peer_mod
from encspaces_relay.config import RelayConfig


class _Transport:
    def __init__(self, unsent: int) -> None:
        self.unsent = unsent

    def get_write_buffer_size(self) -> int:
        return self.unsent


async def main(label: str, unsent: int) -> None:
    ws: Any = SimpleNamespace(transport=_Transport(unsent), protocol=SimpleNamespace(state=State.OPEN))
    config = RelayConfig(data_dir=Path("/tmp/unused"))
    extra: dict[str, Any] = {}
    if label == "ledger" and hasattr(peer_mod, "UnsentLedger"):
        extra["unsent"] = peer_mod.UnsentLedger(config.max_buffered_total)
    peers = [peer_mod.Peer(ws, i, config, **extra) for i in range(10)]
    runs = []
    for _ in range(15):
        started = time.perf_counter_ns()
        for _ in range(20000):
            for peer in peers:
                peer.within_bound()
        runs.append((time.perf_counter_ns() - started) / (20000 * len(peers)))
    print(f"{label}: median {statistics.median(runs):.0f} ns per call, range {min(runs):.0f}-{max(runs):.0f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
