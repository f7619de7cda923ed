"""What every benchmark shares: machine facts, statistics, CPU and memory sampling, result files.

Clocks: every process on the machine reads the same CLOCK_MONOTONIC through
``time.monotonic()`` (and asyncio's loop clock is that same clock), so a send time taken in a
writer process and an arrival time taken in a reader process can be subtracted directly.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
NODE_DIR = BENCH_DIR / "node_modules"

# The contenders, in the order tables show them. Keys are what --contenders takes.
CONTENDERS: dict[str, str] = {
    "null": "null relay (websockets broadcast)",
    "null-sansio": "null relay on websockets' sans-I/O core",
    "pycrdt": "pycrdt-websocket (Python, plaintext Yjs)",
    "node": "y-websocket server (Node, plaintext Yjs)",
    "encspaces": "encspaces relay + clients (E2EE, verified)",
}
# Run only when named in --contenders: not part of the sets compared by default.
OPT_IN = frozenset({"null-sansio"})
DEFAULT_CONTENDERS = ",".join(c for c in CONTENDERS if c not in OPT_IN)
SHORT: dict[str, str] = {"null": "null relay", "null-sansio": "null relay (sans-I/O)", "pycrdt": "pycrdt-websocket",
                         "node": "y-websocket (Node)",
                         "encspaces": "encspaces"}


def machine_info() -> dict[str, Any]:
    """Date, cores, CPU model and the versions of everything measured."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version()}
    for dist in ("encspaces", "pycrdt", "pycrdt-websocket", "websockets", "pynacl", "msgpack", "aiosqlite",
                 "psutil", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    versions["node"] = node_version() or "absent"
    for pkg in ("@y/websocket-server", "yjs", "ws"):
        path = NODE_DIR / pkg / "package.json"
        if path.exists():
            versions[pkg] = json.loads(path.read_text())["version"]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }


def node_version() -> str | None:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def node_contender_available() -> str | None:
    """None when the Node server can run, else why not (for a clear skip message)."""
    if node_version() is None:
        return "node is not installed"
    if not (NODE_DIR / "@y" / "websocket-server" / "src" / "server.js").exists():
        return "bench/node_modules is not installed (run `make bench` or `cd bench && npm ci --ignore-scripts`)"
    return None


def median(values: Iterable[float | None]) -> float | None:
    data = [v for v in values if v is not None]
    return statistics.median(data) if data else None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values) - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


@dataclass
class CpuMark:
    """CPU seconds (user + system, all threads) of a set of processes at one instant."""

    at: float
    cpu: dict[int, float]


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def cpu_mark(pids: Iterable[int]) -> CpuMark:
    return CpuMark(time.monotonic(), {pid: cpu_seconds(pid) for pid in pids})


def cpu_used(before: CpuMark, after: CpuMark, pids: Iterable[int]) -> float:
    return sum(after.cpu.get(pid, 0.0) - before.cpu.get(pid, 0.0) for pid in pids)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux: pages actually held, shared libraries included)."""
    return int(psutil.Process(pid).memory_info().rss)


def write_result(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """bench/results/NAME.json (or ``out``), with the machine facts attached."""
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "machine": machine_info(), **payload}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def print_result(result: dict[str, Any], out: Path | None) -> None:
    """Print ``result`` as JSON and, given ``out``, append it there as one line with the machine
    facts: the form of the one-process benches whose alternating old/new runs each add a line
    to the same file."""
    if out is not None:
        with out.open("a") as lines:
            lines.write(json.dumps({**result, "machine": machine_info()}) + "\n")
    print(json.dumps(result))


def is_null(name: str) -> bool:
    """A null relay: it forwards messages and holds no document (no sync handshake, no own copy)."""
    return name in ("null", "null-sansio")


def parse_contenders(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONTENDERS]
    if unknown:
        raise SystemExit(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    return names


def usable_contenders(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The contenders that can run here, and why the others were skipped."""
    skipped: dict[str, str] = {}
    usable = []
    for name in names:
        why = node_contender_available() if name == "node" else None
        if why:
            skipped[name] = why
            print(f"skipping the Node contender: {why}", file=sys.stderr)
        else:
            usable.append(name)
    return usable, skipped


def rotated(items: list[str], round_index: int) -> list[str]:
    """Alternate which contender goes first from one round to the next."""
    if not items:
        return items
    k = round_index % len(items)
    return items[k:] + items[:k]


def record_round(per: dict[str, list[dict[str, Any]]], bench: str, name: str, round_index: int,
                 measured: dict[str, Any], note: str = "") -> None:
    """Keep one contender's measurement of one round and show it on stderr as it comes."""
    per[name].append(measured)
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in measured.items()}
    print(f"  {bench} {name} round {round_index + 1}: {shown}{note}", file=sys.stderr)


def summarize(per: dict[str, list[dict[str, Any]]], names: Iterable[str]) -> list[dict[str, Any]]:
    """Each contender's rounds, the median of every numeric figure over its good rounds, its errors."""
    table: list[dict[str, Any]] = []
    for name in names:
        ok = [m for m in per[name] if "error" not in m]
        keys = sorted({k for m in ok for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        table.append({"contender": name, "rounds": per[name],
                      "median": {k: median(m.get(k) for m in ok) for k in keys},
                      "errors": sorted({m["error"] for m in per[name] if "error" in m})})
    return table
