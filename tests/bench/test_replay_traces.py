"""The replay harness takes any josephg/editing-traces trace: start content, non-ASCII text.

pycrdt counts UTF-8 bytes where a trace counts code points, so the Yjs contenders' writer used
to type a non-ASCII trace at the wrong offsets and the run was reported as failed although the
reader held everything the writer had typed. Speed is not asserted here.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from bench.replay import apply_patches_pycrdt
from bench.traces import load_trace

ROOT = Path(__file__).resolve().parents[2]
PIECES = ["a", "b ", "é", "ñ", "中文", "😀", "👩‍💻", "\n"]


def synthetic_trace(path: Path, txns: int = 300, seed: int = 5) -> str:
    """A small trace in the josephg format with a start content and mixed scripts; returns its end."""
    rng = random.Random(seed)
    text = start = "Début: 日本語 😀\n"
    out: list[dict[str, Any]] = []
    for _ in range(txns):
        patches = []
        for _ in range(rng.choice([1, 1, 1, 2])):
            pos = rng.randint(0, len(text))
            deleted = rng.randint(0, min(3, len(text) - pos)) if rng.random() < 0.3 else 0
            inserted = rng.choice(PIECES) if deleted == 0 or rng.random() < 0.5 else ""
            text = text[:pos] + inserted + text[pos + deleted :]
            patches.append([pos, deleted, inserted])
        out.append({"time": "2026-01-01T00:00:00Z", "patches": patches})
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump({"startContent": start, "endContent": text, "txns": out}, f)
    return text


def test_utf8_patches_rebuild_the_end_content(tmp_path: Path) -> None:
    end = synthetic_trace(tmp_path / "mixed.json.gz")
    trace = load_trace(str(tmp_path / "mixed.json.gz"))
    assert trace.name == "mixed" and trace.start_content and trace.end_content == end
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    text.insert(0, trace.start_content)
    for txn in trace.utf8_txns(len(trace.txns)):
        apply_patches_pycrdt(text, txn)
    assert str(text) == end


@pytest.mark.timeout(120)
def test_replay_of_a_non_ascii_trace_succeeds_for_every_contender(tmp_path: Path) -> None:
    pytest.importorskip("psutil", reason="the bench extras are not installed (pip install -e '.[dev,bench]')")
    synthetic_trace(tmp_path / "mixed.json.gz")
    out = tmp_path / "replay.json"
    done = subprocess.run([sys.executable, "-m", "bench.replay", "--trace", str(tmp_path / "mixed.json.gz"),
                           "--contenders", "null,encspaces", "--rounds", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    data = json.loads(out.read_text())
    assert data["trace"] == "mixed"
    rows = {row["contender"]: row for row in data["results"]}
    assert set(rows) == {"bare", "null", "encspaces"}
    for name, row in rows.items():
        assert not row["errors"], f"{name}: {row['errors']}"
        assert row["median"].get("reader_done_s"), f"{name}: no time until the reader held the final text"
