"""Where a new device's cold open of the B4 document spends its time (a profiling aid).

``python -m bench.profile_cold_open --dir DIR`` types the B4 trace through a relay kept in
``DIR`` the first time (with a snapshot written at the end, as ``bench.cold_open`` does), then
on every run opens the space on a brand-new device ``--opens`` times and prints the wall time
of each. ``--profile`` runs the opens under cProfile and prints the top functions (the
relay, a separate process, is not in that profile). ``--log`` uses a space with snapshots off.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import encspaces
from bench.replay import full_stack
from bench.traces import load_trace
from encspaces_relay.process import RelayProcess


async def build(workdir: Path, snapshots: bool) -> dict[str, Any]:
    trace = load_trace("automerge-paper")
    kept: dict[str, Any] = {}
    async with RelayProcess(workdir / "relay", log_level="ERROR") as relay:
        await full_stack(trace, len(trace.txns), workdir / "build", relay, kept, snapshots=snapshots)
    kept["reader"].save(workdir / "reader.key")
    meta = {"space_id": kept["space_id"], "text": kept["text"]}
    (workdir / "meta.json").write_text(json.dumps(meta))
    return meta


async def opens(workdir: Path, count: int, profile: cProfile.Profile | None) -> tuple[list[float], list[float]]:
    """The wall time and the CPU time of this process (all its threads, as ``device_cpu_s`` in
    bench.cold_open) of each open."""
    meta = json.loads((workdir / "meta.json").read_text())
    reader = encspaces.Identity.load(workdir / "reader.key")
    times: list[float] = []
    cpu: list[float] = []
    async with RelayProcess(workdir / "relay", log_level="ERROR") as relay:
        for i in range(count):
            device = workdir / f"device-{i}"
            shutil.rmtree(device, ignore_errors=True)
            if profile is not None:
                profile.enable()
            start, start_cpu = time.perf_counter(), time.process_time()
            space = await encspaces.connect(relay.url, reader, meta["space_id"], data_dir=device)
            text = str(space.text("t"))
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            if profile is not None:
                profile.disable()
            await space.close()
            shutil.rmtree(device, ignore_errors=True)
            if text != meta["text"]:
                raise AssertionError("the new device's text differs from the document")
    return times, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="where the relay and its B4 space are kept")
    parser.add_argument("--opens", type=int, default=5)
    parser.add_argument("--log", action="store_true", help="a space with snapshots off (the full log)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    workdir = args.dir / ("log" if args.log else "snapshot")
    if not (workdir / "meta.json").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(build(workdir, snapshots=not args.log))
    profile = cProfile.Profile(time.process_time) if args.profile else None
    times, cpu = asyncio.run(opens(workdir, args.opens, profile))
    print("open ms:", " ".join(f"{t * 1000:.1f}" for t in times), file=sys.stderr)
    print("open cpu ms:", " ".join(f"{t * 1000:.1f}" for t in cpu), file=sys.stderr)
    print(f"median: {statistics.median(times) * 1000:.1f} ms wall, {statistics.median(cpu) * 1000:.1f} ms cpu",
          file=sys.stderr)
    if profile is not None:
        stats = pstats.Stats(profile, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
