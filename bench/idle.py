"""Idle connections: the server's memory per open, idle connection, at 1,000 connections.

Per contender and round: start the server, open 10 warm-up connections to one document (so
the document, the room and every lazily loaded module exist), read the server's RSS, open
``--connections`` more from a separate load-generator process, let everything settle, read
the RSS again. Memory per connection = (RSS after - RSS before) / connections. Every client
completes its protocol's handshake first (the Yjs sync handshake; for encspaces the SDK's
ClientSession: challenge, signed hello, welcome, verified catch-up, live subscription) and
then just stays open. The encspaces connections are devices of 10 members of one space; they
skip the SDK's on-device SQLite store, which only the client would pay for (opening 1,000
full Spaces in one process costs minutes of fsyncs and measures nothing about the relay).

The same file is the load generator: ``python -m bench.idle --worker SPEC``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import encspaces
from bench.clients import Client, SessionClient, YjsClient
from bench.common import (
    CONTENDERS,
    DEFAULT_CONTENDERS,
    cpu_mark,
    cpu_used,
    is_null,
    parse_contenders,
    ratio,
    record_round,
    rotated,
    rss_bytes,
    summarize,
    usable_contenders,
    write_result,
)
from bench.contenders import Server, start_server
from bench.loadgen import emit, read_command, stdin_reader
from bench.workload import READ_LIMIT, Worker

WARM = 10
MEMBERS = 10
CONCURRENCY = 25  # connections opened at once by a load generator
SETTLE = 2.0  # seconds to let the server settle before a memory reading (and to sample idle CPU)


# --- the load generator --------------------------------------------------------------------


async def hold(spec: dict[str, Any]) -> None:
    commands = await stdin_reader()
    clients: list[Client | SessionClient] = []
    n = spec["connections"]
    identities = [encspaces.Identity.load(m["key"]) for m in spec.get("members", [])]
    for k in range(n):
        if spec["contender"] == "encspaces":
            clients.append(SessionClient(spec["url"], identities[k % len(identities)], spec["space_id"]))
        else:
            clients.append(YjsClient(spec["url"], spec["room"], handshake=not is_null(spec["contender"])))
    started = time.monotonic()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def open_one(client: Client | SessionClient) -> None:
        async with gate:
            await client.open()

    # The first alone: pycrdt-websocket 0.16 leaves a client unserved when two connect at
    # once to a room that does not exist yet.
    await clients[0].open()
    await asyncio.gather(*(open_one(c) for c in clients[1:]))
    emit("READY", {"opened": n, "seconds": time.monotonic() - started})
    await read_command(commands, "STOP", 3600)
    await asyncio.gather(*(asyncio.wait_for(c.close(), 30) for c in clients), return_exceptions=True)


# --- the orchestrator ------------------------------------------------------------------------


async def prepare(server: Server, workdir: Path) -> dict[str, Any]:
    if server.name != "encspaces":
        return {"room": f"idle-{uuid.uuid4().hex[:12]}"}
    identities = [encspaces.Identity.generate() for _ in range(MEMBERS)]
    members = []
    for k, identity in enumerate(identities):
        key = workdir / "keys" / f"m{k}.key"
        identity.save(key)
        members.append({"key": str(key)})
    creator = await encspaces.create_space(server.url, identities[0], data_dir=workdir / "creator")
    try:
        for identity in identities[1:]:
            await creator.add_member(identity.public)
        space_id = creator.id
    finally:
        await creator.close()
    return {"space_id": space_id, "members": members}


async def start_worker(spec: dict[str, Any], name: str) -> Worker:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.idle", "--worker", json.dumps(spec),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=READ_LIMIT,
    )
    return Worker(name, proc)


async def run_once(contender: str, connections: int, workdir: Path, settle: float = SETTLE) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    async with start_server(contender, workdir) as server:
        base = {"contender": contender, "url": server.url, **await prepare(server, workdir)}
        workers: list[Worker] = []
        try:
            workers.append(await start_worker({**base, "connections": WARM, "devices": str(workdir / "warm")}, "warm"))
            await workers[0].expect("READY", 300)
            await asyncio.sleep(settle)
            before = rss_bytes(server.pid)
            workers.append(await start_worker(
                {**base, "connections": connections, "devices": str(workdir / "idle")}, "idle"))
            opened = json.loads(await workers[1].expect("READY", 900))
            await asyncio.sleep(settle)
            mark_a = cpu_mark([server.pid])
            await asyncio.sleep(settle)
            mark_b = cpu_mark([server.pid])
            after = rss_bytes(server.pid)
            for w in workers:
                await w.send("@@STOP")
            for w in workers:
                await asyncio.wait_for(w.proc.wait(), 120)
        finally:
            for w in workers:
                await w.stop()
    return {
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "kib_per_connection": (after - before) / connections / 1024,
        "open_seconds": opened["seconds"],
        "idle_cpu_cores": cpu_used(mark_a, mark_b, [server.pid]) / (mark_b.at - mark_a.at),
    }


async def run(contenders: list[str], connections: int, rounds: int, workdir: Path,
              settle: float = SETTLE) -> dict[str, Any]:
    usable, skipped = usable_contenders(contenders)
    per: dict[str, list[dict[str, Any]]] = {c: [] for c in usable}
    for r in range(rounds):
        for name in rotated(usable, r):
            where = workdir / f"{name}-{r}"
            try:
                measured = await asyncio.wait_for(run_once(name, connections, where, settle), 1500)
            except Exception as exc:
                measured = {"error": repr(exc)}
            finally:
                shutil.rmtree(where, ignore_errors=True)
            record_round(per, "idle", name, r, measured)
    table = summarize(per, usable)
    ours = next((row["median"] for row in table if row["contender"] == "encspaces"), None)
    ratios = [{"vs": row["contender"],
               "kib_per_connection": ratio(ours.get("kib_per_connection"), row["median"].get("kib_per_connection"))}
              for row in table if ours is not None and row["contender"] != "encspaces"]
    return {"connections": connections, "warm_connections": WARM, "rounds": rounds,
            "contenders": {c: CONTENDERS[c] for c in usable}, "skipped": skipped,
            "results": table, "ratios_encspaces_over": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000, help="idle connections (default 1000)")
    parser.add_argument("--contenders", default=DEFAULT_CONTENDERS,
                        help=f"comma-separated subset of {','.join(CONTENDERS)}")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--quick", action="store_true", help="50 connections, one round (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/idle.json)")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(hold(json.loads(args.worker)))
        return 0
    settle = SETTLE
    if args.quick:
        args.connections, args.rounds, settle = 50, 1, 0.3
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        payload = asyncio.run(run(parse_contenders(args.contenders), args.connections, args.rounds, Path(tmp),
                                  settle))
    path = write_result("idle", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
