"""Where an encspaces edit's latency goes: one writer, one reader, edits at a human rate.

A diagnostic, not a comparison: the writer and the reader share this process (the relay runs
as its own), so one clock times every stage of each edit:

- batch: from the local edit until the SDK cuts the batch it is in into an entry
  (``SpaceOptions.batch_delay``, the window in which keystrokes are merged into one signed entry);
- outbox: from then (sign, encrypt, the outbox write that stores the entry, committed: the
  write-before-send rule) until the Submit message is made;
- relay: from then until the reader's session gets the Entries frame (the relay checks the
  signature, sequences, commits to SQLite with fsync, signs the head, fans out);
- verify: the reader's session checking that frame (head signature, chain, entry signature,
  decryption);
- apply: from verified until the edit is in the reader's document.

It wraps two SDK internals (``Space._flush_batch`` per instance and ``ClientSession._guarded``,
which handles each message, or run of queued frames verified as one, the session is given)
to take the timestamps; nothing else changes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import encspaces
from bench.clients import Arrivals, SpaceClient
from encspaces.core.session import ClientSession, Event
from encspaces_relay.process import RelayProcess


async def measure(
    edits: int, rate: float, workdir: Path, options: encspaces.SpaceOptions | None = None
) -> dict[str, float]:
    frames: list[tuple[float, float]] = []  # reader: (frame handed to the session, frame verified)
    submits: list[float] = []  # writer: Submit messages made (after the outbox write committed)
    original = ClientSession._guarded
    original_submit = ClientSession.submit
    reader_identity = encspaces.Identity.generate()

    def timed_receive(self: ClientSession, handle: Callable[[], list[Event]]) -> list[Event]:
        start = time.monotonic()
        events = original(self, handle)
        if self.identity is reader_identity:
            frames.append((start, time.monotonic()))
        return events

    def timed_submit(self: ClientSession, entries: list[bytes]) -> bytes:
        if self.identity is not reader_identity:
            submits.append(time.monotonic())
        return original_submit(self, entries)

    ClientSession._guarded = timed_receive  # type: ignore[method-assign]
    ClientSession.submit = timed_submit  # type: ignore[method-assign]
    try:
        async with RelayProcess(workdir / "relay", log_level="ERROR") as relay:
            writer = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=workdir / "w",
                                                  options=options)
            await writer.add_member(reader_identity.public)
            reader = SpaceClient(relay.url, reader_identity, writer.id, workdir / "r")
            await reader.open()
            arrivals = Arrivals(1, record_times=True)
            arrivals.watch(reader)
            flushes: list[float] = []
            flush = writer._flush_batch

            def timed_flush() -> None:
                if writer._updates:
                    flushes.append(time.monotonic())
                flush()

            writer._flush_batch = timed_flush  # type: ignore[method-assign]
            sends: list[float] = []
            text = writer.text("w0")
            start = time.monotonic() + 0.2
            for k in range(edits):
                await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
                sends.append(time.monotonic())
                text.insert(len(text), "x")
            while arrivals.counts[0] < edits:
                arrivals.progress.clear()
                await asyncio.wait_for(arrivals.progress.wait(), 10)
            await reader.close()
            await writer.close()
    finally:
        ClientSession._guarded = original  # type: ignore[method-assign]
        ClientSession.submit = original_submit  # type: ignore[method-assign]
    stages: dict[str, list[float]] = {"batch": [], "outbox": [], "relay": [], "verify": [], "apply": [],
                                      "total": []}
    for sent, applied in zip(sends, arrivals.times[0], strict=True):
        flushed = min((f for f in flushes if f >= sent), default=None)
        submitted = min((s for s in submits if s >= (flushed or sent)), default=None)
        frame = min((f for f in frames if f[0] >= (submitted or sent)), default=None)
        if flushed is None or submitted is None or frame is None or frame[1] > applied + 1e-3:
            continue
        stages["batch"].append(flushed - sent)
        stages["outbox"].append(submitted - flushed)
        stages["relay"].append(frame[0] - submitted)
        stages["verify"].append(frame[1] - frame[0])
        stages["apply"].append(max(0.0, applied - frame[1]))
        stages["total"].append(applied - sent)
    return {name: statistics.median(values) * 1000 for name, values in stages.items() if values}


DEFAULT_BATCH = encspaces.SpaceOptions().batch_delay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="edits per second (default 20)")
    parser.add_argument("--batch-ms", type=float, default=None,
                        help=f"override the SDK's batch window (default {DEFAULT_BATCH * 1000:g} ms)")
    args = parser.parse_args(argv)
    batch = DEFAULT_BATCH if args.batch_ms is None else args.batch_ms / 1000
    options = encspaces.SpaceOptions(batch_delay=batch)
    with tempfile.TemporaryDirectory(prefix="bench-proflat-") as tmp:
        result = asyncio.run(measure(args.edits, args.rate, Path(tmp), options))
    print(f"median ms per edit, batch window {options.batch_delay * 1000:g} ms:")
    for name, value in result.items():
        print(f"  {name:7s} {value:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
