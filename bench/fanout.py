"""Fan-out: W writers and R readers on one document, writers typing as fast as the server takes it.

Reports, per contender and shape, the median over alternating rounds of: edits applied per
second summed over all readers (deliveries/s), the messages (Yjs updates, or encspaces log
entries) carrying them, and the server's CPU per delivery, measured with psutil on the
server's pid over the same window. encspaces batches keystrokes into signed entries (5 ms),
so one of its messages carries many edits; the Yjs clients send one message per edit, as
y-websocket's provider does.
"""

from __future__ import annotations

import argparse
import sys

from bench.workload import Settings, common_arguments, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, shapes="1x10,1x50,10x10", duration=4.0, rounds=3)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before the measured window (default 1)")
    parser.add_argument("--window", type=int, default=1024,
                        help="edits a writer may be ahead of the probe reader (default 1024)")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.rounds, args.duration, args.warmup = "1x2", 1, 1.0, 0.3
    settings = Settings(mode="fanout", duration=args.duration, warmup=args.warmup, rate=0.0, window=args.window,
                        drain=0.0, reader_procs=args.reader_procs)
    return run_cli("fanout", settings, args)


if __name__ == "__main__":
    sys.exit(main())
