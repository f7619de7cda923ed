"""``python -m bench``: every benchmark, one after the other, then the report.

Each benchmark runs as its own ``python -m bench.NAME`` (so each can also be run alone) with
a time limit; one that fails or times out is reported and the others still run. ``--quick``
runs each in its smallest mode (the smoke test uses it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS_DIR

ORDER = ["fanout", "latency", "replay", "cold_open", "idle", "many_spaces", "files", "removal", "typing",
         "tables", "cluster"]
LIMITS = {"fanout": 900, "latency": 900, "replay": 1200, "cold_open": 600, "idle": 900, "many_spaces": 900,
          "files": 600, "removal": 600, "typing": 900, "tables": 900, "cluster": 900}  # seconds
# encspaces only (typing: beside bare pycrdt; cluster: its relay configurations): no --contenders
NO_CONTENDERS = {"removal", "typing", "tables", "cluster"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="each benchmark in its smallest mode")
    parser.add_argument("--contenders", default=None, help="passed on to every benchmark")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where the JSON, table and charts go")
    args = parser.parse_args(argv)
    chosen = [n for n in args.only.split(",") if n]
    unknown = set(chosen) - set(ORDER)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    failed = []
    for name in [n for n in ORDER if n in chosen]:
        command = [sys.executable, "-m", f"bench.{name}", "--out", str(args.results / f"{name}.json")]
        if args.quick:
            command.append("--quick")
        if args.contenders and name not in NO_CONTENDERS:
            command += ["--contenders", args.contenders]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        try:
            code = subprocess.run(command, timeout=LIMITS[name], check=False).returncode
        except subprocess.TimeoutExpired:
            code = -1
            print(f"== {name}: stopped after {LIMITS[name]} s", flush=True)
        print(f"== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    from bench.report import render  # matplotlib is only needed here

    path = render(args.results)
    if path is not None:
        print(f"== report: {path}")
    if failed:
        print(f"== failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
