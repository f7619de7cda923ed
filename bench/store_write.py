"""CPU of the device store's writes, and of one thread hop, in this process.

- receive: the write after each received frame (one log row and the relay's signed head,
  ``synchronous=NORMAL``), as a Space does 200 times a second at 10×10;
- writer: an edit's pair of writes (the outbox row, fsynced before the entry is sent; then
  the received entry with the outbox clean-up);
- hop: an empty call answered through the store's worker thread, and through
  ``loop.run_in_executor`` on a one-thread pool, for comparison.

Run it in the old and new trees alternately (``PYTHONPATH=<tree>``) to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from encspaces import store as store_module
from encspaces.store import LocalStore


async def measure(count: int) -> dict[str, Any]:
    raw, head = os.urandom(400), os.urandom(32)
    signed, signature = os.urandom(150), os.urandom(64)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        async with await LocalStore.open(tmp, "ab" * 16) as store:
            await store.write(meta={"created": b"1"})
            cpu, wall = time.process_time(), time.perf_counter()
            for seq in range(1, count + 1):
                await store.write(log=[(seq, raw, head)], heads=[(seq, signed, signature)])
            result["receive_cpu_us"] = (time.process_time() - cpu) / count * 1e6
            result["receive_wall_us"] = (time.perf_counter() - wall) / count * 1e6
            edits = max(1, count // 5)
            cpu = time.process_time()
            for seq in range(count + 1, count + edits + 1):
                await store.write(outbox_add=[(seq, raw)])
                await store.write(log=[(seq, raw, head)], heads=[(seq, signed, signature)], outbox_done_through=seq)
            result["writer_pair_cpu_us"] = (time.process_time() - cpu) / edits * 1e6
    worker_class = getattr(store_module, "_Worker", None)
    if worker_class is not None:
        worker = worker_class()
        cpu = time.process_time()
        for _ in range(count):
            await worker.run(int)
        result["worker_hop_cpu_us"] = (time.process_time() - cpu) / count * 1e6
        worker.stop()
    pool = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    cpu = time.process_time()
    for _ in range(count):
        await loop.run_in_executor(pool, int)
    result["run_in_executor_hop_cpu_us"] = (time.process_time() - cpu) / count * 1e6
    pool.shutdown()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_write", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1500, help="received-frame writes (default 1500)")
    args = parser.parse_args(argv)
    print(json.dumps({key: round(value, 1) for key, value in asyncio.run(measure(args.count)).items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
