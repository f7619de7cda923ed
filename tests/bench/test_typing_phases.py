"""bench.typing_phases (a profiling aid): the keystrokes land where the model says, and every phase is timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("psutil", reason="the bench extras are not installed (pip install -e '.[dev,bench]')")

from bench import typing_phases


def test_each_start_and_size_has_a_figure_per_phase(tmp_path: Path) -> None:
    out = tmp_path / "phases.json"
    assert typing_phases.main(["--sizes", "10KB", "--keystrokes", "700", "--typed", "300", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "typing_phases"
    rows = data["results"]
    assert [(row["start"], row["size"], row["untimed_keystrokes"]) for row in rows] == [
        ("pasted", "10KB", 0), ("typed", "10KB", 300), ("blocks", "10KB", 0)]
    assert all(len(row["us_per_phase"]) == 2 and min(row["us_per_phase"]) > 0 for row in rows)
