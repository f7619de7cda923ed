"""B4 replay: one writer types a whole editing trace through the full stack, one reader follows.

Measures the time from the writer's first keystroke until the reader holds the trace's final
text (for encspaces: verified), for every contender, against replaying the same trace into a
bare pycrdt document in one process. Each server runs as its own process; the writer and the
reader share this process (as they did before the contenders were added), so every contender
pays the same client work and only the server and the protocol differ.

Yjs contenders: the writer sends one update message per pycrdt transaction, as y-websocket's
provider does, and the reader applies each one; a last edit to another text marks the end.
encspaces: the SDK batches keystrokes into signed, encrypted entries; the writer waits for its
edits to be in the verified log, the reader for the writer's last seq.

``client_cpu_s``: the CPU this process used from the first keystroke until the reader held
the text (bare pycrdt: the whole replay; the servers' own CPU is ``server_cpu_s``), and
``client_cpu_vs_bare`` its ratio to bare pycrdt's: less sensitive than wall time to other
jobs loading the machine.
"""

from __future__ import annotations

import asyncio
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
    median,
    ratio,
    rotated,
    usable_contenders,
)
from bench.contenders import start_server
from bench.trace_main import trace_main
from bench.traces import Trace
from encspaces_relay.process import RelayProcess

YIELD_EVERY = 64  # keystrokes between yields to the event loop, so sending overlaps typing
RUN_TIMEOUT = 900.0  # seconds one contender's replay may take before it counts as failed


def apply_patches(text: Any, txn: list[tuple[int, int, str]]) -> None:
    for pos, deleted, inserted in txn:
        if deleted:
            text.delete(pos, deleted)
        if inserted:
            text.insert(pos, inserted)


def apply_patches_pycrdt(text: pycrdt.Text, txn: list[tuple[int, int, str]]) -> None:
    """Patches in pycrdt's own unit, UTF-8 bytes (``Trace.utf8_txns``)."""
    for pos, deleted, inserted in txn:
        if deleted:
            del text[pos : pos + deleted]
        if inserted:
            text.insert(pos, inserted)


def bare_pycrdt_cpu(trace: Trace, limit: int) -> dict[str, float]:
    """The trace typed into a bare pycrdt document: wall and CPU time of the typing alone (the
    only work in this process meanwhile). The positions in UTF-8 bytes are worked out before
    (``Trace.utf8_txns``); until 2026-12-01 the CPU figure also held that conversion (~30 ms
    for a trace with non-ASCII characters), which flattered every contender's CPU ratio."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    text.insert(0, trace.start_content)
    txns = trace.utf8_txns(limit)
    start, cpu = time.perf_counter(), time.process_time()
    for txn in txns:
        apply_patches_pycrdt(text, txn)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    if limit >= len(trace.txns) and str(text) != trace.end_content:
        raise AssertionError("bare pycrdt's final text differs from the trace's endContent")
    return {"reader_done_s": elapsed, "client_cpu_s": used}


# The writer's batching while a log is built for a later cold open: a fixed 5 ms window and at
# most 256 transactions an entry, the SDK's defaults until 2026-12-01. The defaults since (a
# window that grows in a long burst, 2048 an entry) type the trace into ~200 entries instead of
# ~1,200; a new device handles every entry header before a snapshot's base, so the cold open
# would measure a smaller log, not a faster device. This keeps the log the figures were taken on.
COLD_OPEN_LOG_OPTIONS = encspaces.SpaceOptions(max_batch_delay=0.005, max_batch_count=256)


async def full_stack(trace: Trace, limit: int, workdir: Path, relay: RelayProcess | None = None,
                     keep: dict[str, Any] | None = None, snapshots: bool | None = None,
                     options: encspaces.SpaceOptions | None = None) -> dict[str, float]:
    """encspaces: the B4 figures. Starts its own relay unless given one; ``keep`` receives the
    space id and the reader's identity for a later cold open. ``snapshots``: None keeps the
    default policy, False turns snapshots off, True also writes one once the trace is in.
    ``options``: the writer's (default: the SDK's)."""
    if relay is None:
        async with RelayProcess(workdir / "relay") as own:
            return await full_stack(trace, limit, workdir, own, keep, snapshots, options)
    expected = trace.end_content if limit >= len(trace.txns) else None
    writer_id, reader_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    writer = await encspaces.create_space(relay.url, writer_id, data_dir=workdir / "w", options=options)
    if snapshots is False:
        await writer.set_policy(encspaces.Policy(snapshot_entries=None, snapshot_bytes=None))
    await writer.add_member(reader_id.public)
    reader = await encspaces.connect(relay.url, reader_id, writer.id, data_dir=workdir / "r")
    cpu_before = cpu_seconds(relay.pid)
    try:
        wt, rt = writer.text("t"), reader.text("t")
        if trace.start_content:  # not timed: the document the trace starts from
            wt.insert(0, trace.start_content)
            await writer.sync()
            await reader.wait_for_seq(writer.seq)
        start, cpu_start = time.perf_counter(), time.process_time()
        for i, txn in enumerate(trace.txns[:limit]):
            apply_patches(wt, txn)
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        typed = time.perf_counter() - start
        await writer.sync()
        synced = time.perf_counter() - start
        await reader.wait_for_seq(writer.seq)
        done, client_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if expected is not None and str(rt) != expected:
            raise AssertionError("the reader's final text differs from the trace's endContent")
        if str(rt) != str(wt):
            raise AssertionError("the reader's text differs from the writer's")
        if snapshots:
            await writer.write_snapshot()
            await reader.wait_for_seq(writer.seq)
        if keep is not None:
            keep.update(space_id=writer.id, reader=reader_id, text=str(rt))
        return {"typed_s": typed, "writer_synced_s": synced, "reader_done_s": done, "client_cpu_s": client_cpu,
                "entries": float(writer.seq), "server_cpu_s": cpu_seconds(relay.pid) - cpu_before}
    finally:
        await writer.close()
        await reader.close()


async def yjs_stack(contender: str, url: str, pid: int, trace: Trace, limit: int) -> dict[str, Any]:
    """A plaintext Yjs contender: same trace, one update message per transaction."""
    room = f"b4-{uuid.uuid4().hex[:12]}"
    writer = YjsClient(url, room, handshake=not is_null(contender))
    reader = YjsClient(url, room, handshake=not is_null(contender))
    await writer.open()
    await reader.open()
    finished = asyncio.Event()
    done_text = reader.observed_text("done")
    sub = done_text.observe(lambda _event: finished.set())
    cpu_before = cpu_seconds(pid)
    try:
        wt = writer.observed_text("t")
        if trace.start_content:  # not timed: the document the trace starts from
            wt.insert(0, trace.start_content)
            await writer.flush()
        # pycrdt counts UTF-8 bytes: positions converted before timing (identical for ASCII).
        txns = trace.utf8_txns(limit)
        start, cpu_start = time.perf_counter(), time.process_time()
        for i, txn in enumerate(txns):
            apply_patches_pycrdt(wt, txn)
            await writer.flush()
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        typed = time.perf_counter() - start
        writer.append("done", "x")
        await writer.flush()
        try:
            await asyncio.wait_for(finished.wait(), 60 + 5 * typed)
        except TimeoutError:
            return {"typed_s": typed, "messages": float(reader.received),
                    "error": f"the reader never received the last edit ({reader.received:,} messages arrived)"}
        done, client_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        final = reader.text_str("t")
        measured: dict[str, Any] = {"typed_s": typed, "reader_done_s": done, "messages": float(reader.received),
                                    "client_cpu_s": client_cpu, "server_cpu_s": cpu_seconds(pid) - cpu_before}
        if final != writer.text_str("t") or (limit >= len(trace.txns) and final != trace.end_content):
            # Reported, not raised: a server that loses updates is a result of this benchmark.
            measured["error"] = (f"the reader never held the final text: it received {reader.received:,} "
                                 f"messages for {limit:,} transactions and holds {len(final):,} of "
                                 f"{len(writer.text_str('t')):,} characters (the server dropped updates)")
            del measured["reader_done_s"]
        return measured
    finally:
        done_text.unobserve(sub)
        await writer.close()
        await reader.close()


async def run_contender(name: str, trace: Trace, limit: int, workdir: Path) -> dict[str, Any]:
    if name == "bare":
        return bare_pycrdt_cpu(trace, limit)
    async with start_server(name, workdir) as server:
        if name == "encspaces":
            assert server.relay is not None
            return await full_stack(trace, limit, workdir, server.relay)
        return await yjs_stack(name, server.url, server.pid, trace, limit)


async def run(trace: Trace, limit: int, contenders: list[str], rounds: int, workdir: Path) -> dict[str, Any]:
    usable, skipped = usable_contenders(contenders)
    order = ["bare", *usable]
    per: dict[str, list[dict[str, Any]]] = {c: [] for c in order}
    for r in range(rounds):
        for name in rotated(order, r):
            started = time.monotonic()
            try:
                measured = await asyncio.wait_for(run_contender(name, trace, limit, workdir / f"{name}-{r}"),
                                                  RUN_TIMEOUT)
            except Exception as exc:
                print(f"  replay {name} round {r + 1}: FAILED {exc!r}", file=sys.stderr)
                measured = {"error": repr(exc)}
            per[name].append(measured)
            shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in measured.items()}
            print(f"  replay {name} round {r + 1}: {shown} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    medians: dict[str, dict[str, float | None]] = {}
    for name, runs in per.items():
        ok = [m for m in runs if "error" not in m]
        keys = sorted({k for m in ok for k, v in m.items() if isinstance(v, float)})
        medians[name] = {k: median(m[k] for m in ok if k in m) for k in keys}
    ours = medians.get("encspaces", {})
    bare = medians["bare"].get("reader_done_s")
    table = [{"contender": name, "rounds": per[name], "median": medians[name],
              "errors": sorted({m["error"] for m in per[name] if "error" in m}),
              "ratio_vs_bare": ratio(medians[name].get("reader_done_s"), bare),
              "client_cpu_vs_bare": ratio(medians[name].get("client_cpu_s"), medians["bare"].get("client_cpu_s"))}
             for name in order]
    ratios = [{"vs": name, "reader_done_s": ratio(ours.get("reader_done_s"), medians[name].get("reader_done_s"))}
              for name in order if name != "encspaces" and "encspaces" in usable]
    labels = {"bare": "bare pycrdt document, one process (no network)", **CONTENDERS}
    return {
        "trace": trace.name, "transactions": limit, "rounds": rounds,
        "contenders": {name: labels[name] for name in order}, "skipped": skipped,
        # The figures this benchmark reported before it had contenders (medians):
        "bare_pycrdt_s": bare,
        **{k: ours.get(k) for k in ("typed_s", "writer_synced_s", "reader_done_s", "entries")},
        "ratio_reader_done_vs_bare": ratio(ours.get("reader_done_s"), bare),
        "results": table, "ratios_encspaces_over": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    return trace_main(argv, name="replay", doc=__doc__, rounds=2, run=run, contenders_note=' (bare pycrdt always runs)')


if __name__ == "__main__":
    sys.exit(main())
