"""CPU of applying one remote one-keystroke update to a Document, and of a pycrdt observer.

One writer's Document types ``--edits`` characters, one update each; a reader's Document
applies them one by one (``Document.apply_remote``), with nothing opened, with the text
opened and typed into (as an editor has it: its positions are then followed through every
remote update), and with a pycrdt observer reading each delta, as the 10×10 bench's reader
has on every text (bench/clients.py, ``Arrivals.watch``). Also the bare pycrdt
``Doc.apply_update`` and a ``Text.observe`` + ``unobserve`` pair with a method as the
callback, which such a text paid per update before it subscribed on the Yrs text itself.
Run it in the old and new trees alternately (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import pycrdt

from encspaces.document import Document


class _Follower:
    def on_remote(self, event: Any) -> None:
        """A method, as ``SharedText`` subscribed (pycrdt inspects its signature each time)."""

    def on_bench_event(self, event: Any) -> None:
        """What the bench's reader does per event: add up the delta's lengths."""
        self.seen = sum(len(op.get("insert", "")) + op.get("retain", 0) for op in event.delta)


def _per_call(count: int, start: float) -> float:
    return (time.thread_time() - start) / count * 1e6


def measure(edits: int) -> dict[str, float]:
    updates: list[bytes] = []
    writer = Document(updates.append)
    text = writer.text("w0", lambda: None)
    for _ in range(edits):
        text.insert(len(text), "x")
    result: dict[str, float] = {}
    for case in ("apply_remote_us", "apply_remote_text_opened_us", "apply_remote_bench_observer_us"):
        reader = Document(lambda update: None)
        if case == "apply_remote_text_opened_us":
            reader.text("w0", lambda: None).insert(0, "r")
        elif case == "apply_remote_bench_observer_us":
            # bench/clients.py's reader (Arrivals.watch): a pycrdt observer on the text, reading
            # each event's delta; what it adds to apply_remote_us is the bench's, not the SDK's.
            ytext = reader.doc.get("text:w0", type=pycrdt.Text)
            ytext.observe(_Follower().on_bench_event)
        start = time.thread_time()
        for update in updates:
            reader.apply_remote(update, "writer")
        result[case] = _per_call(edits, start)
    bare: pycrdt.Doc[Any] = pycrdt.Doc()
    start = time.thread_time()
    for update in updates:
        with bare.transaction(origin="remote"):
            bare.apply_update(update)
    result["pycrdt_apply_update_us"] = _per_call(edits, start)
    ytext = bare.get("text:w0", type=pycrdt.Text)
    callback = _Follower().on_remote
    start = time.thread_time()
    for _ in range(edits):
        ytext.unobserve(ytext.observe(callback))
    result["pycrdt_observe_unobserve_us"] = _per_call(edits, start)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apply_remote", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edits", type=int, default=5000)
    args = parser.parse_args(argv)
    print(json.dumps({key: round(value, 1) for key, value in measure(args.edits).items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
