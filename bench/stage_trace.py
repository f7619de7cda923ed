"""Where each edit's time goes under load: timestamps at every stage, in every process.

A diagnostic for ``bench.latency`` (issue 12), not a benchmark. With ``BENCH_STAGE_TRACE=<dir>``
set and ``bench/stage_trace_site`` first on ``PYTHONPATH``, every Python process of the run (the
relay and each load generator) wraps a few SDK and relay methods at start-up and writes one line
per event to ``<dir>/<pid>.tsv``: ``tag  device  author  author_seq  t`` (``t`` is
CLOCK_MONOTONIC, which all processes share; ``device`` is the first bytes of the receiving or
sending device's key, ``-`` in the relay). Nothing else changes; the wrappers cost a few µs a
call. ``python -m bench.stage_trace <dir>`` then chains the events per (entry, device)::

    BENCH_STAGE_TRACE=/tmp/tr PYTHONPATH=bench/stage_trace_site:. \\
        python -m bench.latency --shapes 10x10 --contenders encspaces --rounds 1
    python -m bench.stage_trace /tmp/tr            # over (entry, reader) pairs, as bench.latency
    python -m bench.stage_trace /tmp/tr --writers  # over (entry, writer) pairs

Stages (each starts where the one above ended):

- writer ``edit`` (the load generator's ``append``) → ``built`` (the batch cut, the entry
  signed and encrypted: ``Space._queue_entry`` returned) → ``submit`` (the Submit made:
  ``ClientSession.submit``). Beside it, not in the chain, since a data entry is sent without
  waiting for its outbox write (bench/README.md, "Edits ahead of their write"): ``built`` →
  ``write`` (the store writer task hands the outbox row to the store: ``LocalStore.write``
  called) → ``txn_start`` / ``txn_end`` (the transaction on the store's thread, committed with
  fsync) → ``committed`` (its answer ran on the loop: ``then``), each step over the entries
  that have it;
- relay ``recv`` (the Submit decoded, its signatures about to be checked: ``_check_slice``)
  → ``queued`` (checked, handed to the room) → ``commit`` (the group commit took it:
  ``Store.append`` called) → ``durable`` (``Store.append`` returned: fsynced) → ``sent`` (the
  frame written to every subscriber: ``Room._fan_out`` returned);
- reader ``recv`` (its loop got the message: ``ClientSession.receive_all`` called; the
  wait since ``sent`` is the reader's process queue) → ``verified`` (``on_verified`` called)
  → ``applied`` (``on_verified`` returned: the edit is in the document).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ENV = "BENCH_STAGE_TRACE"


class _Sink:
    def __init__(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / f"{os.getpid()}.tsv"
        self.lines: list[str] = []
        atexit.register(self.flush)
        import signal

        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            self.flush()
            if callable(previous):
                previous(signum, frame)
            else:
                raise SystemExit(0)

        with contextlib.suppress(ValueError):  # not the main thread: atexit only
            signal.signal(signal.SIGTERM, on_term)

    def add(self, tag: str, device: str, keys: Iterable[tuple[bytes, int]], t: float) -> None:
        for author, author_seq in keys:
            self.lines.append(f"{tag}\t{device}\t{author[:6].hex()}\t{author_seq}\t{t:.6f}\n")
        if len(self.lines) > 20000:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            with self.path.open("a") as out:
                out.writelines(self.lines)
            self.lines = []


def install() -> None:
    """Wrap the methods named in the module docstring (called by ``stage_trace_site``)."""
    directory = os.environ.get(ENV)
    if not directory:
        return
    sink = _Sink(directory)
    now = time.monotonic

    def wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        setattr(owner, name, make(getattr(owner, name)))

    # --- the SDK (load generators) ---
    from encspaces.core.entry import Entry
    from encspaces.core.session import ClientSession
    from encspaces.space import Space, _Host

    raw_keys: dict[bytes, tuple[bytes, int]] = {}
    writing: list[tuple[bytes, int]] = []

    def dev_of_space(space: Any) -> str:
        return bytes(space.identity.public.sign_key[:4]).hex() if hasattr(space, "identity") else "?"

    def queue_entry(orig: Callable[..., Entry]) -> Callable[..., Entry]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Entry:
            entry = orig(self, *args, **kwargs)
            key = (entry.header.author, entry.header.author_seq)
            raw_keys[entry.raw] = key
            sink.add("w_built", entry.header.author[:4].hex(), [key], now())
            return entry
        return wrapper

    def submit(orig: Callable[..., bytes]) -> Callable[..., bytes]:
        def wrapper(self: ClientSession, entries: list[bytes]) -> bytes:
            keys = [raw_keys.pop(raw) for raw in entries if raw in raw_keys]
            sink.add("w_submit", "-", keys, now())
            return orig(self, entries)
        return wrapper

    last_recv: dict[int, float] = {}

    def receive_all(orig: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: ClientSession, messages: list[bytes], now_ms: int) -> Any:
            # the Connection for this session's verifier: the latest batch it started on
            last_recv[id(self.verifier)] = now()
            return orig(self, messages, now_ms)
        return wrapper

    def on_verified(orig: Callable[..., None]) -> Callable[..., None]:
        def wrapper(self: Any, entries: list[Any]) -> None:
            t0 = now()
            space = self._space
            device = dev_of_space(space)
            keys = [(e.entry.header.author, e.entry.header.author_seq) for e in entries]
            t_recv = last_recv.get(id(space._verifier))
            if t_recv is not None:
                sink.add("r_recv", device, keys, t_recv)
            sink.add("r_verified", device, keys, t0)
            orig(self, entries)
            sink.add("r_applied", device, keys, now())
        return wrapper

    # The device store's thread hop: how long a transaction ran on the store's thread (``x_txn``,
    # ``x_txn_full`` when fsynced: the outbox) and how long its answer then waited for the event
    # loop (``x_hop``), in µs, per call.
    from encspaces.store import _Worker

    def worker_run(orig: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, function: Callable[[], Any], then: Callable[[], None] | None = None) -> Any:
            done: list[float] = []

            args = getattr(function, "args", ())
            tag = "x_txn_full" if args[:1] == ("FULL",) else "x_txn"  # LocalStore._transaction's mode
            keys = list(writing)  # the outbox entries of the LocalStore.write calling this, if any

            def timed() -> Any:
                t0 = now()
                try:
                    return function()
                finally:
                    done.append(now())
                    sink.add(tag, "-", [(b"", int(1e6 * (done[0] - t0)))], t0)
                    if keys:
                        sink.add("w_txn_start", "-", keys, t0)
                        sink.add("w_txn_end", "-", keys, done[0])

            def timed_then() -> None:
                t = now()
                if done:
                    sink.add("x_hop", "-", [(b"", int(1e6 * (t - done[0])))], t)
                if then is not None:
                    then()

            return orig(self, timed, timed_then)
        return wrapper

    wrap(_Worker, "run", worker_run)

    from encspaces.store import LocalStore

    def store_write(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(self: Any, **kwargs: Any) -> Any:
            outbox = list(kwargs.get("outbox_add", ()))
            if outbox:
                kwargs["outbox_add"] = outbox
                keys = [raw_keys[raw] for _, raw in outbox if raw in raw_keys]
                sink.add("w_write", "-", keys, now())
                t_then: list[float] = []
                then = kwargs.get("then")

                def timed_then() -> None:
                    t_then.append(now())
                    if then is not None:
                        then()

                kwargs["then"] = timed_then
                writing[:] = keys  # read by the worker's run, called before the first await that waits
                try:
                    await orig(self, **kwargs)
                finally:
                    writing.clear()
                sink.add("w_committed", "-", keys, t_then[0] if t_then else now())
                return None
            return await orig(self, **kwargs)
        return wrapper

    wrap(LocalStore, "write", store_write)
    wrap(Space, "_queue_entry", queue_entry)
    wrap(ClientSession, "submit", submit)
    wrap(ClientSession, "receive_all", receive_all)
    wrap(_Host, "on_verified", on_verified)

    try:  # the load generator's edits
        from bench.clients import SpaceClient

        def append(orig: Callable[..., None]) -> Callable[..., None]:
            def wrapper(self: Any, name: str, s: str) -> None:
                sink.add("w_edit", bytes(self.identity.public.sign_key[:4]).hex(),
                         [(bytes(self.identity.public.sign_key), 0)], now())
                orig(self, name, s)
            return wrapper

        wrap(SpaceClient, "append", append)
    except ImportError:
        pass

    # --- the relay ---
    try:
        from encspaces_relay.room import Room
        from encspaces_relay.session import Session as RelaySession
        from encspaces_relay.store import Store
    except ImportError:
        return

    def check_slice(orig: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, raws: list[bytes]) -> list[Entry]:
            t0 = now()
            entries: list[Entry] = orig(self, raws)
            keys = [(e.header.author, e.header.author_seq) for e in entries]
            sink.add("s_recv", "-", keys, t0)
            sink.add("s_queued", "-", keys, now())
            return entries
        return wrapper

    current: list[tuple[bytes, int]] = []

    def append_rows(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(self: Any, space: bytes, rows: list[Any], *args: Any, **kwargs: Any) -> Any:
            keys = [(row.author, row.author_seq) for row in rows]
            sink.add("s_commit", "-", keys, now())
            result = await orig(self, space, rows, *args, **kwargs)
            sink.add("s_durable", "-", keys, now())
            current[:] = keys
            return result
        return wrapper

    def fan_out(orig: Callable[..., None]) -> Callable[..., None]:
        def wrapper(self: Any, frame: bytes, held: Any = None) -> None:
            orig(self, frame, held)
            sink.add("s_sent", "-", current, now())
        return wrapper

    wrap(RelaySession, "_check_slice", check_slice)
    wrap(Store, "append", append_rows)
    wrap(Room, "_fan_out", fan_out)


# --- analysis ------------------------------------------------------------------------------

WRITER = ["w_edit", "w_built", "w_submit"]
OUTBOX = ["w_built", "w_write", "w_txn_start", "w_txn_end", "w_committed"]  # beside the chain
RELAY = ["s_recv", "s_queued", "s_commit", "s_durable", "s_sent"]
READER = ["r_recv", "r_verified", "r_applied"]


def load(directory: Path) -> list[tuple[str, str, str, int, float]]:
    rows = []
    for path in directory.glob("*.tsv"):
        for line in path.read_text().splitlines():
            tag, device, author, seq, t = line.split("\t")
            rows.append((tag, device, author, int(seq), float(t)))
    return rows


def analyse(directory: Path, with_writers: bool = False) -> dict[str, Any]:
    """Each step's p50 / mean / p90 / p99 in ms over the (entry, reader) pairs, as ``bench.latency``
    counts them; ``with_writers``: over the (entry, writer) pairs instead (writers receive every
    entry too, their own included)."""
    rows = load(directory)
    first: dict[tuple[str, str, int], float] = {}  # (tag, author, seq) -> t, writer and relay
    reader: dict[tuple[str, str, str, int], float] = {}  # (tag, device, author, seq) -> t
    edits: dict[str, list[float]] = defaultdict(list)
    for tag, device, author, seq, t in rows:
        if tag == "w_edit":
            edits[author].append(t)
        elif tag.startswith("r_"):
            reader.setdefault((tag, device, author, seq), t)
        else:
            first.setdefault((tag, author, seq), t)
    # An entry's edit: the earliest edit of its writer not after its build and not given to an
    # earlier entry (at 20 edits/s each edit is its own entry).
    built = sorted((t, author, seq) for (tag, author, seq), t in first.items() if tag == "w_built")
    for times in edits.values():
        times.sort()
    used: dict[str, int] = defaultdict(int)
    edit_of: dict[tuple[str, int], float] = {}
    for t, author, seq in built:
        times = edits.get(author, [])
        i = used[author]
        if i < len(times) and times[i] <= t:
            edit_of[(author, seq)] = times[i]
            while used[author] < len(times) and times[used[author]] <= t:
                used[author] += 1
    steps: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    timed: list[tuple[float, float]] = []  # (edit time, edit -> applied in ms)
    chain = WRITER + RELAY + READER
    writers = {author[:8] for author in edits}  # a device key's first 4 bytes, as ``device`` holds them
    for tag, device, author, seq in reader:
        if tag != "r_applied" or (author, seq) not in edit_of:
            continue
        if (device in writers) != with_writers:  # bench.latency counts the readers only
            continue
        stamps = {"w_edit": edit_of[(author, seq)]}
        for name in chain[1:]:
            where = reader.get((name, device, author, seq)) if name.startswith("r_") else first.get((name, author, seq))
            if where is not None:
                stamps[name] = where
        if len(stamps) != len(chain):
            continue
        for a, b in itertools.pairwise(chain):
            steps[f"{a} -> {b}"].append(1000 * (stamps[b] - stamps[a]))
        totals.append(1000 * (stamps["r_applied"] - stamps["w_edit"]))
        timed.append((stamps["w_edit"], totals[-1]))
    out: dict[str, Any] = {"pairs": len(totals)}
    if timed:  # the total's p50 per half second of the run, by when the edit was made: a queue
        # that builds (the load generators fall behind) shows as a p50 that climbs
        start = min(t for t, _ in timed)
        buckets: dict[int, list[float]] = defaultdict(list)
        for t, ms in timed:
            buckets[int((t - start) / 0.5)].append(ms)
        out["over_time"] = [statistics.median(buckets[k]) for k in sorted(buckets)]
    for tag, label in (("x_txn", "device store: other transaction"),
                       ("x_txn_full", "device store: fsynced transaction"),
                       ("x_hop", "device store: answer waits for loop")):
        values = sorted(seq / 1000 for t, _, _, seq, _ in rows if t == tag)
        if values:
            out[label] = {"p50": statistics.median(values), "mean": statistics.fmean(values),
                          "p90": values[int(0.9 * (len(values) - 1))], "p99": values[int(0.99 * (len(values) - 1))]}
    outbox: dict[str, list[float]] = defaultdict(list)
    for author, seq in edit_of:
        for a, b in itertools.pairwise(OUTBOX):
            if (a, author, seq) in first and (b, author, seq) in first:
                outbox[f"outbox write: {a} -> {b}"].append(1000 * (first[(b, author, seq)] - first[(a, author, seq)]))
    for name, values in [*steps.items(), *outbox.items(), ("total", totals)]:
        values.sort()
        if values:
            out[name] = {"p50": statistics.median(values), "mean": statistics.fmean(values),
                         "p90": values[int(0.9 * (len(values) - 1))], "p99": values[int(0.99 * (len(values) - 1))]}
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with_writers = "--writers" in args
    result = analyse(Path(next(a for a in args if not a.startswith("--"))), with_writers)
    print(f"(entry, {'writer' if with_writers else 'reader'}) pairs chained: {result.pop('pairs')}")
    print(f"{'step':36} {'p50':>8} {'mean':>8} {'p90':>8} {'p99':>8}  ms")
    over_time = result.pop("over_time", [])
    for name, v in result.items():
        print(f"{name:36} {v['p50']:8.2f} {v['mean']:8.2f} {v['p90']:8.2f} {v['p99']:8.2f}")
    if over_time:
        print("total p50 per 0.5 s of the run (ms):", " ".join(f"{v:.1f}" for v in over_time))
    return 0


if __name__ == "__main__":
    sys.exit(main())
