"""The cost of witnessing at the relay: edit latency and relay CPU with 0, 1 and 3 witnesses.

    python -m bench.witness_cost [--seconds 10] [--writers 3] [--rate 20] [--rounds 2]

One relay process and three ``encspaces-witness`` processes run for the whole benchmark. Each
round, for each configuration in turn (a space without witnesses, one with 1 witness, one with
3 and a quorum of 2), ``--writers`` members type ``--rate`` edits a second each for
``--seconds``; every edit is timed from the insert to its entry verified in the writer's log
(``space.sync()``). Reported per configuration: median and p99 of that latency, the relay's CPU
(user + system, from /proc) per edit, the witnesses' CPU, and how far the witnesses had cosigned
one second after the writers stopped. The relay signs a checkpoint at most once a second per
space (``--checkpoint-interval``) and submits in the background: the latency should not move.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import encspaces
from encspaces.core import note
from encspaces.core.identity import decode_space_id
from encspaces_relay.process import RelayProcess
from encspaces_witness.process import WitnessProcess

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc/PID/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def witnessed_size(url: str, space: bytes) -> int:
    origin = note.space_origin(space)
    try:
        with urllib.request.urlopen(f"{url}/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint",
                                    timeout=5) as answer:
            return note.SignedCheckpoint.parse(answer.read()).checkpoint.size
    except urllib.error.HTTPError:
        return 0


async def type_for(space: encspaces.Space, seconds: float, rate: float, latencies: list[float]) -> None:
    text = space.text("t")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        text.insert(len(text), "x")
        await space.sync()
        latencies.append(time.monotonic() - t0)
        await asyncio.sleep(max(0.0, t0 + 1 / rate - time.monotonic()))


async def run(seconds: float, writers: int, rate: float, rounds: int, workdir: Path) -> None:
    async with RelayProcess(workdir / "relay", extra_args=["--allow-private-witnesses"]) as relay:
        witnesses = [WitnessProcess(workdir / f"w{i}", [relay.public_key], name=f"bench-witness-{i}")
                     for i in range(3)]
        for w in witnesses:
            await w.start()
        try:
            policy = [encspaces.Witness.from_vkey(w.vkey, w.url) for w in witnesses]
            configs = {"no witnesses": ([], None), "1 witness": (policy[:1], 1), "3 witnesses, quorum 2": (policy, 2)}
            spaces: dict[str, list[encspaces.Space]] = {}
            for name, (chosen, quorum) in configs.items():
                ids = [encspaces.Identity.generate() for _ in range(writers)]
                slug = name.split(",")[0].replace(" ", "-")
                first = await encspaces.create_space(relay.url, ids[0], data_dir=workdir / f"{slug}-0",
                                                     witnesses=chosen, quorum=quorum)
                for other in ids[1:]:
                    await first.add_member(other.public)
                members = [first] + [await encspaces.connect(relay.url, ident, first.id,
                                                             data_dir=workdir / f"{slug}-{i}")
                                     for i, ident in enumerate(ids[1:], start=1)]
                spaces[name] = members
            results: dict[str, dict[str, list[float]]] = {name: {"lat": [], "cpu": [], "wcpu": [], "edits": []}
                                                         for name in configs}
            behind: dict[str, list[str]] = {name: [] for name in configs}
            for _ in range(rounds):
                for name, members in spaces.items():
                    lat: list[float] = []
                    r0 = cpu_seconds(relay.pid)
                    w0 = sum(cpu_seconds(w.pid) for w in witnesses)
                    await asyncio.gather(*(type_for(m, seconds, rate, lat) for m in members))
                    await asyncio.sleep(1.0)  # the idle checkpoint, and its witnessing
                    results[name]["cpu"].append(cpu_seconds(relay.pid) - r0)
                    results[name]["wcpu"].append(sum(cpu_seconds(w.pid) for w in witnesses) - w0)
                    results[name]["edits"].append(len(lat))
                    results[name]["lat"].extend(lat)
                    chosen = configs[name][0]
                    space_id = decode_space_id(members[0].id)
                    sizes = [witnessed_size(w.url, space_id) for w in chosen]
                    behind[name].append(f"{min(sizes) if sizes else '-'} of {members[0].seq}")
            print(f"{writers} writers x {rate:g} edits/s for {seconds:g} s, {rounds} rounds; latency = insert to "
                  "verified in the writer's log")
            print("| witnesses | edits | latency p50 | latency p99 | relay CPU per edit | witnesses' CPU | "
                  "witnessed 1 s after the last edit |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for name, r in results.items():
                lat = sorted(r["lat"])
                edits = sum(r["edits"])
                p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
                print(f"| {name} | {edits:.0f} | {statistics.median(lat) * 1000:.1f} ms | {p99 * 1000:.1f} ms | "
                      f"{sum(r['cpu']) / edits * 1e6:.0f} µs | {sum(r['wcpu']):.2f} s | "
                      f"{', '.join(behind[name])} |")
            for members in spaces.values():
                for m in members:
                    await m.close()
        finally:
            for w in witnesses:
                await w.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.witness_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-witness-") as tmp:
        asyncio.run(run(args.seconds, args.writers, args.rate, args.rounds, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
