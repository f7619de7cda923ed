"""Summarize a py-spy ``--format raw`` profile: where one process's samples go.

    py-spy record --subprocesses --format raw -o prof.raw -- python -m bench.fanout ...
    python -m bench.pyspy_summary prof.raw --process "-m encspaces_relay"

Prints, for the processes whose command line contains ``--process``, the functions with the
most samples inclusive (anywhere on the stack) and exclusive (on top of the stack).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<where>[^()]*)\)$")


def short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    where = match.group("where")
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{match.group('func')} ({where.rsplit(':', 1)[0]})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyspy_summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", type=Path)
    parser.add_argument("--process", default="-m encspaces_relay", help="substring of the process command line")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    for line in args.raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not any(f.startswith("process ") and args.process in f for f in frames):
            continue
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        count = int(count_text)
        total += count
        for name in {short(f) for f in frames}:
            inclusive[name] += count
        if frames:
            exclusive[short(frames[-1])] += count
    if not total:
        print("no samples for that process", file=sys.stderr)
        return 1
    print(f"{total} samples")
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        print(f"\n{title}:")
        for name, count in counter.most_common(args.top):
            print(f"  {100 * count / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
