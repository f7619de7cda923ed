"""A load-generator process: some writers and/or readers of one document, driven over stdio.

The orchestrator (bench.workload) starts one of these per group of clients with a JSON spec
as its only argument, and they talk in lines prefixed with ``@@``:

    worker -> READY                 every client connected and synced
    orch   -> GO <t_go>             start at monotonic time t_go (a clock all processes share)
    worker -> SENT {"w0": n, ...}   (writers) how many edits each writer made
    orch   -> TOTALS {"w0": n, ...} (latency mode) how many edits readers should wait for
    worker -> RESULT {...}          what this process measured; then it exits

Writers append one character per edit to their own text ``w{i}``. In ``fanout`` mode they
type as fast as the server takes it, but at most ``window`` edits ahead of what the probe
reader (a reader in the writers' process) has applied, so no server queues without bound;
in ``latency`` mode each types ``rate`` edits per second, staggered. Readers observe every
text and record when each edit is applied (latency) or how many were applied at the start
and end of the measured window (fanout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import encspaces
from bench.clients import Arrivals, Client, SpaceClient, YjsClient
from bench.common import is_null

BURST = 64  # edits typed between two yields to the event loop in fanout mode
PROBE_ENV = "BENCH_LOADGEN_PROBE"  # set (to anything) to measure this process's own saturation
PROBE_TICK = 0.002  # seconds between two loop-lag samples


class SelfProbe:
    """How busy this load generator was over the measured window, to tell a figure that is the
    server's from one that is this process's own queue.

    - ``main_thread_cpu_s``: CPU of the event loop's thread (``time.thread_time``) over the window;
      near the window's length, the loop never waited, and every client in it queued behind the others.
    - ``lag_ms``: how late a timer of ``PROBE_TICK`` fires (p50 / p99 / max): the wait any
      callback, a websocket frame included, had before the loop got to it.
    - ``gc_ms``: the collector's pauses (count, sum, max) in the window.
    """

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.gc_pauses: list[float] = []
        self._gc_start = 0.0
        self._running = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if not self._running:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start:
            self.gc_pauses.append(time.perf_counter() - self._gc_start)

    async def run(self, t_a: float, t_end: float) -> dict[str, Any]:
        import gc

        await sleep_until(t_a)
        gc.callbacks.append(self._on_gc)
        self._running = True
        cpu_a, wall_a = time.thread_time(), time.monotonic()
        try:
            while time.monotonic() < t_end:
                due = time.monotonic() + PROBE_TICK
                await asyncio.sleep(PROBE_TICK)
                self.lags.append(time.monotonic() - due)
        finally:
            self._running = False
            gc.callbacks.remove(self._on_gc)
        cpu_b, wall_b = time.thread_time(), time.monotonic()
        lags = sorted(self.lags) or [0.0]
        return {
            "window_s": wall_b - wall_a,
            "main_thread_cpu_s": cpu_b - cpu_a,
            "main_thread_busy": (cpu_b - cpu_a) / (wall_b - wall_a),
            "lag_ms": [1000 * lags[len(lags) // 2], 1000 * lags[min(len(lags) - 1, int(len(lags) * 0.99))],
                       1000 * lags[-1]],
            "gc_ms": [len(self.gc_pauses), 1000 * sum(self.gc_pauses), 1000 * max(self.gc_pauses, default=0.0)],
        }


def emit(kind: str, payload: Any = None) -> None:
    line = f"@@{kind}" if payload is None else f"@@{kind} {json.dumps(payload)}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def read_command(reader: asyncio.StreamReader, kind: str, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        while True:
            line = (await reader.readline()).decode()
            if not line:
                raise SystemExit("the orchestrator went away")
            if line.startswith(f"@@{kind}"):
                return line[len(kind) + 2:].strip()


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def make_client(spec: dict[str, Any], member: str) -> Client:
    if spec["contender"] == "encspaces":
        info = spec["members"][member]
        identity = encspaces.Identity.load(info["key"])
        # A cluster benchmark (bench.cluster) spreads the members over several relays.
        return SpaceClient(info.get("url", spec["url"]), identity, spec["space_id"], Path(info["data_dir"]))
    return YjsClient(spec["url"], spec["room"], handshake=not is_null(spec["contender"]))


async def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def write_fast(client: Client, name: str, index: int, t_end: float, window: int,
                     probe: Arrivals | None) -> int:
    sent = 0
    while time.monotonic() < t_end:
        burst = BURST
        if probe is not None:
            ahead = sent - probe.counts[index]
            if ahead >= window:
                probe.progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(probe.progress.wait(), max(0.001, t_end - time.monotonic()))
                continue
            burst = min(burst, window - ahead)
        for _ in range(burst):
            client.append(name, "x")
        await client.flush()
        sent += burst
    return sent


async def write_paced(client: Client, name: str, start: float, t_end: float, rate: float,
                      sends: list[float]) -> int:
    k = 0
    while True:
        due = start + k / rate
        if due >= t_end:
            return k
        await sleep_until(due)
        sends.append(time.monotonic())
        client.append(name, "x")
        await client.flush()
        k += 1


async def snapshot_at(t: float, arrivals: Arrivals, client: Client, into: list[tuple[float, int, int]]) -> None:
    await sleep_until(t)
    into.append((time.monotonic(), arrivals.total, client.messages))


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    commands = await stdin_reader()
    mode = spec["mode"]
    n_writers = spec["n_writers"]
    writers = [(i, make_client(spec, f"w{i}")) for i in spec["writers"]]
    readers = [(j, make_client(spec, f"r{j}")) for j in spec["readers"]]
    arrivals: dict[int, Arrivals] = {}
    for _, client in writers + readers:
        await client.open()
    for j, client in readers:
        arrivals[j] = Arrivals(n_writers, record_times=mode == "latency")
        arrivals[j].watch(client)
    emit("READY")

    t_go = float(await read_command(commands, "GO", spec["setup_timeout"]))
    t_a = t_go + spec["warmup"]
    t_end = t_go + spec["duration"]
    probe = arrivals[readers[0][0]] if readers and writers else None
    snaps: dict[int, list[tuple[float, int, int]]] = {j: [] for j, _ in readers}
    snap_tasks = [asyncio.create_task(snapshot_at(t, arrivals[j], c, snaps[j])) for j, c in readers
                  for t in (t_a, t_end)] if mode == "fanout" else []
    sends: dict[int, list[float]] = {i: [] for i, _ in writers}
    probe_task = asyncio.create_task(SelfProbe().run(t_a, t_end)) if os.environ.get(PROBE_ENV) else None
    await sleep_until(t_go)
    if mode == "fanout":
        jobs = [write_fast(c, f"w{i}", i, t_end, spec["window"], probe) for i, c in writers]
    else:
        rate = spec["rate"]
        jobs = [write_paced(c, f"w{i}", t_go + i / (rate * n_writers), t_end, rate, sends[i]) for i, c in writers]
    sent = await asyncio.gather(*jobs)
    if writers:
        emit("SENT", {f"w{i}": n for (i, _), n in zip(writers, sent, strict=True)})
    await asyncio.gather(*snap_tasks)
    probed = await probe_task if probe_task is not None else None

    missing = 0
    if mode == "latency" and readers:
        totals = json.loads(await read_command(commands, "TOTALS", spec["duration"] + spec["drain"] + 30))
        want = [int(totals[f"w{i}"]) for i in range(n_writers)]
        deadline = time.monotonic() + spec["drain"]
        for j, _ in readers:
            a = arrivals[j]
            while any(have < need for have, need in zip(a.counts, want, strict=True)) and time.monotonic() < deadline:
                a.progress.clear()
                try:
                    await asyncio.wait_for(a.progress.wait(), max(0.001, deadline - time.monotonic()))
                except TimeoutError:
                    break
            missing += sum(max(0, need - have) for have, need in zip(a.counts, want, strict=True))

    result: dict[str, Any] = {"writers": {f"w{i}": n for (i, _), n in zip(writers, sent, strict=True)}}
    if probed is not None:
        result["probe"] = probed
    if mode == "latency":
        result["sends"] = {f"w{i}": sends[i] for i, _ in writers}
        result["arrivals"] = {f"r{j}": arrivals[j].times for j, _ in readers}
        result["missing"] = missing
    else:
        result["snapshots"] = {f"r{j}": snaps[j] for j, _ in readers}
    for a in arrivals.values():
        a.unwatch()
    closing = await asyncio.gather(*(asyncio.wait_for(c.close(), 20) for _, c in writers + readers),
                                   return_exceptions=True)
    for outcome in closing:  # a close that fails or hangs must not hide the results
        if isinstance(outcome, BaseException):
            print(f"loadgen: closing a client failed: {outcome!r}", file=sys.stderr)
    return result


def main() -> int:
    spec = json.loads(sys.argv[1])
    result = asyncio.run(run(spec))
    emit("RESULT", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
