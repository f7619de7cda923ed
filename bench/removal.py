"""Removal in a large space: what one key rotation costs when it seals a key per member.

Removing a member starts a new epoch; the remover seals the fresh key to every remaining
member's X25519 key in the one signed entry. This measures, in a space of N members, the
time from ``remove_member`` to the entry being verified in the remover's log, and to a
second member's client holding the new key; plus the entry's size. The relay runs as its
own process.

With ``--devices D`` (default 3) it also measures the same space where every member is a person
with D devices, so a removal seals the key to every remaining device (N x D - D sealed keys):
the log of N people with D devices each is built and checked in process (``LogState``, the rules
the relay and every client run), then each removal is timed where its cost lies: building the
entry (sealing), the relay's check of it, and a client verifying it and opening its own key.
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


def measure_devices(members: int, devices: int, rounds: int) -> dict[str, Any]:
    """Removal of a member and of a single device in a space of ``members`` people with ``devices`` each."""
    from encspaces.core import crypto
    from encspaces.core.devices import Person
    from encspaces.core.entry import build_entry
    from encspaces.core.head import next_head
    from encspaces.core.log_state import LogState, space_id_of
    from encspaces.core.membership import Role, add_device_body, add_member_body, genesis_body
    from encspaces.core.rekey import rekey_body
    from encspaces.core.verifier import LogVerifier

    key = crypto.random_key()
    relay = encspaces.Identity.generate()
    admin = encspaces.Identity.generate()
    seqs: dict[bytes, int] = {}
    log: list[Entry] = []

    def entry(author: encspaces.Identity, kind: Kind, body: bytes, state: LogState, space: bytes) -> Entry:
        seqs[author.public.sign_key] = seqs.get(author.public.sign_key, 0) + 1
        return build_entry(author, space=space, author_seq=seqs[author.public.sign_key], epoch=state.epoch,
                           kind=kind, parent_seq=state.seq, parent_hash=state.head, payload=body, epoch_key=None)

    genesis = build_entry(admin, space=b"", author_seq=1, epoch=1, kind=Kind.GENESIS, parent_seq=0,
                          parent_hash=crypto.ZERO_HASH, epoch_key=None,
                          payload=genesis_body(admin.public, relay.public.sign_key, key))
    seqs[admin.public.sign_key] = 1
    space = space_id_of(genesis.raw)
    state = LogState(space)

    def append(e: Entry) -> float:
        t0 = time.perf_counter()
        state.check(e, state.seq + 1)
        checked = time.perf_counter() - t0
        state.apply(e, state.seq + 1, next_head(state.head, state.seq + 1, e.digest()))
        log.append(e)
        return checked

    append(genesis)
    started = time.perf_counter()
    people: list[list[encspaces.Identity]] = []
    for _ in range(members - 1):
        person = Person.generate()
        own = []
        for d in range(devices):
            device = encspaces.Identity.generate()
            own.append(device.with_certificate(person.certify(device.public, f"device {d}")))
        append(entry(admin, Kind.ADD_MEMBER, add_member_body(own[0].public, Role.WRITER, {1: key},
                                                             cert=own[0].certificate), state, space))
        for device in own[1:]:
            assert device.certificate is not None
            append(entry(own[0], Kind.ADD_DEVICE, add_device_body(device.certificate, {1: key}), state, space))
        people.append(own)
    setup = time.perf_counter() - started
    watcher = people[-1][1]  # a client: the second device of the last person
    verifier = LogVerifier(space, watcher, relay.public.sign_key)
    verifier.state = LogState.restore(space, state.export(), list(state.heads))
    verifier.epoch_keys[1] = key
    results: dict[str, list[float]] = {"build": [], "check": [], "verify": [], "bytes": []}
    device_results: dict[str, list[float]] = {"build": [], "check": [], "verify": [], "bytes": []}
    count = sum(len(m.devices) for m in state.members.values())
    for i, victim in enumerate(people[:rounds]):
        lost = people[-2 - i][-1]  # one device of another person, lost
        for kind, out, person, device in ((Kind.REMOVE_MEMBER, results, victim[0].person_key, None),
                                          (Kind.REMOVE_DEVICE, device_results, None, lost.public.sign_key)):
            t0 = time.perf_counter()
            e = entry(admin, kind, rekey_body(state, remove=person, device=device), state, space)
            out["build"].append(time.perf_counter() - t0)
            out["check"].append(append(e))
            out["bytes"].append(len(e.raw))
            t0 = time.perf_counter()
            verifier.state.check(e, verifier.state.seq + 1)
            verifier.state.apply(e, verifier.state.seq + 1, state.head)
            keys: dict[int, bytes] = {}
            verifier._open(e, verifier.state.seq, state.head, keys)  # what a client does with the verified entry
            out["verify"].append(time.perf_counter() - t0)
            assert state.epoch in keys, "the watcher's device did not get the new key"

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    return {
        "devices_per_member": devices,
        "device_count": count,
        "setup_build_and_check_log_s": round(setup, 1),
        "member_removal_build_ms_median": ms(results["build"]),
        "member_removal_relay_check_ms_median": ms(results["check"]),
        "member_removal_client_verify_and_open_ms_median": ms(results["verify"]),
        "member_removal_entry_bytes": int(max(results["bytes"])),
        "device_removal_build_ms_median": ms(device_results["build"]),
        "device_removal_relay_check_ms_median": ms(device_results["check"]),
        "device_removal_client_verify_and_open_ms_median": ms(device_results["verify"]),
        "device_removal_entry_bytes": int(max(device_results["bytes"])),
    }


def removal_entry_sizes(data_dir: Path) -> list[int]:
    """Sizes of the remove_member entries the relay stored (its database, read-only)."""
    with sqlite3.connect(f"file:{data_dir / DB_FILE}?mode=ro", uri=True) as db:
        raws = [bytes(r[0]) for r in db.execute("SELECT raw FROM entries ORDER BY seq")]
    return [len(raw) for raw in raws if Entry.decode(raw).header.kind is Kind.REMOVE_MEMBER]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.removal", description=__doc__)
    parser.add_argument("--members", type=int, default=1000, help="members in the space (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="removals to time (default 3)")
    parser.add_argument("--devices", type=int, default=3, help="devices per member for the devices part (default 3;"
                        " 0: skip it)")
    parser.add_argument("--quick", action="store_true", help="a small space, one round (smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    members, rounds = (20, 1) if args.quick else (args.members, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(members, rounds, Path(tmp)))
    if args.devices > 0:
        result["with_devices"] = measure_devices(members, args.devices, rounds)
    payload = {"benchmark": "removal", **result, "machine": machine_info()}
    path = write_result("removal", payload, args.out)
    print(f"removal in a {members}-member space: verified by the remover in "
          f"{result['removal_verified_by_remover_ms_median']} ms, seen by another member in "
          f"{result['removal_seen_by_other_member_ms_median']} ms; entry {result['removal_entry_bytes']} bytes "
          f"(results in {path})")
    if args.devices > 0:
        d = result["with_devices"]
        print(f"with {args.devices} devices each ({d['device_count']} devices): removing a member seals "
              f"{d['device_count'] - args.devices} keys: build {d['member_removal_build_ms_median']} ms, relay check "
              f"{d['member_removal_relay_check_ms_median']} ms, client verify+open "
              f"{d['member_removal_client_verify_and_open_ms_median']} ms, {d['member_removal_entry_bytes']} bytes; "
              f"removing one device: build {d['device_removal_build_ms_median']} ms, relay check "
              f"{d['device_removal_relay_check_ms_median']} ms, {d['device_removal_entry_bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
