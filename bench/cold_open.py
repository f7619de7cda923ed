"""Cold open: a new device opens the B4 document (the automerge-paper trace, typed) from the server.

The document is built once per contender, then every round opens it on a brand-new device
(empty local state) and times connect -> the final text is in the device's document:

- encspaces: the trace is typed through the full stack first (as in bench.replay, the writer
  batching as ``bench.replay.COLD_OPEN_LOG_OPTIONS`` says: ~1,200 entries), so the relay holds
  the real log of signed, encrypted entries, twice: in a space with snapshots
  turned off (``encspaces-log``: a new device of the reader fetches the full log and
  verifies and decrypts every entry before ``connect`` returns) and in a space with the
  default policy plus a snapshot written once the trace is in (``encspaces``: the new device
  asks for a fast join, gets the log with the bodies the snapshot covers stripped, verifies
  every header and signature and loads the snapshot's state).
- Yjs servers: the same trace is typed into a pycrdt document and its state sent to the
  server as one update; the new device then does the Yjs sync handshake (its state vector in,
  the whole document as one update out).
- The null relay holds no document, so it has nothing to open: it is not part of this one.

Before every open the harness collects its own garbage (``gc.collect``): the typed trace and the
builds leave a large heap in this process, and a full collection of it (60–90 ms here) fell
into whichever open came first, of either contender (bench/README.md, h15-v4-cost). A new
device's process has no such heap; what an open allocates itself is still collected during it.

Besides the wall time, ``device_cpu_s`` is the CPU the opening process used meanwhile (all its
threads: for encspaces also the store writes running in the background), a figure that moves
less than wall time when other jobs load the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pycrdt

import encspaces
from bench.clients import YjsClient
from bench.common import (
    CONTENDERS,
    cpu_seconds,
    is_null,
    ratio,
    record_round,
    rotated,
    summarize,
    usable_contenders,
)
from bench.contenders import Server, start_server
from bench.replay import COLD_OPEN_LOG_OPTIONS, apply_patches_pycrdt, full_stack
from bench.trace_main import trace_main
from bench.traces import Trace

OPEN_TIMEOUT = 300.0  # seconds one open may take before it counts as failed


def typed_state(trace: Trace, limit: int) -> tuple[bytes, str]:
    """The trace typed into a pycrdt document: its full state as one update, and its text."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    text.insert(0, trace.start_content)
    for txn in trace.utf8_txns(limit):
        apply_patches_pycrdt(text, txn)
    return doc.get_update(), str(text)


async def seed_yjs(server: Server, state: bytes, expected: str) -> str:
    room = f"cold-{uuid.uuid4().hex[:12]}"
    seeder = YjsClient(server.url, room, handshake=True)
    await seeder.open()
    seeder.doc.apply_update(state)  # a local transaction: sent as one update message
    await seeder.flush()
    try:
        deadline = time.monotonic() + 60
        while True:  # until a fresh client sees the whole document
            probe = YjsClient(server.url, room, handshake=True)
            await probe.open()
            ok = probe.text_str("t") == expected
            await probe.close()
            if ok:
                return room
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} never held the seeded document")
            await asyncio.sleep(0.1)
    finally:
        await seeder.close()


async def open_yjs(server: Server, room: str, expected: str) -> dict[str, Any]:
    cpu = cpu_seconds(server.pid)
    start, device_cpu = time.perf_counter(), time.process_time()
    client = YjsClient(server.url, room, handshake=True)
    await client.open()
    text = client.text_str("t")
    elapsed, device_used = time.perf_counter() - start, time.process_time() - device_cpu
    used = cpu_seconds(server.pid) - cpu
    await client.close()
    if text != expected:
        return {"error": "the new device's text differs from the document"}
    return {"open_s": elapsed, "server_cpu_s": used, "device_cpu_s": device_used}


async def open_encspaces(server: Server, kept: dict[str, Any], device_dir: Path) -> dict[str, Any]:
    cpu = cpu_seconds(server.pid)
    start, device_cpu = time.perf_counter(), time.process_time()
    space = await encspaces.connect(server.url, kept["reader"], kept["space_id"], data_dir=device_dir)
    try:
        text = str(space.text("t"))
        elapsed, device_used = time.perf_counter() - start, time.process_time() - device_cpu
        used = cpu_seconds(server.pid) - cpu
        entries = space.seq
    finally:
        await space.close()
    if text != kept["text"]:
        return {"error": "the new device's text differs from the document"}
    return {"open_s": elapsed, "server_cpu_s": used, "device_cpu_s": device_used, "entries": float(entries)}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def run(trace: Trace, limit: int, contenders: list[str], rounds: int, workdir: Path) -> dict[str, Any]:
    usable, skipped = usable_contenders(contenders)
    for name in [c for c in usable if is_null(c)]:
        usable.remove(name)
        skipped[name] = "a null relay holds no document, so there is nothing to open"
    state, expected = typed_state(trace, limit)
    if "encspaces" in usable:
        usable.insert(usable.index("encspaces"), "encspaces-log")
    per: dict[str, list[dict[str, Any]]] = {c: [] for c in usable}
    facts: dict[str, Any] = {"document_state_bytes": len(state), "characters": len(expected)}
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, Server] = {}
        targets: dict[str, Any] = {}
        for name in usable:  # every server up (and idle) while the others are measured
            servers[name] = await stack.enter_async_context(
                start_server("encspaces" if name.startswith("encspaces") else name, workdir / name))
            if name.startswith("encspaces"):
                kept: dict[str, Any] = {}
                relay = servers[name].relay
                assert relay is not None
                snapshot = name == "encspaces"
                built = await full_stack(trace, limit, workdir / f"build-{name}", relay, kept, snapshots=snapshot,
                                         options=COLD_OPEN_LOG_OPTIONS)
                if kept["text"] != expected:
                    raise AssertionError("encspaces' document differs from the bare pycrdt one")
                targets[name] = kept
                facts[f"{name}_entries"] = built["entries"]
                facts[f"{name}_relay_store_bytes"] = folder_bytes(relay.data_dir)
            else:
                targets[name] = await asyncio.wait_for(seed_yjs(servers[name], state, expected), 180)
        for r in range(rounds):
            for name in rotated(usable, r):
                server = servers[name]
                gc.collect()  # the harness's garbage, not the open's (module docstring)
                try:
                    if name.startswith("encspaces"):
                        opening = open_encspaces(server, targets[name], workdir / f"device-{r}")
                    else:
                        opening = open_yjs(server, targets[name], expected)
                    measured = await asyncio.wait_for(opening, OPEN_TIMEOUT)
                except Exception as exc:
                    measured = {"error": repr(exc)}
                record_round(per, "cold open", name, r, measured)
    table = summarize(per, usable)
    ours = next((row["median"] for row in table if row["contender"] == "encspaces"), None)
    log_row = next((row["median"] for row in table if row["contender"] == "encspaces-log"), None)
    ratios = [{"vs": row["contender"], "open_s": ratio(ours.get("open_s"), row["median"].get("open_s")),
               "log_open_s": ratio(log_row.get("open_s") if log_row else None, row["median"].get("open_s")),
               "device_cpu_s": ratio(ours.get("device_cpu_s"), row["median"].get("device_cpu_s"))}
              for row in table if ours is not None and not row["contender"].startswith("encspaces")]
    labels = {**CONTENDERS, "encspaces-log": "encspaces, snapshots off: the full log",
              "encspaces": "encspaces, from the newest snapshot"}
    return {"trace": trace.name, "transactions": limit, "rounds": rounds,
            "contenders": {c: labels[c] for c in usable}, "skipped": skipped, "document": facts,
            "results": table, "ratios_encspaces_over": ratios}


def main(argv: list[str] | None = None) -> int:
    return trace_main(argv, name="cold_open", doc=__doc__, rounds=5, run=run)


if __name__ == "__main__":
    sys.exit(main())
