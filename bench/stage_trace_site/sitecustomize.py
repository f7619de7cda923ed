"""Put this directory first on PYTHONPATH (with the tree's root after it) and set
BENCH_STAGE_TRACE=<dir> to trace every Python process of a bench run (bench/stage_trace.py).

BENCH_SWITCH_INTERVAL=<seconds>: an experiment, not a setting any run reports: every Python
process of the run uses that GIL switch interval (``sys.setswitchinterval``; Python's default is
0.005) - how long a thread that wants the GIL waits for a busy one to drop it."""

import os
import sys

if os.environ.get("BENCH_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))

if os.environ.get("BENCH_STAGE_TRACE"):
    from bench.stage_trace import install

    install()
