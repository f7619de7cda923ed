"""What a device that fell behind pays to catch up on the frames queued on its socket (issue 12).

A reader Space's event loop is blocked (a blocking wait, as a device whose loop is busy
elsewhere) while a writer in another process writes ``--edits`` edits, each synced before the
next, so each is its own entry in its own Entries frame. Then the reader's loop runs again
and verifies what piled up on its socket. Measured in this process from then until the
reader holds every entry: CPU (all threads, and the event loop's thread alone) per entry,
the wall time, and how many frames ``LogVerifier.verify_frame`` was given (queued frames
verified as one batch: docs/PROTOCOL.md, "Frames queued together").
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import encspaces
from bench.common import print_result
from encspaces.core.verifier import LogVerifier
from encspaces_relay.process import RelayProcess


async def write(url: str, space_id: str, key: Path, data_dir: Path, edits: int) -> int:
    """The writer (its own process): ``edits`` edits, each synced; the seq of the last."""
    space = await encspaces.connect(url, encspaces.Identity.load(key), space_id, data_dir=data_dir)
    text = space.text("doc")
    for _ in range(edits):
        text.insert(len(text), "x")
        await space.sync(60)
    seq = space.seq
    await space.close()
    return seq


async def measure(edits: int, workdir: Path) -> dict[str, Any]:
    frames = 0
    original = LogVerifier.verify_frame

    def counted(self: LogVerifier, frame: Any) -> Any:
        nonlocal frames
        frames += 1
        return original(self, frame)

    async with RelayProcess(workdir / "relay", log_level="ERROR") as relay:
        writer_id, reader_id = encspaces.Identity.generate(), encspaces.Identity.generate()
        writer = await encspaces.create_space(relay.url, writer_id, data_dir=workdir / "w")
        await writer.add_member(reader_id.public)
        space_id = writer.id
        await writer.close()
        writer_id.save(workdir / "w.key")
        reader = await encspaces.connect(relay.url, reader_id, space_id, data_dir=workdir / "r")
        # Blocks this event loop while the writer writes: the reader falls behind.
        done = subprocess.run(
            [sys.executable, "-m", "bench.lagging_reader", "--write", relay.url, space_id,
             str(workdir / "w.key"), str(workdir / "w"), "--edits", str(edits)],
            check=True, capture_output=True, text=True)
        target = int(done.stdout.split()[-1])
        LogVerifier.verify_frame = counted  # type: ignore[method-assign]
        try:
            cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
            await reader.wait_for_seq(target, 120)
            cpu, loop_cpu, wall = (time.process_time() - cpu, time.thread_time() - loop_cpu,
                                   time.perf_counter() - wall)
        finally:
            LogVerifier.verify_frame = original  # type: ignore[method-assign]
        await reader.close()
    return {
        "edits": edits, "frames_verified": frames, "cpu_s": cpu, "loop_cpu_s": loop_cpu, "wall_s": wall,
        "cpu_us_per_entry": cpu / edits * 1e6, "loop_cpu_us_per_entry": loop_cpu / edits * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lagging_reader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=200, help="edits written while the reader lags (default 200)")
    parser.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    parser.add_argument("--write", nargs=4, metavar=("URL", "SPACE", "KEY", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write:
        url, space_id, key, data_dir = args.write
        print(asyncio.run(write(url, space_id, Path(key), Path(data_dir), args.edits)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-lag-") as tmp:
        result = asyncio.run(measure(args.edits, Path(tmp)))
    print_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
