"""What a device spends per received entry: the load generators' side of the 10×10 latency run.

At 10×10 (``bench.latency``) the relay is nearly idle and the clients are saturated: 200
entries/s reach 20 Spaces, so what one Space spends on a received entry (head and author
signatures, decryption, apply, the store write) sets the latency. Wall-clock latency on the
shared machine swings with whatever else runs; this measures CPU instead, and paces the
writers slowly enough that the process is not saturated (each edit stays its own entry and
frame, as at 10×10).

Like the 10×10 load generator: ``--writers`` writers and ``--readers`` readers, every one a
full Space with its own store, all in this process; the relay in its own. Each writer types
``--edits`` edits at ``--rate`` a second (staggered). The CPU of this process (every thread:
the stores' threads too) from the first edit until every Space has verified every entry,
divided by the (entry, Space) pairs: each entry reaches every Space, its own writer's too;
and the CPU of the event loop's thread alone (``loop_cpu_us_per_pair``), which every Space of
the process shares: when it is busy, frames queue, whatever the other threads do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import encspaces
from bench.common import machine_info
from encspaces_relay.process import RelayProcess


async def measure(writers: int, readers: int, edits: int, rate: float, workdir: Path) -> dict[str, Any]:
    async with RelayProcess(workdir / "relay", log_level="ERROR") as relay:
        identities = [encspaces.Identity.generate() for _ in range(writers + readers)]
        first = await encspaces.create_space(relay.url, identities[0], data_dir=workdir / "d0")
        for identity in identities[1:]:
            await first.add_member(identity.public)
        spaces = [first]
        for n, identity in enumerate(identities[1:], 1):
            spaces.append(await encspaces.connect(relay.url, identity, first.id, data_dir=workdir / f"d{n}"))
        start_seq = first.seq
        for space in spaces:
            await space.wait_for_seq(start_seq, 30)
        texts = [space.text(f"w{n}") for n, space in enumerate(spaces[:writers])]
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        begin = time.monotonic() + 0.05

        async def type_into(n: int) -> None:
            for k in range(edits):
                await asyncio.sleep(max(0.0, begin + (k + n / writers) / rate - time.monotonic()))
                texts[n].insert(len(texts[n]), "x")

        await asyncio.gather(*(type_into(n) for n in range(writers)))
        for space in spaces[:writers]:
            await space.sync(60)  # every edit is in an entry the relay sequenced
        target = max(space.seq for space in spaces)
        for space in spaces:
            await space.wait_for_seq(target, 60)
        cpu, loop_cpu, wall = time.process_time() - cpu, time.thread_time() - loop_cpu, time.perf_counter() - wall
        for space in spaces:
            await space.close()
    entries = target - start_seq
    pairs = entries * len(spaces)
    return {
        "writers": writers, "readers": readers, "edits": writers * edits, "entries": entries,
        "pairs": pairs, "cpu_s": cpu, "loop_cpu_s": loop_cpu, "wall_s": wall,
        "cpu_us_per_pair": cpu / pairs * 1e6, "loop_cpu_us_per_pair": loop_cpu / pairs * 1e6,
        "cpu_us_per_edit": cpu / (writers * edits) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receive_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--readers", type=int, default=1)
    parser.add_argument("--edits", type=int, default=40, help="edits per writer (default 40)")
    parser.add_argument("--rate", type=float, default=5.0, help="edits per second per writer (default 5)")
    parser.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-recv-") as tmp:
        result = asyncio.run(measure(args.writers, args.readers, args.edits, args.rate, Path(tmp)))
    print(json.dumps(result))
    if args.out is not None:
        with args.out.open("a") as out:
            out.write(json.dumps({**result, "machine": machine_info()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
