"""``python -m bench.bus_outage``: how late a member on another relay sees an entry while NATS is down.

Two relay daemons (``RelayProcess``) on one PostgreSQL database, each reaching NATS through a
TCP proxy of this process that can cut it (every connection closed, new ones refused). A
writer is connected to relay A only, a reader to relay B only (SDK spaces, each given one
URL). A sample: the writer appends one edit and waits until it is acknowledged (in its
verified log, so committed to the database); the delay is the time from then until the
reader's verified log has it. Three cases, in this order:

- ``bus up``: both relays on NATS; B hears A's announcement (the baseline).
- ``A cut off``: A's link to NATS is cut; B's is up, so only B's periodic read of the stored
  heads (the bus's ``poll_up``, 10 s) brings the entry: the bound is ``poll_up`` plus one
  query.
- ``NATS down``: both links cut; B reads the stored heads every ``poll_down`` (2 s).

Before each write the bench waits a random fraction of the case's polling interval, so the
samples fall at random phases of the reader's timer (writing right after a delivery would
measure the worst case every time). The relays run with the bus's default intervals; the
figures are for this machine and its load, the bound is the interval.

Needs PostgreSQL (``--dsn``, default the test database on 127.0.0.1:5432; a schema of its own,
dropped at the end) and NATS (``--nats``, default nats://127.0.0.1:4222), and
``pip install -e '.[cluster]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.proxy import CuttableProxy

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_NATS = "nats://127.0.0.1:4222"
POLL_UP, POLL_DOWN = 10.0, 2.0  # encspaces_relay.bus.NatsBus's defaults, which the relays run with
CASES = ("bus up", "A cut off", "NATS down")
SETTLE = 1.5  # seconds after a cut before sampling: the relays notice their bus is gone


async def _sample(writer: Any, reader: Any, interval: float, n: int, timeout: float) -> list[float]:
    delays = []
    items = writer.list("log")
    for i in range(n):
        await asyncio.sleep(random.uniform(0, interval))
        items.append(i)
        await writer.sync(timeout=timeout)
        acked = time.monotonic()
        await reader.wait_for_seq(writer.seq, timeout=timeout)
        delays.append((time.monotonic() - acked) * 1000)
    return delays


async def run(dsn: str, nats_url: str, samples: dict[str, int]) -> dict[str, Any]:
    import asyncpg

    import encspaces
    from encspaces_relay.keys import KEY_FILE
    from encspaces_relay.process import RelayProcess

    schema = f"bench_{os.urandom(4).hex()}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    target = urlsplit(nats_url)
    proxies = [CuttableProxy(target.hostname or "127.0.0.1", target.port or 4222) for _ in range(2)]
    nodes: list[RelayProcess] = []
    spaces: list[Any] = []
    delays: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            seed = os.urandom(32)
            store = f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"
            for i, proxy in enumerate(proxies):
                await proxy.start()
                data = Path(tmp) / f"node{i}"
                data.mkdir(mode=0o700)
                fd = os.open(data / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(seed)  # one cluster, one relay key
                nodes.append(RelayProcess(data, log_level="ERROR",
                                          extra_args=["--store", store, "--bus", f"nats://127.0.0.1:{proxy.port}"]))
            await asyncio.gather(*(node.start() for node in nodes))
            ids = [encspaces.Identity.generate() for _ in range(2)]
            writer = await encspaces.create_space(nodes[0].url, ids[0], data_dir=Path(tmp) / "w")
            spaces.append(writer)
            await writer.add_member(ids[1].public)
            reader = await encspaces.connect(nodes[1].url, ids[1], writer.id, data_dir=Path(tmp) / "r")
            spaces.append(reader)
            await reader.wait_for_seq(writer.seq, timeout=60)

            delays["bus up"] = await _sample(writer, reader, 0.2, samples["bus up"], 60)
            await proxies[0].cut()
            await asyncio.sleep(SETTLE)
            delays["A cut off"] = await _sample(writer, reader, POLL_UP, samples["A cut off"], 4 * POLL_UP)
            await proxies[1].cut()
            await asyncio.sleep(SETTLE)
            delays["NATS down"] = await _sample(writer, reader, POLL_DOWN, samples["NATS down"], 4 * POLL_UP)
    finally:
        for space in spaces:
            await space.close()
        await asyncio.gather(*(node.stop() for node in nodes))
        for proxy in proxies:
            await proxy.cut()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    bounds = {"bus up": None, "A cut off": POLL_UP * 1000, "NATS down": POLL_DOWN * 1000}
    return {
        "benchmark": "bus_outage",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cores": os.cpu_count(),
        "poll_up_s": POLL_UP, "poll_down_s": POLL_DOWN,
        "cases": {case: {"samples": len(d), "median_ms": statistics.median(d), "max_ms": max(d),
                         "min_ms": min(d), "poll_interval_ms": bounds[case], "delays_ms": d}
                  for case, d in delays.items()},
    }


def _table(result: dict[str, Any]) -> str:
    lines = ["| case | samples | median ms | max ms | polling interval ms |", "| --- | --- | --- | --- | --- |"]
    for case, r in result["cases"].items():
        bound = "—" if r["poll_interval_ms"] is None else f"{r['poll_interval_ms']:.0f}"
        lines.append(f"| {case} | {r['samples']} | {r['median_ms']:.0f} | {r['max_ms']:.0f} | {bound} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bus_outage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("ENCSPACES_TEST_PG", DEFAULT_DSN))
    parser.add_argument("--nats", default=os.environ.get("ENCSPACES_TEST_NATS", DEFAULT_NATS))
    parser.add_argument("--samples", type=int, default=12, help="samples per case (default 12: about 3 minutes)")
    parser.add_argument("--quick", action="store_true", help="3 samples per case")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    n = 3 if args.quick else args.samples
    try:
        result = asyncio.run(run(args.dsn, args.nats, dict.fromkeys(CASES, n)))
    except ImportError as exc:
        print(f"bench.bus_outage needs the cluster extra (pip install -e '.[cluster]'): {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bench.bus_outage: cannot reach PostgreSQL at {args.dsn}: {exc}", file=sys.stderr)
        return 1
    print(_table(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
