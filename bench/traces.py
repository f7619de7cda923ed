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
    name: str
    txns: list[list[Patch]]
    end_content: str

    @property
    def patches(self) -> int:
        return sum(len(t) for t in self.txns)


def load_trace(name: str) -> Trace:
    path = traces_dir() / f"{name}.json.gz"
    if not path.exists():
        raise TraceMissing(f"trace {path} is absent (the shared/ folder beside the project holds it)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    txns = [[(int(p[0]), int(p[1]), str(p[2])) for p in txn["patches"]] for txn in data["txns"]]
    return Trace(name, txns, data["endContent"])
