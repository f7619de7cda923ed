"""How the latency workload lays its clients over load-generator processes, and what each
process reports about its own saturation (bench/workload.py ``client_groups``, bench/loadgen.py
``SelfProbe``). Nothing here asserts a timing."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("psutil", reason="the bench extras are not installed (pip install -e '.[dev,bench]')")

from bench.workload import Settings, Shape, client_groups

ROOT = Path(__file__).resolve().parents[2]


def settings(mode: str, layout: str = "balanced", reader_procs: int = 1) -> Settings:
    return Settings(mode=mode, duration=1.0, warmup=0.0, rate=20.0, window=0, drain=1.0,
                    reader_procs=reader_procs, layout=layout)


def test_latency_deals_writers_and_readers_evenly_over_the_processes() -> None:
    groups = client_groups(Shape(10, 10), settings("latency"))
    assert groups == [([0, 2, 4, 6, 8], [0, 2, 4, 6, 8]), ([1, 3, 5, 7, 9], [1, 3, 5, 7, 9])]
    three = client_groups(Shape(10, 10), settings("latency", reader_procs=2))
    assert sorted(w for ws, _ in three for w in ws) == list(range(10))
    assert sorted(r for _, rs in three for r in rs) == list(range(10))
    assert [len(ws) + len(rs) for ws, rs in three] == [7, 7, 6]


def test_the_split_layout_and_fanout_keep_every_writer_with_the_probe() -> None:
    split = [(list(range(10)), [0]), ([], [1, 2, 3, 4, 5, 6, 7, 8, 9])]
    assert client_groups(Shape(10, 10), settings("latency", layout="split")) == split
    assert Settings(mode="latency", duration=1.0, warmup=0.0, rate=20.0, window=0, drain=1.0,
                    reader_procs=1).layout == "split"  # the default: comparable with earlier figures
    assert client_groups(Shape(10, 10), settings("fanout")) == split  # the writers pace on the probe


def test_no_empty_process_for_a_small_shape() -> None:
    assert client_groups(Shape(1, 1), settings("latency", reader_procs=3)) == [([0], []), ([], [0])]


def test_writers_in_several_processes_all_count_and_each_process_reports_its_load(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    env = {**os.environ, "BENCH_LOADGEN_PROBE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.latency", "--shapes", "2x2", "--contenders", "null", "--rounds", "1",
         "--duration", "1", "--drain", "5", "--layout", "balanced", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr
    measured = json.loads(out.read_text())["results"][0]["rounds"][0]
    assert "error" not in measured, measured
    # Both writers' edits (one in each process) are sent, and every reader got every one.
    assert measured["edits_sent"] == 2 * 20
    assert measured["missing"] == 0
    assert measured["samples"] == 2 * measured["edits_sent"]
    assert len(measured["clients_cpu_cores_each"]) == 2
    assert measured["machine_busy"] > 0
    probes = measured["loadgen_probe"]
    assert len(probes) == 2
    for probe in probes:
        assert set(probe) == {"window_s", "main_thread_cpu_s", "main_thread_busy", "lag_ms", "gc_ms"}
        assert len(probe["lag_ms"]) == 3 and len(probe["gc_ms"]) == 3


def test_the_stage_trace_chains_every_stage_of_an_edit(tmp_path: Path) -> None:
    """bench.stage_trace, end to end: a traced encspaces run, every stage of the chain found for
    (edit, reader) pairs across the three processes (a stamp missing anywhere leaves no pair)."""
    pytest.importorskip("pycrdt.websocket", reason="the bench extras are not installed")
    from bench.stage_trace import READER, RELAY, WRITER, analyse

    trace = tmp_path / "trace"
    env = {**os.environ, "BENCH_STAGE_TRACE": str(trace),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "stage_trace_site"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "bench.latency", "--shapes", "2x2", "--contenders", "encspaces", "--rounds", "1",
         "--duration", "1", "--drain", "5", "--out", str(tmp_path / "latency.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr
    result = analyse(trace)
    assert result["pairs"] > 0
    chain = WRITER + RELAY + READER
    assert all(f"{a} -> {b}" in result for a, b in itertools.pairwise(chain))
    assert result["total"]["p50"] > 0
    assert result["device store: fsynced transaction"]["p50"] > 0
