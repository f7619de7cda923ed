"""Many spaces: 1,000 small documents of 3 members each, every member typing a few edits a second.

What a relay serving many small teams pays: server CPU per edit and per delivery, and server
memory per space (its room and its 3 live connections). Per contender and round: start the
server, read its RSS, open every document and connection from ``--procs`` load-generator
processes, read the RSS again (memory per space = the difference / spaces), then every member
types ``--rate`` edits a second (random phase) for ``--duration`` seconds; the server's CPU
over the measured window (the last ``duration - warmup`` seconds) is divided by the edits typed
and by the deliveries counted by the clients in that window: every message (Yjs) or entry
(encspaces) the server pushed to a client, the author's own copy included where the server
sends one (y-websocket and encspaces do, the null relay does not), so µs per edit is the
figure to compare.

- encspaces: each space is created at the wire level (genesis, then two add_member entries
  by its creator), then its 3 members connect with the SDK's ``ClientSession`` (signed hello,
  verified welcome and catch-up, live subscription). Each edit is a signed, encrypted DATA
  entry of 24 bytes of payload (the size of a one-keystroke Yjs update) in its own Submit, as
  the SDK sends the first edit after a pause. Once live the load generators only count the
  entries in the frames they receive: verifying them would cost the clients 2 signatures a
  delivery and measures nothing about the relay.
- Yjs servers (y-websocket, the null relay): the same rooms, 3 ``YjsClient``s each (sync
  handshake), one update message per edit; deliveries = messages received.

**Whether the server kept up.** CPU per edit typed means something only when the server
handled the edits of its window in that window: a server behind its load uses all the CPU it
gets and leaves edits for later, so its CPU per edit typed reads low. Each run therefore
reports ``delivered_share`` (deliveries counted ÷ the edits typed × the copies each should
reach: 3, or 2 for the null relay, which sends no own copy) and ``server_us_per_delivered_edit``
(server CPU ÷ the edits that reached every member). A share below ``KEPT_UP`` (0.95) marks the
run ``kept_up: false``: compare ``server_us_per_delivered_edit`` then, and lower ``--rate``
until every contender keeps up to read a CPU per edit.

The relay runs with its default limits: loopback addresses are exempt from the per-address
connection and create limits, and 3,000 connections stay under ``max_connections`` (4,000).
The same file is the load generator: ``python -m bench.many_spaces --worker SPEC``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from bench.clients import YjsClient
from bench.common import (
    CONTENDERS,
    cpu_mark,
    cpu_used,
    is_null,
    parse_contenders,
    ratio,
    record_round,
    rotated,
    rss_bytes,
    summarize,
    usable_contenders,
    write_result,
)
from bench.contenders import start_server
from bench.loadgen import emit, read_command, stdin_reader
from bench.workload import READ_LIMIT, Worker
from encspaces.core import crypto
from encspaces.core.encoding import DEFAULT_MAX_MESSAGE
from encspaces.core.entry import Entry, Kind, build_entry
from encspaces.core.head import next_head
from encspaces.core.identity import Identity
from encspaces.core.log_state import space_id_of
from encspaces.core.membership import Role, add_member_body, genesis_body
from encspaces.core.messages import Challenge, Entries, Error, decode_message
from encspaces.core.session import BecameLive, ClientSession, Send, SessionState
from encspaces.core.verifier import LogVerifier

MEMBERS = 3
KEPT_UP = 0.95  # the share of the expected deliveries a run must count to have kept up
CONCURRENCY = 50  # connections opened at once by one load generator
PAYLOAD = 24  # bytes of a one-keystroke Yjs update
DEFAULT_CONTENDERS = "null,node,encspaces"


# --- encspaces at the wire level --------------------------------------------------------------


class Team:
    """One space: its creator and members, its genesis and the entries that add the members."""

    def __init__(self, relay_key: bytes) -> None:
        self.relay_key = relay_key
        self.members = [Identity.generate() for _ in range(MEMBERS)]
        creator = self.members[0]
        self.epoch_key = crypto.random_key()
        self.genesis = build_entry(
            creator, space=b"", author_seq=1, epoch=1, kind=Kind.GENESIS, parent_seq=0,
            parent_hash=crypto.ZERO_HASH, payload=genesis_body(creator.public, relay_key, self.epoch_key),
            epoch_key=None,
        )
        self.space = space_id_of(self.genesis.raw)
        # Every later entry names the genesis head as its parent: valid whatever lands between.
        self.h1 = next_head(crypto.ZERO_HASH, 1, self.genesis.digest())
        self.adds = [self.entry(creator, 2 + k, Kind.ADD_MEMBER,
                                add_member_body(m.public, Role.WRITER, {1: self.epoch_key}))
                     for k, m in enumerate(self.members[1:])]

    def entry(self, author: Identity, author_seq: int, kind: Kind, payload: bytes) -> Entry:
        return build_entry(author, space=self.space, author_seq=author_seq, epoch=1, kind=kind, parent_seq=1,
                           parent_hash=self.h1, payload=payload,
                           epoch_key=self.epoch_key if kind is Kind.DATA else None)


class Member:
    """One member's connection: the SDK's session until live, then it types and counts."""

    def __init__(self, url: str, team: Team, index: int) -> None:
        self.url = url
        self.team = team
        self.identity = team.members[index]
        self.creator = index == 0
        self.next_author_seq = MEMBERS + 1 if self.creator else 1  # the creator wrote genesis and the adds
        self.session = ClientSession(self.identity, LogVerifier(team.space, self.identity, team.relay_key),
                                     team.genesis.raw if self.creator else None)
        self.live = asyncio.Event()
        self.delivered = 0  # entries received while live (the author's own come back too)
        self.sent = 0
        self.refusals = 0  # Error frames from the relay while typing (none expected)
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, until_seq: int) -> None:
        self._ws = await ws_connect(self.url, compression=None, max_size=DEFAULT_MAX_MESSAGE, ping_interval=None,
                                    open_timeout=60, close_timeout=1)
        self._task = asyncio.create_task(self._receive(until_seq))
        await asyncio.wait_for(self.live.wait(), 60)

    async def _receive(self, until_seq: int) -> None:
        ws = self._ws
        assert ws is not None
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                assert isinstance(message, bytes)
                if self.live.is_set():
                    frame = decode_message(message)
                    if isinstance(frame, Entries):
                        self.delivered += len(frame.entries)
                    elif isinstance(frame, Error):
                        self.refusals += 1
                    continue
                for event in self.session.receive(message, int(time.time() * 1000)):
                    if isinstance(event, Send):
                        await ws.send(event.data)
                    elif isinstance(event, BecameLive) and self.creator and self.session.verifier.seq == 1:
                        await ws.send(self.session.submit([e.raw for e in self.team.adds]))
                if self.session.verifier.seq >= until_seq and self.session.state is SessionState.LIVE:
                    self.live.set()

    async def type_one(self) -> None:
        assert self._ws is not None
        entry = self.team.entry(self.identity, self.next_author_seq, Kind.DATA,
                                self.next_author_seq.to_bytes(8, "big") * (PAYLOAD // 8))
        self.next_author_seq += 1
        self.sent += 1
        await self._ws.send(self.session.submit([entry.raw]))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class YjsMember:
    """A Yjs peer with the same counting interface."""

    def __init__(self, client: YjsClient) -> None:
        self.client = client
        self.sent = 0
        self.refusals = 0
        self._base = 0

    @property
    def delivered(self) -> int:
        return self.client.received - self._base

    async def open(self) -> None:
        await self.client.open(timeout=60)
        self._base = self.client.received  # the handshake's messages are not deliveries

    async def type_one(self) -> None:
        self.client.append("t", "x")
        self.sent += 1
        await self.client.flush()

    async def close(self) -> None:
        await self.client.close()


async def relay_key_of(url: str) -> bytes:
    async with ws_connect(url, compression=None, open_timeout=60) as ws:
        challenge = decode_message(await ws.recv(decode=False))
    assert isinstance(challenge, Challenge)
    return challenge.relay_key


# --- the load generator ------------------------------------------------------------------------


async def generate(spec: dict[str, Any]) -> None:
    commands = await stdin_reader()
    started = time.monotonic()
    gate = asyncio.Semaphore(CONCURRENCY)
    members: list[Member | YjsMember] = []
    if spec["contender"] == "encspaces":
        relay_key = await relay_key_of(spec["url"])

        async def open_team() -> list[Member]:
            team = Team(relay_key)
            team_members = [Member(spec["url"], team, k) for k in range(MEMBERS)]
            async with gate:
                await team_members[0].open(until_seq=MEMBERS)  # created, and the members added
                for m in team_members[1:]:
                    await m.open(until_seq=MEMBERS)
            return team_members

        for group in await asyncio.gather(*(open_team() for _ in range(spec["spaces"]))):
            members.extend(group)
    else:
        handshake = not is_null(spec["contender"])

        async def open_room(room: str) -> list[YjsMember]:
            room_members = [YjsMember(YjsClient(spec["url"], room, handshake=handshake)) for _ in range(MEMBERS)]
            async with gate:
                for m in room_members:
                    await m.open()
            return room_members

        rooms = [f"{spec['room']}-{spec['first']}-{k}" for k in range(spec["spaces"])]
        for group in await asyncio.gather(*(open_room(room) for room in rooms)):
            members.extend(group)
    emit("READY", {"connections": len(members), "seconds": time.monotonic() - started})
    t_go = float(await read_command(commands, "GO", 600))
    rate, duration, warmup = spec["rate"], spec["duration"], spec["warmup"]
    marks: list[tuple[float, int, int]] = []

    async def typist(member: Member | YjsMember) -> None:
        k = 0
        phase = random.random() / rate
        while True:
            at = t_go + phase + k / rate
            if at >= t_go + duration:
                return
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            await member.type_one()
            k += 1

    async def mark(at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        marks.append((time.monotonic(), sum(m.sent for m in members), sum(m.delivered for m in members)))

    late = 0.0
    await asyncio.gather(mark(t_go + warmup), mark(t_go + duration), *(typist(m) for m in members))
    late = time.monotonic() - (t_go + duration)
    (ta, sa, da), (tb, sb, db) = marks
    emit("RESULT", {"sent": sb - sa, "delivered": db - da, "window": tb - ta, "late_s": late,
                    "refusals": sum(m.refusals for m in members)})
    await read_command(commands, "STOP", 600)
    await asyncio.gather(*(asyncio.wait_for(m.close(), 30) for m in members), return_exceptions=True)


# --- the orchestrator ----------------------------------------------------------------------------


async def run_once(contender: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    async with start_server(contender, workdir) as server:
        await asyncio.sleep(0.5)
        fresh = rss_bytes(server.pid)
        workers: list[Worker] = []
        room = f"many-{uuid.uuid4().hex[:8]}"
        try:
            per = [args.spaces // args.procs + (1 if p < args.spaces % args.procs else 0) for p in range(args.procs)]
            for p, spaces in enumerate(per):
                spec = {"contender": contender, "url": server.url, "spaces": spaces, "first": p, "room": room,
                        "rate": args.rate, "duration": args.duration, "warmup": args.warmup}
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.many_spaces", "--worker", json.dumps(spec),
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=READ_LIMIT)
                workers.append(Worker(f"#{p}", proc))
            ready = [json.loads(await w.expect("READY", 300)) for w in workers]
            await asyncio.sleep(1.0)
            loaded = rss_bytes(server.pid)
            t_go = time.monotonic() + 0.5
            for w in workers:
                await w.send(f"@@GO {t_go}")
            pids = [server.pid] + [w.proc.pid for w in workers]
            await asyncio.sleep(max(0.0, t_go + args.warmup - time.monotonic()))
            mark_a = cpu_mark(pids)
            await asyncio.sleep(max(0.0, t_go + args.duration - time.monotonic()))
            mark_b = cpu_mark(pids)
            after = rss_bytes(server.pid)
            results = [json.loads(await w.expect("RESULT", 120)) for w in workers]
            for w in workers:
                await w.send("@@STOP")
            for w in workers:
                await asyncio.wait_for(w.proc.wait(), 120)
        finally:
            for w in workers:
                await w.stop()
    window = mark_b.at - mark_a.at
    server_cpu = cpu_used(mark_a, mark_b, [server.pid])
    sent = sum(r["sent"] for r in results)
    delivered = sum(r["delivered"] for r in results)
    copies = MEMBERS - 1 if is_null(contender) else MEMBERS  # the null relay sends no own copy
    share = delivered / (sent * copies) if sent else None
    return {
        "connections": sum(r["connections"] for r in ready),
        "open_seconds": max(r["seconds"] for r in ready),
        "edits_per_s": sent / window,
        "deliveries_per_s": delivered / window,
        "server_cpu_cores": server_cpu / window,
        "clients_cpu_cores": cpu_used(mark_a, mark_b, [w.proc.pid for w in workers]) / window,
        "server_us_per_edit": server_cpu / sent * 1e6 if sent else None,
        "server_us_per_delivery": server_cpu / delivered * 1e6 if delivered else None,
        "delivered_share": share,
        "kept_up": share is not None and share >= KEPT_UP,
        "server_us_per_delivered_edit": server_cpu / (delivered / copies) * 1e6 if delivered else None,
        "server_rss_fresh_mib": fresh / 2**20,
        "server_rss_loaded_mib": loaded / 2**20,
        "server_rss_after_mib": after / 2**20,
        "kib_per_space": (loaded - fresh) / args.spaces / 1024,
        "kib_per_space_after_typing": (after - fresh) / args.spaces / 1024,
        "max_late_s": max(r["late_s"] for r in results),
        "refusals": sum(r["refusals"] for r in results),
    }


MAIN = ["server_us_per_edit", "server_us_per_delivered_edit", "delivered_share", "server_us_per_delivery",
        "kib_per_space", "kib_per_space_after_typing", "server_cpu_cores"]


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    usable, skipped = usable_contenders(parse_contenders(args.contenders))
    per: dict[str, list[dict[str, Any]]] = {c: [] for c in usable}
    for r in range(args.rounds):
        for name in rotated(usable, r):
            where = workdir / f"{name}-{r}"
            started = time.monotonic()
            try:
                measured = await asyncio.wait_for(run_once(name, args, where), 600)
            except Exception as exc:  # one failed run is reported, not fatal to the others
                measured = {"error": repr(exc)}
            finally:
                shutil.rmtree(where, ignore_errors=True)
            record_round(per, "many_spaces", name, r, measured, f" ({time.monotonic() - started:.1f} s)")
    table = summarize(per, usable)
    ours = next((row["median"] for row in table if row["contender"] == "encspaces"), None)
    ratios = [{"vs": row["contender"], **{k: ratio(ours.get(k), row["median"].get(k)) for k in MAIN}}
              for row in table if ours is not None and row["contender"] != "encspaces"]
    return {"rounds": args.rounds,
            "settings": {"spaces": args.spaces, "members": MEMBERS, "rate": args.rate, "duration": args.duration,
                         "warmup": args.warmup, "procs": args.procs, "rounds": args.rounds},
            "contenders": {c: CONTENDERS[c] for c in usable}, "skipped": skipped, "results": table,
            "ratios_encspaces_over": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.many_spaces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", type=int, default=1000, help="documents of 3 members (default 1000)")
    parser.add_argument("--rate", type=float, default=2.0, help="edits per second per member (default 2)")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of typing per run (default 12)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the measured window (default 2)")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--contenders", default=DEFAULT_CONTENDERS,
                        help=f"comma-separated subset of {','.join(CONTENDERS)} (default {DEFAULT_CONTENDERS})")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (default 1)")
    parser.add_argument("--quick", action="store_true", help="20 spaces, 2 s, one round (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/many_spaces.json)")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(generate(json.loads(args.worker)))
        return 0
    if args.quick:
        args.spaces, args.duration, args.warmup, args.rounds = 20, 2.0, 0.5, 1
    with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
        payload = asyncio.run(run(args, Path(tmp)))
    path = write_result("many_spaces", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
