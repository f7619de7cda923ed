"""The fan-out and latency workloads: W writers and R readers on one document, per contender.

One run = one fresh server process + one document (a Yjs room, or an encspaces space with
W+R members) + load-generator processes (bench.loadgen): one holding every writer plus the
probe reader, and ``reader_procs`` more holding the other readers. The orchestrator (this
process) does no client work: it starts everything, tells every worker when to start, samples
the server's and the workers' CPU over the measured window, and gathers what they measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import encspaces
from bench.common import (
    CONTENDERS,
    DEFAULT_CONTENDERS,
    cpu_mark,
    cpu_used,
    median,
    parse_contenders,
    percentile,
    ratio,
    rotated,
    rss_bytes,
    usable_contenders,
    write_result,
)
from bench.contenders import start_server

READ_LIMIT = 1 << 26  # result lines carry every arrival time: allow long lines


@dataclass(frozen=True)
class Shape:
    writers: int
    readers: int

    @classmethod
    def parse(cls, text: str) -> Shape:
        w, _, r = text.lower().partition("x")
        shape = cls(int(w), int(r))
        if shape.writers < 1 or shape.readers < 1:
            raise ValueError(f"a shape needs at least one writer and one reader: {text!r}")
        return shape

    def __str__(self) -> str:
        return f"{self.writers}x{self.readers}"


@dataclass
class Settings:
    mode: str  # fanout | latency
    duration: float
    warmup: float
    rate: float
    window: int
    drain: float
    reader_procs: int
    setup_timeout: float = 120.0
    layout: str = "split"  # latency mode: "split" or "balanced" (client_groups)


class Worker:
    """One bench.loadgen process and its ``@@`` lines."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.lines: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = (await self.proc.stdout.readline()).decode()
            if not line:
                await self.lines.put(("EOF", ""))
                return
            if line.startswith("@@"):
                kind, _, rest = line[2:].rstrip("\n").partition(" ")
                await self.lines.put((kind, rest))

    async def expect(self, kind: str, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            while True:
                got, rest = await self.lines.get()
                if got == kind:
                    return rest
                if got == "EOF":
                    code = await self.proc.wait()
                    raise RuntimeError(f"load generator {self.name} exited ({code}) before {kind}")

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        self._pump.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)


async def prepare_space(url: str, shape: Shape, workdir: Path,
                        member_urls: Sequence[str] = ()) -> dict[str, Any]:
    """An encspaces space whose creator is writer 0 and whose other members are the rest.

    ``member_urls``: relays of one cluster to spread the members over (member k, in the order
    w0.., r0.., connects to ``member_urls[k % len]``); by default every member uses ``url``.
    """
    names = [f"w{i}" for i in range(shape.writers)] + [f"r{j}" for j in range(shape.readers)]
    members: dict[str, dict[str, str]] = {}
    identities: dict[str, encspaces.Identity] = {}
    for k, name in enumerate(names):
        identity = encspaces.Identity.generate()
        key = workdir / "keys" / f"{name}.key"
        identity.save(key)
        identities[name] = identity
        members[name] = {"key": str(key), "data_dir": str(workdir / "devices" / name),
                         "url": member_urls[k % len(member_urls)] if member_urls else url}
    creator = await encspaces.create_space(url, identities["w0"], data_dir=members["w0"]["data_dir"])
    try:
        for name in names[1:]:
            await creator.add_member(identities[name].public)
        space_id = creator.id
    finally:
        await creator.close()
    return {"space_id": space_id, "members": members}


def base_spec(contender: str, url: str, shape: Shape, settings: Settings) -> dict[str, Any]:
    """What every load generator of one run is told (bench.loadgen)."""
    return {
        "contender": contender, "url": url, "room": f"bench-{uuid.uuid4().hex[:12]}",
        "mode": settings.mode, "n_writers": shape.writers, "duration": settings.duration,
        "warmup": settings.warmup, "rate": settings.rate, "window": settings.window, "drain": settings.drain,
        "setup_timeout": settings.setup_timeout,
    }


async def run_once(contender: str, shape: Shape, settings: Settings, workdir: Path) -> dict[str, Any]:
    """One server, one document, one measured window. Returns what was measured."""
    workdir.mkdir(parents=True, exist_ok=True)
    async with start_server(contender, workdir) as server:
        spec = base_spec(contender, server.url, shape, settings)
        if contender == "encspaces":
            spec.update(await prepare_space(server.url, shape, workdir))
        return await drive(spec, shape, settings, [server.pid])


PairGroup = Callable[[str, str], str]


def client_groups(shape: Shape, settings: Settings) -> list[tuple[list[int], list[int]]]:
    """(writers, readers) of each load-generator process.

    ``layout="split"`` (the default, and always in fan-out): every writer and the probe reader in
    the first process (fan-out's writers pace themselves on the probe), the other readers spread
    over ``reader_procs`` more. ``layout="balanced"`` (latency only): writers and readers dealt
    in turn over ``1 + reader_procs`` processes (writers first, then readers, each to the next
    process), so every process carries the same share. At 10x10 the split layout's first process
    holds 11 of the 20 Spaces, each verifying every entry, plus all ten writers' entry building
    and outbox writes: it is the busiest event loop of the run, and every edit's outbox write
    and Submit wait in it; but 9 of the 10 readers sit in the lighter process. Which layout
    reads lower was not resolved on the shared 2-core machine (bench/README.md, "Latency at
    10x10 under load"): split stays the default, comparable with every earlier figure.
    """
    if settings.mode == "latency" and settings.layout == "balanced":
        procs = max(1, 1 + settings.reader_procs)
        balanced: list[tuple[list[int], list[int]]] = [([], []) for _ in range(procs)]
        for k in range(shape.writers + shape.readers):  # writers, then readers, dealt in turn
            ws, rs = balanced[k % procs]
            if k < shape.writers:
                ws.append(k)
            else:
                rs.append(k - shape.writers)
        return [(ws, rs) for ws, rs in balanced if ws or rs]
    groups: list[tuple[list[int], list[int]]] = [(list(range(shape.writers)), [0])]
    others = list(range(1, shape.readers))
    procs = max(1, min(settings.reader_procs, len(others)))
    for p in range(procs):
        part = others[p::procs]
        if part:
            groups.append(([], part))
    return groups


async def drive(spec: dict[str, Any], shape: Shape, settings: Settings, server_pids: Sequence[int],
                pair_group: PairGroup | None = None, idle_window: float = 0.0) -> dict[str, Any]:
    """Start the load generators on a running server (or several relay processes), measure one window.

    Server CPU is summed over ``server_pids`` (and given per process as ``server_cpu_cores_each``).
    ``pair_group(writer, reader)`` names a group of (writer, reader) pairs (say, on the same relay
    or not): in latency mode each group also gets its own ``p50_ms_<group>`` and ``p99_ms_<group>``.
    ``idle_window``: seconds to sample the server's CPU with every client connected and idle
    before the start (``server_idle_cores``): what it costs with nothing to do.
    """
    groups = client_groups(shape, settings)
    workers: list[Worker] = []
    try:
        for n, (ws, rs) in enumerate(groups):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.loadgen", json.dumps({**spec, "writers": ws, "readers": rs}),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=READ_LIMIT,
            )
            workers.append(Worker(f"#{n}", proc))
            # One at a time: pycrdt-websocket 0.16 leaves a client unserved when two
            # connect at once to a room that does not exist yet.
            await workers[-1].expect("READY", settings.setup_timeout)
        idle_cores = None
        if idle_window > 0:
            idle_a = cpu_mark(server_pids)
            await asyncio.sleep(idle_window)
            idle_b = cpu_mark(server_pids)
            idle_cores = cpu_used(idle_a, idle_b, server_pids) / (idle_b.at - idle_a.at)
        t_go = time.monotonic() + 0.3
        for w in workers:
            await w.send(f"@@GO {t_go}")
        pids = [*server_pids] + [w.proc.pid for w in workers]
        await asyncio.sleep(max(0.0, t_go + settings.warmup - time.monotonic()))
        mark_a = cpu_mark(pids)
        await asyncio.sleep(max(0.0, t_go + settings.duration - time.monotonic()))
        mark_b = cpu_mark(pids)
        server_rss = sum(rss_bytes(pid) for pid in server_pids)
        sent: dict[str, int] = {}
        for n, (ws, _) in enumerate(groups):
            if ws:
                sent.update(json.loads(await workers[n].expect("SENT", settings.duration + 60)))
        if settings.mode == "latency":
            for w in workers:
                await w.send(f"@@TOTALS {json.dumps(sent)}")
        results = [json.loads(await w.expect("RESULT", settings.drain + 90)) for w in workers]
        for w in workers:
            await asyncio.wait_for(w.proc.wait(), 30)
    finally:
        for w in workers:
            await w.stop()
    window = mark_b.at - mark_a.at
    measured: dict[str, Any] = {
        "edits_sent": sum(sent.values()),
        "server_cpu_cores": cpu_used(mark_a, mark_b, server_pids) / window,
        "clients_cpu_cores": cpu_used(mark_a, mark_b, [w.proc.pid for w in workers]) / window,
        # Each load generator's own share (a process near 1.0 is a saturated event loop: its
        # clients then queue behind each other, and the latency measured is that queue).
        "clients_cpu_cores_each": [cpu_used(mark_a, mark_b, [w.proc.pid]) / window for w in workers],
        "server_rss_mib": server_rss / 2**20,
    }
    # The share of the machine the run itself used (server and load generators). Near 1, or with
    # one load generator near a whole core, every client queues behind the others and a latency
    # is mostly that queue, not the server's (bench/README.md, "Latency at 10x10 under load").
    measured["machine_busy"] = (measured["server_cpu_cores"] + measured["clients_cpu_cores"]) / (os.cpu_count() or 1)
    if idle_cores is not None:
        measured["server_idle_cores"] = idle_cores
    probes = [result["probe"] for result in results if "probe" in result]
    if probes:  # BENCH_LOADGEN_PROBE: each load generator's own saturation (bench.loadgen.SelfProbe)
        measured["loadgen_probe"] = probes
    if len(server_pids) > 1:
        measured["server_cpu_cores_each"] = [cpu_used(mark_a, mark_b, [pid]) / window for pid in server_pids]
    if settings.mode == "fanout":
        deliveries = messages = 0.0
        lags = []
        for result in results:
            for snaps in result["snapshots"].values():
                (ta, na, ma), (tb, nb, mb) = snaps
                deliveries += (nb - na) / (tb - ta)
                messages += (mb - ma) / (tb - ta)
                lags.append(sum(sent.values()) - nb)
        # Edits sent but not yet applied at the slowest reader when the writers stopped: what
        # the server (or the reader's socket) was still holding.
        measured["max_reader_lag_edits"] = max(lags) if lags else None
        measured["deliveries_per_s"] = deliveries
        measured["messages_per_s"] = messages
        measured["edits_per_message"] = deliveries / messages if messages else None
        measured["server_us_per_delivery"] = measured["server_cpu_cores"] / deliveries * 1e6 if deliveries else None
        measured["server_us_per_message"] = measured["server_cpu_cores"] / messages * 1e6 if messages else None
        measured["writer_edits_per_s"] = sum(sent.values()) / settings.duration
    else:
        sends: dict[str, list[float]] = {}
        for result in results:
            sends.update(result.get("sends", {}))
        latencies: list[float] = []
        grouped: dict[str, list[float]] = {}
        missing = 0
        for result in results:
            missing += result.get("missing", 0)
            for reader, per_writer in result.get("arrivals", {}).items():
                for i, times in enumerate(per_writer):
                    sent_at = sends[f"w{i}"]
                    pair = [t - s for t, s in zip(times, sent_at, strict=False)]
                    latencies.extend(pair)
                    if pair_group is not None:
                        grouped.setdefault(pair_group(f"w{i}", reader), []).extend(pair)
        latencies.sort()
        measured["samples"] = len(latencies)
        measured["missing"] = missing
        if latencies:
            measured["p50_ms"] = percentile(latencies, 50) * 1000
            measured["p99_ms"] = percentile(latencies, 99) * 1000
            measured["max_ms"] = latencies[-1] * 1000
        for group, values in grouped.items():
            values.sort()
            if values:
                measured[f"p50_ms_{group}"] = percentile(values, 50) * 1000
                measured[f"p99_ms_{group}"] = percentile(values, 99) * 1000
    return measured


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = sorted({k for r in rounds for k, v in r.items() if isinstance(v, (int, float))})
    return {k: median(r.get(k) for r in rounds) for k in keys}


MAIN_METRICS = {
    "fanout": ["deliveries_per_s", "messages_per_s", "server_us_per_delivery", "server_us_per_message",
               "server_cpu_cores", "clients_cpu_cores"],
    "latency": ["p50_ms", "p99_ms", "server_cpu_cores"],
}


async def run_benchmark(settings: Settings, shapes: list[Shape], contenders: list[str], rounds: int,
                        workdir: Path) -> dict[str, Any]:
    usable, skipped = usable_contenders(contenders)
    table: list[dict[str, Any]] = []
    for shape in shapes:
        per: dict[str, list[dict[str, Any]]] = {c: [] for c in usable}
        for r in range(rounds):
            for contender in rotated(usable, r):
                where = workdir / f"{settings.mode}-{shape}-{contender}-{r}"
                started = time.monotonic()
                try:
                    bound = settings.setup_timeout + settings.duration + settings.drain + 180
                    measured = await asyncio.wait_for(run_once(contender, shape, settings, where), bound)
                except Exception as exc:  # one failed run is reported, not fatal to the others
                    print(f"  {settings.mode} {shape} {contender} round {r + 1}: FAILED {exc!r}", file=sys.stderr)
                    measured = {"error": repr(exc)}
                finally:
                    shutil.rmtree(where, ignore_errors=True)
                per[contender].append(measured)
                shown = {k: round(v, 3) for k, v in measured.items() if k in MAIN_METRICS[settings.mode]
                         and isinstance(v, float)}
                busy = measured.get("machine_busy")
                each = measured.get("clients_cpu_cores_each") or []
                load = (f", the run used {busy:.0%} of the machine, load generators "
                        f"{'/'.join(f'{c:.2f}' for c in each)} cores" if busy is not None else "")
                print(f"  {settings.mode} {shape} {contender} round {r + 1}: {shown} "
                      f"({time.monotonic() - started:.1f} s{load})", file=sys.stderr)
        for contender in usable:
            ok = [m for m in per[contender] if "error" not in m]
            table.append({"shape": str(shape), "contender": contender, "rounds": per[contender],
                          "median": summarize(ok) if ok else {},
                          "errors": sorted({m["error"] for m in per[contender] if "error" in m})})
    ratios = []
    for shape in shapes:
        ours = next((row["median"] for row in table if row["shape"] == str(shape) and row["contender"] == "encspaces"),
                    None)
        if ours is None:
            continue
        for row in table:
            if row["shape"] != str(shape) or row["contender"] == "encspaces":
                continue
            ratios.append({"shape": str(shape), "vs": row["contender"],
                           **{k: ratio(ours.get(k), row["median"].get(k)) for k in MAIN_METRICS[settings.mode]}})
    return {"settings": {**settings.__dict__, "shapes": [str(s) for s in shapes], "rounds": rounds},
            "contenders": {c: CONTENDERS[c] for c in usable}, "skipped": skipped, "results": table,
            "ratios_encspaces_over": ratios}


def common_arguments(parser: argparse.ArgumentParser, *, shapes: str, duration: float, rounds: int) -> None:
    parser.add_argument("--shapes", default=shapes, help=f"WxR list: writers x readers (default {shapes})")
    parser.add_argument("--contenders", default=DEFAULT_CONTENDERS,
                        help=f"comma-separated subset of {','.join(CONTENDERS)}")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"alternating rounds (default {rounds})")
    parser.add_argument("--duration", type=float, default=duration,
                        help=f"seconds the writers write per run (default {duration})")
    parser.add_argument("--reader-procs", type=int, default=1,
                        help="processes holding the readers other than the probe (default 1; the machine has 2 cores)")
    parser.add_argument("--quick", action="store_true", help="one tiny round of each contender (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/NAME.json)")


def run_cli(name: str, settings: Settings, args: argparse.Namespace) -> int:
    shapes = [Shape.parse(s) for s in args.shapes.split(",") if s.strip()]
    contenders = parse_contenders(args.contenders)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        payload = asyncio.run(run_benchmark(settings, shapes, contenders, args.rounds, Path(tmp)))
    path = write_result(name, payload, args.out)
    print(f"wrote {path}")
    return 0
