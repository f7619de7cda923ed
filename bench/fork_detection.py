"""Time from a fork to its detection through the witnesses, with one witness and with three.

    python -m bench.fork_detection [--rounds 5] [--poll 1.0] [--checkpoint-interval 1.0] [--quick]

A split view, as a relay operator would mount it: two relay processes' worth of state (two
in-process ``RelayServer``s, each on its own copy of one data dir, so one relay key) serve one
space; Alice reaches the first, Bob the second, and presence between them cannot exist. Both
relays checkpoint their branch and submit it to the space's witnesses (real ``encspaces-witness``
processes). The fork exists from the moment both members' diverging edits are committed (t0);
detection is the first of the two members failing with a fork-family error (t1). Reported per
witness count: every t1 - t0, its median and max, and which error and member detected it.

What bounds it: the relay's ``--checkpoint-interval`` (one branch's checkpoint must be cosigned
first), then the other member's next witness poll (``SpaceOptions.witness_poll_interval``; 60 s
by default, ``--poll`` here) and, when its verified log is past the cosigned size, one
consistency-proof round trip. With three witnesses (quorum 2) both relays race for cosignatures;
witnesses may split, and then neither branch reaches a quorum: detection still follows from any
single honest witness's checkpoint conflicting with the member's log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import encspaces
from encspaces import Witness, errors
from encspaces.core.identity import member_id
from encspaces_relay.config import RelayConfig
from encspaces_relay.server import RelayServer
from encspaces_witness.process import WitnessProcess


async def _wait(condition: Any, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def one_run(root: Path, witnesses: int, poll: float, interval: float) -> dict[str, Any]:
    relay_a = RelayServer(RelayConfig(data_dir=root / "relay-a", port=0, checkpoint_interval=interval,
                                       allow_private_witnesses=True))
    port_a = await relay_a.start()
    procs = [WitnessProcess(root / f"w{i}", [member_id(relay_a.public_key)], name=f"bench.witness/w{i}")
             for i in range(witnesses)]
    for w in procs:
        await w.start()
    relay_b: RelayServer | None = None
    spaces: list[encspaces.Space] = []
    try:
        options = encspaces.SpaceOptions(witness_poll_interval=poll, witness_deadline=600.0)
        alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
        alice = await encspaces.create_space(
            f"ws://127.0.0.1:{port_a}", alice_id, data_dir=root / "alice", options=options,
            witnesses=[Witness.from_vkey(w.vkey, w.url) for w in procs], quorum=witnesses // 2 + 1)
        spaces.append(alice)
        await alice.add_member(bob_id.public)
        await alice.sync()
        assert await _wait(lambda: alice.witnessed_seq == alice.seq, 60), "the common log was never witnessed"
        await alice.close()
        spaces.remove(alice)
        await relay_a.stop()
        shutil.copytree(root / "relay-a", root / "relay-b")
        relay_a = RelayServer(RelayConfig(data_dir=root / "relay-a", port=port_a, checkpoint_interval=interval,
                                       allow_private_witnesses=True))
        await relay_a.start()
        relay_b = RelayServer(RelayConfig(data_dir=root / "relay-b", port=0, checkpoint_interval=interval,
                                       allow_private_witnesses=True))
        port_b = await relay_b.start()
        alice = await encspaces.connect(f"ws://127.0.0.1:{port_a}", alice_id, alice.id, data_dir=root / "alice",
                                        options=options)
        bob = await encspaces.connect(f"ws://127.0.0.1:{port_b}", bob_id, alice.id, data_dir=root / "bob",
                                      options=options)
        spaces += [alice, bob]
        await bob.wait_for_seq(alice.seq)
        alice.text("doc").insert(0, "alice's branch")
        bob.text("doc").insert(0, "bob's branch")
        await asyncio.gather(alice.sync(), bob.sync())
        t0 = time.monotonic()
        detected = await _wait(lambda: alice.error is not None or bob.error is not None, 300)
        t1 = time.monotonic()
        if not detected:
            return {"detected": False}
        who, error = ("alice", alice.error) if alice.error is not None else ("bob", bob.error)
        assert isinstance(error, (errors.ForkError, errors.CheckpointEvidenceError)), error
        return {"detected": True, "seconds": t1 - t0, "by": who, "error": type(error).__name__}
    finally:
        for space in spaces:
            await space.close()
        await relay_a.stop()
        if relay_b is not None:
            await relay_b.stop()
        for w in procs:
            await w.stop()


async def run(rounds: int, poll: float, interval: float, counts: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for n in counts:
        runs = []
        for i in range(rounds):
            with tempfile.TemporaryDirectory(prefix="encspaces-fork-") as tmp:
                runs.append(await one_run(Path(tmp), n, poll, interval))
            print(f"  {n} witness(es), run {i + 1}: {runs[-1]}", flush=True)
        times = [r["seconds"] for r in runs if r.get("detected")]
        results[str(n)] = {
            "runs": runs,
            "median_s": statistics.median(times) if times else None,
            "max_s": max(times) if times else None,
            "undetected": sum(1 for r in runs if not r.get("detected")),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fork_detection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--poll", type=float, default=1.0, help="SpaceOptions.witness_poll_interval (s)")
    parser.add_argument("--checkpoint-interval", type=float, default=1.0, help="the relays' (s)")
    parser.add_argument("--quick", action="store_true", help="one round with one witness")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    counts = [1] if args.quick else [1, 3]
    rounds = 1 if args.quick else args.rounds
    results = asyncio.run(run(rounds, args.poll, args.checkpoint_interval, counts))
    for n, r in results.items():
        median = "-" if r["median_s"] is None else f"{r['median_s']:.2f} s"
        worst = "-" if r["max_s"] is None else f"{r['max_s']:.2f} s"
        print(f"{n} witness(es): median {median}, max {worst}, undetected {r['undetected']} of {rounds}")
    if args.out is not None:
        args.out.write_text(json.dumps({"machine": platform.platform(), "poll_s": args.poll,
                                        "checkpoint_interval_s": args.checkpoint_interval, "results": results},
                                       indent=2))


if __name__ == "__main__":
    main()
