"""What a device spends per received entry: the load generators' side of the 10×10 latency run.

At 10×10 (``bench.latency``) the relay is nearly idle and the clients are saturated: 200
entries/s reach 20 Spaces, so what one Space spends on a received entry (head and author
signatures, decryption, apply, the store write) sets the latency. Wall-clock latency on the
shared machine swings with whatever else runs; this measures CPU instead, and paces the
writers slowly enough that the process is not saturated (each edit stays its own entry and
frame, as at 10×10).

Like the 10×10 load generator: ``--writers`` writers and ``--readers`` readers, every one a
full Space with its own store, all in this process; the relay in its own. Each writer types
``--edits`` edits at ``--rate`` a second (staggered). The CPU of this process (every thread:
the stores' threads too) from the first edit until every Space has verified every entry,
divided by the (entry, Space) pairs: each entry reaches every Space, its own writer's too;
and the CPU of the event loop's thread alone (``loop_cpu_us_per_pair``), which every Space of
the process shares: when it is busy, frames queue, whatever the other threads do.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import websockets.asyncio.connection

import encspaces
import encspaces.core.crypto
import encspaces.core.session
from bench.common import print_result
from encspaces.core.session import ClientSession
from encspaces.core.verifier import LogVerifier
from encspaces.document import Document
from encspaces.space import Space
from encspaces_relay.process import RelayProcess

# --breakdown: (label, owner, method) timed with the event loop thread's CPU clock.
STAGES: list[tuple[str, Any, str]] = [
    # Each message, or run of queued frames verified as one, the SDK hands the session (the frames'
    # msgpack decoding, in ``session.batched``, is its own stage below).
    ("receive: handle, verify (ClientSession._guarded)", ClientSession, "_guarded"),
    ("  of which verify_frame", LogVerifier, "verify_frame"),
    ("  of which Ed25519 verifications", encspaces.core.crypto, "verify"),
    # What the null relay's client also pays per message (websockets' frame parsing and its
    # assembler, as the socket's data arrives), and the msgpack decoding of each message.
    ("websockets: parse what arrives (Connection.data_received)", websockets.asyncio.connection.Connection,
     "data_received"),
    ("decode each message (session.decode_message)", encspaces.core.session, "decode_message"),
    ("apply (Space._apply_verified)", Space, "_apply_verified"),
    ("  of which Document.apply_remote", Document, "apply_remote"),
    ("local edits: sign, encrypt (Space._flush_batch)", Space, "_flush_batch"),
]


@contextmanager
def timed_stages(stages: list[tuple[str, Any, str]] | None = None,
                 ) -> Iterator[tuple[dict[str, float], collections.Counter[str]]]:
    """Add each stage's thread CPU, and its calls, to counters while inside (the SDK's functions
    wrapped); ``stages``: (label, owner, function name), by default this benchmark's ``STAGES``."""
    stages = STAGES if stages is None else stages
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    saved = [(owner, name, getattr(owner, name)) for _, owner, name in stages]

    def timed(label: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            calls[label] += 1
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.thread_time() - start
        return call

    for (label, _, _), (owner, name, original) in zip(stages, saved, strict=True):
        setattr(owner, name, timed(label, original))
    try:
        yield spent, calls
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


async def measure(writers: int, readers: int, edits: int, rate: float, workdir: Path) -> dict[str, Any]:
    async with RelayProcess(workdir / "relay", log_level="ERROR") as relay:
        identities = [encspaces.Identity.generate() for _ in range(writers + readers)]
        first = await encspaces.create_space(relay.url, identities[0], data_dir=workdir / "d0")
        for identity in identities[1:]:
            await first.add_member(identity.public)
        spaces = [first]
        for n, identity in enumerate(identities[1:], 1):
            spaces.append(await encspaces.connect(relay.url, identity, first.id, data_dir=workdir / f"d{n}"))
        start_seq = first.seq
        for space in spaces:
            await space.wait_for_seq(start_seq, 30)
        texts = [space.text(f"w{n}") for n, space in enumerate(spaces[:writers])]
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        begin = time.monotonic() + 0.05

        async def type_into(n: int) -> None:
            for k in range(edits):
                await asyncio.sleep(max(0.0, begin + (k + n / writers) / rate - time.monotonic()))
                texts[n].insert(len(texts[n]), "x")

        await asyncio.gather(*(type_into(n) for n in range(writers)))
        for space in spaces[:writers]:
            await space.sync(60)  # every edit is in an entry the relay sequenced
        target = max(space.seq for space in spaces)
        for space in spaces:
            await space.wait_for_seq(target, 60)
        cpu, loop_cpu, wall = time.process_time() - cpu, time.thread_time() - loop_cpu, time.perf_counter() - wall
        for space in spaces:
            await space.close()
    entries = target - start_seq
    pairs = entries * len(spaces)
    return {
        "writers": writers, "readers": readers, "edits": writers * edits, "entries": entries,
        "pairs": pairs, "cpu_s": cpu, "loop_cpu_s": loop_cpu, "wall_s": wall,
        "cpu_us_per_pair": cpu / pairs * 1e6, "loop_cpu_us_per_pair": loop_cpu / pairs * 1e6,
        "cpu_us_per_edit": cpu / (writers * edits) * 1e6,
    }


def _callback_name(handle: asyncio.Handle) -> str:
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):  # a task's step: name it by its coroutine
        return "task " + getattr(owner.get_coro(), "__qualname__", "?")
    return str(getattr(callback, "__qualname__", type(callback).__name__))


@contextmanager
def timed_callbacks() -> Iterator[tuple[dict[str, float], collections.Counter[str]]]:
    """Add the thread CPU of every callback the event loop runs, by name (a task's step by its
    coroutine), to counters while inside: where the loop's time goes outside the stages."""
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    original = asyncio.Handle._run

    def run(handle: asyncio.Handle) -> None:
        start = time.thread_time()
        try:
            original(handle)
        finally:
            name = _callback_name(handle)
            spent[name] += time.thread_time() - start
            calls[name] += 1

    asyncio.Handle._run = run  # type: ignore[method-assign,assignment]
    try:
        yield spent, calls
    finally:
        asyncio.Handle._run = original  # type: ignore[method-assign]


def _by_callback(spent: dict[str, float], calls: collections.Counter[str], pairs: int) -> dict[str, Any]:
    top = sorted(spent, key=lambda name: -spent[name])[:15]
    return {"callbacks_us_per_pair": {name: spent[name] / pairs * 1e6 for name in top},
            "callbacks_calls_per_pair": {name: calls[name] / pairs for name in top}}


def callbacks(writers: int, readers: int, edits: int, rate: float, workdir: Path) -> dict[str, Any]:
    """``measure`` with the event loop's CPU per pair by callback (compare their sum with
    ``loop_cpu_us_per_pair``: the rest is the loop's own, selecting and scheduling)."""
    with timed_callbacks() as (spent, calls):
        result = asyncio.run(measure(writers, readers, edits, rate, workdir))
    return {**result, **_by_callback(spent, calls, result["pairs"])}


def breakdown(writers: int, readers: int, edits: int, rate: float, workdir: Path,
              by_callback: bool = False) -> dict[str, Any]:
    """``measure`` with the main stages' event-loop CPU per pair (the wrappers add a little);
    ``by_callback``: also by callback, in the same run (which stage runs in which callback)."""
    with ExitStack() as stack:
        spent, calls = stack.enter_context(timed_stages())
        per_callback = stack.enter_context(timed_callbacks()) if by_callback else None
        result = asyncio.run(measure(writers, readers, edits, rate, workdir))
    pairs = result["pairs"]
    # How many times each stage ran per pair: frames verified (fewer than one per pair where
    # frames carry several entries or queued frames are verified as one), Ed25519 checks.
    result["calls_per_pair"] = {label.strip(): calls[label] / pairs for label, _, _ in STAGES}
    stages = {label: spent[label] / pairs * 1e6 for label, _, _ in STAGES}
    top = [label for label, _, _ in STAGES if not label.startswith(" ")]
    stages["the rest of the event loop (asyncio, the store's calls and writer task, sends)"] = (
        result["loop_cpu_s"] / pairs * 1e6 - sum(stages[label] for label in top))
    stages["other threads (the stores' SQLite work)"] = (result["cpu_s"] - result["loop_cpu_s"]) / pairs * 1e6
    if per_callback is not None:
        result.update(_by_callback(*per_callback, pairs))
    return {**result, "us_per_pair": stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receive_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--readers", type=int, default=1)
    parser.add_argument("--edits", type=int, default=40, help="edits per writer (default 40)")
    parser.add_argument("--rate", type=float, default=5.0, help="edits per second per writer (default 5)")
    parser.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the main stages on the event loop's thread (CPU per pair)")
    parser.add_argument("--callbacks", action="store_true",
                        help="the event loop's CPU per pair by callback (a task's steps by coroutine); "
                             "with --breakdown, in the same run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-recv-") as tmp:
        if args.breakdown:
            result = breakdown(args.writers, args.readers, args.edits, args.rate, Path(tmp), args.callbacks)
        elif args.callbacks:
            result = callbacks(args.writers, args.readers, args.edits, args.rate, Path(tmp))
        else:
            result = asyncio.run(measure(args.writers, args.readers, args.edits, args.rate, Path(tmp)))
    if args.callbacks:
        for name, value in result["callbacks_us_per_pair"].items():
            print(f"{value:8.1f} µs  {result['callbacks_calls_per_pair'][name]:6.3f} calls per pair  {name}")
    if args.breakdown:
        for label, value in result["us_per_pair"].items():
            print(f"{value:8.1f} µs  {label}")
        for label, value in result["calls_per_pair"].items():
            print(f"{value:8.3f} calls per pair  {label}")
    print_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
