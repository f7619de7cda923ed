"""The shared editing traces (../shared/traces), read once, with a clear message when absent."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

Patch = tuple[int, int, str]


def traces_dir() -> Path:
    env = os.environ.get("ENCSPACES_TRACES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "traces"


class TraceMissing(Exception):
    """The trace file is not on this machine; benchmarks and replay tests skip on it."""


@dataclass(frozen=True)
class Trace:
    """A josephg/editing-traces sequential trace: positions count Unicode code points."""

    name: str
    txns: list[list[Patch]]
    end_content: str
    start_content: str = ""

    @property
    def patches(self) -> int:
        return sum(len(t) for t in self.txns)

    def utf8_txns(self, limit: int) -> list[list[Patch]]:
        """The first ``limit`` transactions with positions and deleted lengths in UTF-8 bytes,
        what pycrdt 0.14's Text counts (the same numbers for an ASCII trace). Worked out before
        any timing, as an editor hands a Yjs binding positions in its own unit."""
        if self.start_content.isascii() and all(p[2].isascii() for txn in self.txns[:limit] for p in txn):
            return self.txns[:limit]
        from encspaces.shared.text_index import TextIndex

        text = TextIndex(self.start_content)
        converted: list[list[Patch]] = []
        for txn in self.txns[:limit]:
            out: list[Patch] = []
            for pos, deleted, inserted in txn:
                offset, size = text.delete(pos, deleted) if deleted else (text.offset(pos), 0)
                if inserted:
                    text.insert(pos, inserted)
                out.append((offset, size, inserted))
            converted.append(out)
        return converted


def load_trace(name: str) -> Trace:
    """A trace by name (``NAME.json.gz`` or ``NAME.json`` in the traces folder) or by path."""
    candidates = [Path(name), traces_dir() / f"{name}.json.gz", traces_dir() / f"{name}.json"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise TraceMissing(f"trace {candidates[1]} is absent (the shared/ folder beside the project holds it)")
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    txns = [[(int(p[0]), int(p[1]), str(p[2])) for p in txn["patches"]] for txn in data["txns"]]
    label = path.name.removesuffix(".gz").removesuffix(".json")
    return Trace(label, txns, data["endContent"], data.get("startContent") or "")
