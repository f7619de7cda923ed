"""``python -m bench.cluster``: the relay on SQLite beside 1, 2 and 3 relay processes on PostgreSQL + NATS.

The fan-out and latency workloads of bench.fanout and bench.latency (same load generators,
same measurements), run against each configuration in one invocation, alternating:

- ``sqlite``: one relay process on its SQLite file (the default deployment);
- ``pg1``, ``pg2``, ``pg3``: 1, 2 or 3 relay processes sharing one PostgreSQL schema (fresh
  per run, dropped after it), one NATS server (``--bus``) and one relay key, with the members
  spread over them: member k (w0, w1, .., r0, r1, ..) connects to relay k mod N, so a writer's
  entries reach most readers through another relay, over NATS.

Relay CPU is the user + system time of every relay process over the measured window (psutil,
i.e. /proc/PID/stat), summed and per process; *per entry* divides it by the entries sequenced
(each reader receives every entry, so entries/s = messages/s over all readers ÷ readers),
*per message* by the entries delivered to all readers together (the figure bench.fanout
reports). Before each run the relays' CPU is also sampled for a second with every member
connected and idle; *net per entry* subtracts that idle rate first. PostgreSQL's and NATS's
own CPU are not counted: both servers are shared with other work on the benchmark machine.
In latency mode the (writer, reader) pairs on one relay and on different relays get their
own percentiles (``p50_ms_same``, ``p50_ms_cross``). From the relays' /metrics after each run:
entries sequenced and commits lost to another relay sequencing the same space at the same
moment (each reloads the space and sequences again: docs/cluster.md).

Needs PostgreSQL (``--pg``, default ``ENCSPACES_TEST_PG`` or the test database on
127.0.0.1:5432) and NATS (``--nats``, default ``ENCSPACES_TEST_NATS`` or nats://127.0.0.1:4222)
with asyncpg and nats-py installed (``pip install -e '.[cluster]'``). Without them only the
SQLite relay would run, which says nothing about a cluster: the benchmark prints what is
missing, writes that to its JSON, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import median, rotated, write_result
from bench.contenders import free_port
from bench.workload import Settings, Shape, base_spec, drive, prepare_space, summarize
from encspaces_relay.keys import KEY_FILE
from encspaces_relay.process import RelayProcess

DEFAULT_PG = os.environ.get("ENCSPACES_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_NATS = os.environ.get("ENCSPACES_TEST_NATS", "nats://127.0.0.1:4222")
CONFIGS = {"sqlite": 0, "pg1": 1, "pg2": 2, "pg3": 3}  # name -> relay processes on PostgreSQL (0: SQLite)
IDLE_WINDOW = 1.0  # seconds of relay CPU sampled with every member connected and idle, before each run
MAIN_METRICS = {
    "fanout": ["deliveries_per_s", "entries_per_s", "relay_us_per_entry", "relay_us_per_entry_net",
               "server_us_per_message", "server_cpu_cores", "server_idle_cores", "lost_commits"],
    "latency": ["p50_ms", "p99_ms", "p50_ms_cross", "relay_us_per_entry", "relay_us_per_entry_net",
                "server_idle_cores", "lost_commits"],
}


async def unavailable(pg: str, nats_url: str) -> str | None:
    """None when both servers answer, else what is missing (one line)."""
    try:
        import asyncpg
        import nats
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[cluster]')"
    try:
        conn = await asyncpg.connect(pg, timeout=5)
        await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL at {pg} ({type(exc).__name__}: {exc}); set --pg or ENCSPACES_TEST_PG"
    async def quiet(exc: Exception) -> None:  # nats-py prints a traceback per failed attempt otherwise
        pass

    try:
        nc = await asyncio.wait_for(nats.connect(nats_url, connect_timeout=3, allow_reconnect=False,
                                                 max_reconnect_attempts=0, error_cb=quiet), 10)
        await nc.close()
    except Exception as exc:  # nats-py raises its own errors and plain OSErrors; TimeoutError from wait_for
        why = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__}, no answer within 10 s"
        return f"no NATS at {nats_url} ({why}); set --nats or ENCSPACES_TEST_NATS"
    return None


@contextlib.asynccontextmanager
async def pg_schema(pg: str) -> AsyncIterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards."""
    import asyncpg

    schema = f"bench_cluster_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(pg, timeout=10)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{pg}{'&' if '?' in pg else '?'}search_path={schema}"
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


@contextlib.asynccontextmanager
async def relays(config: str, workdir: Path, pg: str, nats_url: str) -> AsyncIterator[list[RelayProcess]]:
    """The configuration's relay processes, running; the first one's key copied to the others."""
    n = CONFIGS[config]
    started: list[RelayProcess] = []
    async with contextlib.AsyncExitStack() as stack:
        if n == 0:
            started.append(RelayProcess(workdir / "relay0", log_level="ERROR",
                                        extra_args=["--metrics-port", str(free_port())]))
            await started[0].start()
        else:
            dsn = await stack.enter_async_context(pg_schema(pg))
            for k in range(n):
                data_dir = workdir / f"relay{k}"
                if k:  # one cluster, one relay key (docs/cluster.md): what the operator distributes
                    data_dir.mkdir(parents=True)
                    shutil.copy2(workdir / "relay0" / KEY_FILE, data_dir / KEY_FILE)
                relay = RelayProcess(data_dir, log_level="ERROR", extra_args=[
                    "--store", dsn, "--bus", nats_url, "--metrics-port", str(free_port())])
                await relay.start()
                started.append(relay)
        try:
            yield started
        finally:
            for relay in started:
                await relay.stop()


def scrape(relay: RelayProcess) -> dict[str, float]:
    """The relay's counters from its /metrics (the port given with --metrics-port)."""
    port = relay.extra_args[relay.extra_args.index("--metrics-port") + 1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("encspaces_relay_") and name.endswith("_total"):
            found[name] = float(value)
    return found


async def run_once(config: str, shape: Shape, settings: Settings, workdir: Path, pg: str,
                   nats_url: str) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    async with relays(config, workdir, pg, nats_url) as procs:
        urls = [p.url for p in procs]
        spec = base_spec("encspaces", urls[0], shape, settings)
        spec.update(await prepare_space(urls[0], shape, workdir, member_urls=urls))
        relay_of = {name: info["url"] for name, info in spec["members"].items()}

        def pair_group(writer: str, reader: str) -> str:
            return "same" if relay_of[writer] == relay_of[reader] else "cross"

        measured = await drive(spec, shape, settings, [p.pid for p in procs], pair_group, idle_window=IDLE_WINDOW)
        counters = [await asyncio.to_thread(scrape, p) for p in procs]
    # Over the whole run (the space's creation included): how often relays raced for one seq.
    measured["entries_sequenced"] = sum(c.get("encspaces_relay_entries_sequenced_total", 0.0) for c in counters)
    measured["lost_commits"] = sum(c.get("encspaces_relay_lost_commits_total", 0.0) for c in counters)
    measured["relays"] = len(procs)
    measured["load_1min"] = max(load_before, os.getloadavg()[0])
    entries = None
    if settings.mode == "fanout" and measured.get("messages_per_s"):
        entries = measured["messages_per_s"] / shape.readers
    elif settings.mode == "latency" and measured.get("edits_sent"):
        # Paced edits are slower than the batch window: one entry per edit.
        entries = measured["edits_sent"] / (settings.duration - settings.warmup)
    if entries:
        measured["entries_per_s"] = entries
        measured["relay_us_per_entry"] = measured["server_cpu_cores"] / entries * 1e6
        each = measured.get("server_cpu_cores_each", [measured["server_cpu_cores"]])
        measured["relay_us_per_entry_each"] = [c / entries * 1e6 for c in each]
        # Less what the relays burn with every member connected and nothing to do (timers, the
        # bus's polling of heads, keep-alives), so that a small entry rate does not inflate it.
        busy = measured["server_cpu_cores"] - measured.get("server_idle_cores", 0.0)
        measured["relay_us_per_entry_net"] = max(0.0, busy) / entries * 1e6
    return measured


async def run_benchmark(configs: list[str], shapes: dict[str, Shape], settings: dict[str, Settings], rounds: int,
                        workdir: Path, pg: str, nats_url: str) -> dict[str, Any]:
    table: list[dict[str, Any]] = []
    for mode, shape in shapes.items():
        per: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
        for r in range(rounds):
            for config in rotated(configs, r):
                where = workdir / f"{mode}-{config}-{r}"
                started = time.monotonic()
                s = settings[mode]
                try:
                    bound = s.setup_timeout + s.duration + s.drain + 240
                    measured = await asyncio.wait_for(run_once(config, shape, s, where, pg, nats_url), bound)
                except Exception as exc:  # one failed run is reported, not fatal to the others
                    print(f"  {mode} {shape} {config} round {r + 1}: FAILED {exc!r}", file=sys.stderr)
                    measured = {"error": repr(exc)}
                finally:
                    shutil.rmtree(where, ignore_errors=True)
                per[config].append(measured)
                shown = {k: round(v, 3) for k, v in measured.items() if k in MAIN_METRICS[mode]
                         and isinstance(v, float)}
                print(f"  {mode} {shape} {config} round {r + 1}: {shown} load {measured.get('load_1min', 0):.1f} "
                      f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
        for config in configs:
            ok = [m for m in per[config] if "error" not in m]
            medians = summarize(ok) if ok else {}
            each = [m["relay_us_per_entry_each"] for m in ok if "relay_us_per_entry_each" in m]
            if each:
                medians["relay_us_per_entry_each"] = [median(run[k] for run in each) for k in range(len(each[0]))]
            table.append({"mode": mode, "shape": str(shape), "contender": config, "relays": CONFIGS[config] or 1,
                          "store": "sqlite" if config == "sqlite" else "postgresql+nats",
                          "rounds": per[config], "median": medians,
                          "errors": sorted({m["error"] for m in per[config] if "error" in m})})
    return {"settings": {mode: {**s.__dict__, "shape": str(shapes[mode])} for mode, s in settings.items()}
            | {"rounds": rounds, "configs": configs}, "results": table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {','.join(CONFIGS)}")
    parser.add_argument("--fanout-shape", default="1x12", help="WxR of the fan-out runs (default 1x12)")
    parser.add_argument("--latency-shape", default="2x6", help="WxR of the latency runs (default 2x6)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds the writers write per run (default 4)")
    parser.add_argument("--rate", type=float, default=20.0, help="latency: edits/s per writer (default 20)")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL (a fresh schema per run is made in it)")
    parser.add_argument("--nats", default=DEFAULT_NATS, help="NATS URL")
    parser.add_argument("--quick", action="store_true", help="sqlite and pg2, 1x2, 1 s, one round (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/cluster.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.fanout_shape, args.latency_shape, args.rounds, args.duration = "sqlite,pg2", "1x2", "1x2", \
            1, 1.0
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    missing = asyncio.run(unavailable(args.pg, args.nats)) if any(CONFIGS[c] for c in configs) else None
    if missing is not None:
        print(f"bench.cluster skipped: {missing}", file=sys.stderr)
        path = write_result("cluster", {"unavailable": missing, "results": []}, args.out)
        print(f"wrote {path}")
        return 0
    shapes = {"fanout": Shape.parse(args.fanout_shape), "latency": Shape.parse(args.latency_shape)}
    settings = {
        "fanout": Settings(mode="fanout", duration=args.duration, warmup=min(1.0, args.duration / 4), rate=0.0,
                           window=1024, drain=0.0, reader_procs=1),
        "latency": Settings(mode="latency", duration=args.duration, warmup=0.0, rate=args.rate, window=0,
                            drain=10.0, reader_procs=1),
    }
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        payload = asyncio.run(run_benchmark(configs, shapes, settings, args.rounds, Path(tmp), args.pg, args.nats))
    path = write_result("cluster", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
