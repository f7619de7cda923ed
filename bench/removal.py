"""Removal in a large space: what one key rotation costs when it seals a key per member.

Removing a member starts a new epoch; the remover seals the fresh key to every remaining
member's X25519 key in the one signed entry. This measures, in a space of N members, the
time from ``remove_member`` to the entry being verified in the remover's log, and to a
second member's client holding the new key; plus the entry's size. The relay runs as its
own process.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import encspaces
from bench.common import machine_info, write_result
from encspaces.core.entry import Entry, Kind
from encspaces_relay.process import RelayProcess
from encspaces_relay.store import DB_FILE


async def measure(members: int, rounds: int, workdir: Path) -> dict[str, Any]:
    async with RelayProcess(workdir / "relay") as relay:
        admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=workdir / "admin")
        watcher_id = encspaces.Identity.generate()
        await admin.add_member(watcher_id.public)
        others = [encspaces.Identity.generate() for _ in range(members - 2 + rounds)]
        start = time.perf_counter()
        for ident in others:
            await admin.add_member(ident.public)
        setup = time.perf_counter() - start
        watcher = await encspaces.connect(relay.url, watcher_id, admin.id, data_dir=workdir / "watcher")
        removal_s, seen_s, sizes = [], [], []
        try:
            for victim in others[:rounds]:
                await watcher.wait_for_seq(admin.seq)
                epoch = admin.epoch
                t0 = time.perf_counter()
                await admin.remove_member(victim.member_id)
                removal_s.append(time.perf_counter() - t0)
                await watcher.wait_for_seq(admin.seq)
                seen_s.append(time.perf_counter() - t0)
                assert watcher.epoch == epoch + 1 and watcher.epoch in watcher._verifier.epoch_keys
            sizes = removal_entry_sizes(relay.data_dir)
            return {
                "members": members,
                "rounds": rounds,
                "setup_add_members_s": round(setup, 2),
                "removal_verified_by_remover_ms_median": round(statistics.median(removal_s) * 1000, 1),
                "removal_seen_by_other_member_ms_median": round(statistics.median(seen_s) * 1000, 1),
                "removal_entry_bytes": max(sizes),
            }
        finally:
            await watcher.close()
            await admin.close()


def removal_entry_sizes(data_dir: Path) -> list[int]:
    """Sizes of the remove_member entries the relay stored (its database, read-only)."""
    with sqlite3.connect(f"file:{data_dir / DB_FILE}?mode=ro", uri=True) as db:
        raws = [bytes(r[0]) for r in db.execute("SELECT raw FROM entries ORDER BY seq")]
    return [len(raw) for raw in raws if Entry.decode(raw).header.kind is Kind.REMOVE_MEMBER]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.removal", description=__doc__)
    parser.add_argument("--members", type=int, default=1000, help="members in the space (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="removals to time (default 3)")
    parser.add_argument("--quick", action="store_true", help="a small space, one round (smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    members, rounds = (20, 1) if args.quick else (args.members, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(members, rounds, Path(tmp)))
    payload = {"benchmark": "removal", **result, "machine": machine_info()}
    path = write_result("removal", payload, args.out)
    print(f"removal in a {members}-member space: verified by the remover in "
          f"{result['removal_verified_by_remover_ms_median']} ms, seen by another member in "
          f"{result['removal_seen_by_other_member_ms_median']} ms; entry {result['removal_entry_bytes']} bytes "
          f"(results in {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
