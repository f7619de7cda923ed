"""CLI start-up, base tree against this branch, alternating A/B: wall and CPU time (user+sys, from
rusage of the child) of `python -m encspaces_clients.cli ARGS`, and python -X importtime's
cumulative time of `import encspaces_clients.cli.main`. Run from anywhere:
    python cli_startup.py BASE_DIR NEW_DIR ROUNDS OUT.json
Each tree is run from its own directory with PYTHONPATH set to it (the venv's python for both)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def run(tree: str, args: list[str], home: str) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": tree, "ENCSPACES_HOME": home}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=tree, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall * 1000, cpu * 1000


def import_us(tree: str) -> float:
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import encspaces_clients.cli.main"],
                         cwd=tree, env=env, check=True, capture_output=True, text=True).stderr
    line = [row for row in out.splitlines() if row.rstrip().endswith("| encspaces_clients.cli.main")][-1]
    return float(line.split("|")[1]) / 1000


def main() -> None:
    base, new, rounds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    home = tempfile.mkdtemp(prefix="v2-clients-home-")
    subprocess.run([sys.executable, "-m", "encspaces_clients.cli", "init", "--name", "bench"], cwd=new,
                   env={**os.environ, "PYTHONPATH": new, "ENCSPACES_HOME": home}, check=True, capture_output=True)
    cases = {"--version": ["-m", "encspaces_clients.cli", "--version"],
             "whoami": ["-m", "encspaces_clients.cli", "whoami"],
             "spaces": ["-m", "encspaces_clients.cli", "spaces"],
             "cat --help": ["-m", "encspaces_clients.cli", "cat", "--help"]}
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for label, tree in (("base", base), ("new", new)):
            results.setdefault(f"import_ms/{label}", {"ms": []})["ms"].append(import_us(tree))
            for case, args in cases.items():
                wall, cpu = run(tree, args, home)
                entry = results.setdefault(f"{case}/{label}", {"wall_ms": [], "cpu_ms": []})
                entry["wall_ms"].append(wall)
                entry["cpu_ms"].append(cpu)
    summary = {key: {metric: {"median": statistics.median(values), "min": min(values), "max": max(values)}
                     for metric, values in entry.items()} for key, entry in results.items()}
    with open(out, "w") as handle:
        json.dump({"rounds": rounds, "base": base, "new": new, "raw": results, "summary": summary}, handle, indent=1)
    for key, entry in summary.items():
        print(key, {m: f"{v['median']:.1f} [{v['min']:.1f}-{v['max']:.1f}]" for m, v in entry.items()})


if __name__ == "__main__":
    main()
