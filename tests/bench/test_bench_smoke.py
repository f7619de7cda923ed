"""Smoke test of the benchmark harness: every benchmark in its quickest mode, well-formed JSON out.

It checks that each benchmark runs end to end against the contenders available here and
writes a result with the expected shape; it asserts nothing about speed. The Node contender
is left out (with a warning) when bench/node_modules is not installed, and the trace-based
benchmarks are skipped when ../shared/traces is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import ORDER

pytest.importorskip("psutil", reason="the bench extras are not installed (pip install -e '.[dev,bench]')")
pytest.importorskip("matplotlib", reason="the bench extras are not installed (pip install -e '.[dev,bench]')")
pytest.importorskip("pycrdt.websocket", reason="the bench extras are not installed (pip install -e '.[dev,bench]')")

from bench.common import node_contender_available
from bench.traces import traces_dir

ROOT = Path(__file__).resolve().parents[2]
TRACE_BASED = {"replay", "cold_open"}
WITH_CONTENDERS = {"fanout", "latency", "replay", "cold_open", "idle", "many_spaces"}
# One xdist worker runs the whole module (`make test` passes --dist loadgroup): the report test
# renders the results the benchmark tests wrote into the module's results directory.
pytestmark = pytest.mark.xdist_group("bench-smoke")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


def contenders() -> str:
    why = node_contender_available()
    if why:
        warnings.warn(f"bench smoke test: the Node y-websocket contender is skipped: {why}", stacklevel=2)
        return "null,pycrdt,encspaces"
    return "null,pycrdt,node,encspaces"


def run_quick(name: str, out: Path, extra: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, f"bench.{name} failed:\n{done.stdout}\n{done.stderr}"
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["benchmark"] == name
    assert {"date", "cores", "cpu", "versions"} <= set(data["machine"])
    return data


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ORDER)
def test_quick_benchmark_writes_well_formed_json(name: str, results: Path) -> None:
    if name in TRACE_BASED and not (traces_dir() / "automerge-paper.json.gz").exists():
        pytest.skip(f"bench.{name} needs the automerge-paper trace, absent from {traces_dir()}")
    extra = ["--contenders", contenders()] if name in WITH_CONTENDERS else []
    if name == "many_spaces":  # 3 clients per room at once: not for pycrdt-websocket 0.16 (see bench/README.md)
        extra = ["--contenders", contenders().replace("pycrdt,", "") + ",null-sansio"]
    data = run_quick(name, results / f"{name}.json", extra)
    if name == "cluster" and data.get("unavailable"):
        why = f"bench.cluster needs PostgreSQL and NATS: {data['unavailable']}"
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (CI=true: not skipped)")
        pytest.skip(why)
    if name == "removal":
        assert data["members"] > 1 and data["removal_entry_bytes"] > 0
        return
    if name == "tables":
        for impl in ("index", "scan"):
            by_size = data["results"][impl]
            assert "error" not in by_size, by_size
            assert all(set(by_size[str(rows)]) == set(data["ops"]) for rows in data["sizes"])
        return
    rows = data["results"]
    assert rows, "no contender produced a row"
    for row in rows:
        assert {"contender", "rounds", "median", "errors"} <= set(row)
        assert not row["errors"], f"{name}/{row['contender']}: {row['errors']}"
        assert row["median"], f"{name}/{row['contender']}: no medians"
    if name == "cluster":  # the SQLite relay beside two relays on PostgreSQL + NATS, each measured
        assert {(row["mode"], row["contender"]) for row in rows} == {
            (mode, config) for mode in ("fanout", "latency") for config in ("sqlite", "pg2")}
        assert all(row["median"]["relay_us_per_entry"] > 0 for row in rows)
        pg2 = next(row for row in rows if row["mode"] == "latency" and row["contender"] == "pg2")
        assert pg2["median"]["p50_ms_cross"] > 0 and len(pg2["median"]["relay_us_per_entry_each"]) == 2
        return
    assert any(row["contender"] == "encspaces" for row in rows)
    if name == "many_spaces":  # every edit was taken: the relay's limits did not refuse the load
        assert all(r["refusals"] == 0 and r["edits_per_s"] > 0 for row in rows for r in row["rounds"])
        for r in (r for row in rows for r in row["rounds"]):  # the figures that say whether it kept up
            assert 0 < r["delivered_share"] <= 1.05 and r["kept_up"] == (r["delivered_share"] >= 0.95)
            assert r["server_us_per_delivered_edit"] * r["delivered_share"] == pytest.approx(r["server_us_per_edit"])
        sansio = next(row for row in rows if row["contender"] == "null-sansio")  # it forwards every edit
        assert all(r["delivered_share"] >= 0.9 for r in sansio["rounds"]), sansio["rounds"]
    if name in ("fanout", "latency"):
        assert all(row["shape"] for row in rows)
        assert data["ratios_encspaces_over"]


@pytest.mark.timeout(60)
def test_report_renders_what_the_benchmarks_wrote(results: Path) -> None:
    if not any(results.glob("*.json")):
        pytest.skip("no benchmark results to render")
    from bench.report import PREVIOUS, render

    path = render(results)
    assert path is not None and path.read_text().startswith("# encspaces benchmark results")
    assert any(results.glob("*.png"))
    assert "previous run" not in path.read_text()
    # An earlier run's results kept in previous/: encspaces' figures from it stand beside the new ones.
    (results / PREVIOUS).mkdir()
    for found in results.glob("*.json"):
        shutil.copy(found, results / PREVIOUS / found.name)
    lines = render(results).read_text().splitlines()  # type: ignore[union-attr]
    header = next(line for line in lines if line.startswith("| figure"))
    assert header.split(" | ")[1] == "encspaces"
    assert re.fullmatch(r"encspaces, previous run \(\d{4}-\d\d-\d\d( to \d{4}-\d\d-\d\d)?\)", header.split(" | ")[2])
    start = lines.index(header) + 2
    rows = [line.split(" | ") for line in lines[start:lines.index("", start)]]
    assert rows and all(row[1] == row[2] for row in rows)  # the same results: the same figures
