"""Latency: W writers and R readers on one document, each writer typing at a human rate.

Each writer types ``--rate`` edits per second (staggered); every reader records when each
edit is applied to its document (for encspaces: after the entry was verified and decrypted).
Writers and readers live in different processes; both read CLOCK_MONOTONIC, which every
process on the machine shares, so latency = arrival time at the reader - time the writer made
the edit. Reports p50 and p99 over all (edit, reader) pairs, medians over alternating rounds.
"""

from __future__ import annotations

import argparse
import sys

from bench.workload import Settings, common_arguments, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, shapes="1x10,1x50,10x10", duration=4.0, rounds=3)
    parser.add_argument("--rate", type=float, default=20.0, help="edits per second per writer (default 20)")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="seconds readers wait for the last edits after the writers stop (default 10)")
    parser.add_argument("--layout", choices=("split", "balanced"), default="split",
                        help="load generators: every writer and one reader in the first process, the other "
                             "readers in the rest (split, default), or writers and readers dealt evenly over "
                             "the processes (balanced)")
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.rounds, args.duration = "1x2", 1, 1.0
    settings = Settings(mode="latency", duration=args.duration, warmup=0.0, rate=args.rate, window=0,
                        drain=args.drain, reader_procs=args.reader_procs, layout=args.layout)
    return run_cli("latency", settings, args)


if __name__ == "__main__":
    sys.exit(main())
