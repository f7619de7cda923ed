"""Where a new device's cold open of the B4 document spends its time (a profiling aid).

``python -m bench.profile_cold_open --dir DIR`` types the B4 trace through a relay kept in
``DIR`` the first time (with a snapshot written at the end, as ``bench.cold_open`` does), then
on every run opens the space on a brand-new device ``--opens`` times and prints the wall time
of each. ``--profile`` runs the opens under cProfile and prints the top functions (the
relay, a separate process, is not in that profile). ``--log`` uses a space with snapshots off.
``--verify N`` records the relay's messages of one more open and verifies them again N times
in this process with a fresh session and verifier: the CPU of the device's checks alone, a
figure that moves less than a whole open's (no sockets, store, document). ``--stages`` prints
the CPU of each stage of every open (the thread's own CPU time around the functions in
``STAGES``; nested stages are included in those around them): which part a change moved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import pstats
import shutil
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import encspaces
from bench.receive_cost import timed_stages
from bench.replay import COLD_OPEN_LOG_OPTIONS, full_stack
from bench.traces import load_trace
from encspaces import snapshot_keeper
from encspaces.core.identity import decode_space_id
from encspaces.core.session import ClientSession, Event
from encspaces.core.verifier import LogVerifier
from encspaces.persistence import Persistence
from encspaces.snapshot_keeper import SnapshotKeeper
from encspaces.space import Space
from encspaces.store import LocalStore
from encspaces_relay.process import RelayProcess


async def build(workdir: Path, snapshots: bool) -> dict[str, Any]:
    trace = load_trace("automerge-paper")
    kept: dict[str, Any] = {}
    async with RelayProcess(workdir / "relay", log_level="ERROR") as relay:
        await full_stack(trace, len(trace.txns), workdir / "build", relay, kept, snapshots=snapshots,
                         options=COLD_OPEN_LOG_OPTIONS)
    kept["reader"].save(workdir / "reader.key")
    meta = {"space_id": kept["space_id"], "text": kept["text"]}
    (workdir / "meta.json").write_text(json.dumps(meta))
    return meta


# (stage, owner, function name): the parts of an open timed by ``--stages``.
STAGES: list[tuple[str, Any, str]] = [
    ("verify (frames)", LogVerifier, "_verify"),
    ("space: apply verified", Space, "_apply_verified"),
    ("snapshot: check, load", SnapshotKeeper, "_on_snapshot"),
    ("snapshot: content hash", snapshot_keeper, "content_hash"),
    ("checkpoint: build", Persistence, "take_checkpoint"),
    ("store writes (its thread)", LocalStore, "_transaction"),
]


async def opens(
    workdir: Path, count: int, profile: cProfile.Profile | None, stages: list[dict[str, float]] | None = None,
) -> tuple[list[float], list[float]]:
    """The wall time and the CPU time of this process (all its threads, as ``device_cpu_s`` in
    bench.cold_open) of each open; ``stages``: gets each open's CPU per stage (``--stages``)."""
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
            with timed_stages(STAGES) if stages is not None else contextlib.nullcontext() as timed:
                start, start_cpu = time.perf_counter(), time.process_time()
                space = await encspaces.connect(relay.url, reader, meta["space_id"], data_dir=device)
                text = str(space.text("t"))
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                if profile is not None:
                    profile.disable()
                await space.close()  # (the store's writes of the open end here)
            if stages is not None and timed is not None:
                stages.append(dict(timed[0]))
            shutil.rmtree(device, ignore_errors=True)
            if text != meta["text"]:
                raise AssertionError("the new device's text differs from the document")
    return times, cpu


async def capture(workdir: Path) -> list[tuple[list[bytes], int]]:
    """The relay's messages to a new device during one open, as its session received them
    (the messages taken from the socket together, each group as one ``receive_all`` call)."""
    received: list[tuple[list[bytes], int]] = []
    original = ClientSession.receive_all

    def recording(session: ClientSession, messages: Iterable[bytes], now_ms: int) -> Iterator[list[Event]]:
        group = [bytes(data) for data in messages]
        received.append((group, now_ms))
        return original(session, group, now_ms)

    with mock.patch.object(ClientSession, "receive_all", recording):
        await opens(workdir, 1, None)
    return received


def verify_again(workdir: Path, received: list[tuple[list[bytes], int]], count: int) -> list[float]:
    """The CPU time of each of ``count`` verifications of ``received`` by a brand-new device."""
    meta = json.loads((workdir / "meta.json").read_text())
    reader = encspaces.Identity.load(workdir / "reader.key")
    space = decode_space_id(meta["space_id"])
    cpu: list[float] = []
    for _ in range(count):
        start = time.process_time()
        verifier = LogVerifier(space, reader)
        session = ClientSession(reader, verifier)
        for messages, now_ms in received:
            for _ in session.receive_all(messages, now_ms):
                pass
        verifier.settle_unpinned()
        cpu.append(time.process_time() - start)
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="where the relay and its B4 space are kept")
    parser.add_argument("--opens", type=int, default=5)
    parser.add_argument("--log", action="store_true", help="a space with snapshots off (the full log)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--verify", type=int, default=0, metavar="N",
                        help="verify one open's messages again N times in process (CPU of the checks alone)")
    parser.add_argument("--stages", action="store_true", help="the CPU of each stage of every open")
    args = parser.parse_args(argv)
    workdir = args.dir / ("log" if args.log else "snapshot")
    if not (workdir / "meta.json").exists():
        workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(build(workdir, snapshots=not args.log))
    profile = cProfile.Profile(time.process_time) if args.profile else None
    stages: list[dict[str, float]] | None = [] if args.stages else None
    times, cpu = asyncio.run(opens(workdir, args.opens, profile, stages))
    print("open ms:", " ".join(f"{t * 1000:.1f}" for t in times), file=sys.stderr)
    print("open cpu ms:", " ".join(f"{t * 1000:.1f}" for t in cpu), file=sys.stderr)
    print(f"median: {statistics.median(times) * 1000:.1f} ms wall, {statistics.median(cpu) * 1000:.1f} ms cpu",
          file=sys.stderr)
    if stages is not None:
        for stage, _, _ in STAGES:
            spent = [each.get(stage, 0.0) * 1000 for each in stages]
            print(f"{stage}: min {min(spent):.2f}, median {statistics.median(spent):.2f} ms cpu", file=sys.stderr)
    if args.verify:
        verify_cpu = verify_again(workdir, asyncio.run(capture(workdir)), args.verify)
        print(f"verify cpu ms: min {min(verify_cpu) * 1000:.2f}, median {statistics.median(verify_cpu) * 1000:.2f}",
              file=sys.stderr)
    if profile is not None:
        stats = pstats.Stats(profile, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
