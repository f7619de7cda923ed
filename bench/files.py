"""File transfer: upload and download throughput of an encrypted file, beside raw websockets.

encspaces: one member uploads ``--mib`` MiB of random bytes with ``space.files.put`` (cut into
256 KiB chunks, each encrypted and hashed, stored by the relay, then the manifest written as
a signed entry); another member's device downloads it with ``space.files.get`` (every chunk
checked by hash and decryption). Upload and download are timed separately.

Floor: the same bytes in the same 256 KiB messages through the null relay (a websockets
server forwarding each message to the other connection): time from the first message sent to
the last one received. No server holds the bytes, so this one is upload and download at once;
it is what moving the bytes over Python websockets on this machine costs at least.

The Yjs servers have no file transfer, so they are not in this one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect as ws_connect

import encspaces
from bench.common import (
    CONTENDERS,
    is_null,
    parse_contenders,
    record_round,
    rotated,
    summarize,
    usable_contenders,
    write_result,
)
from bench.contenders import Server, start_server

CHUNK = 256 << 10


async def through_null(server: Server, data: bytes) -> dict[str, Any]:
    url = f"{server.url}/files"
    async with ws_connect(url, compression=None, max_size=None, ping_interval=None) as receiver, \
            ws_connect(url, compression=None, max_size=None, ping_interval=None) as sender:
        total = len(data)

        async def receive() -> float:
            got = 0
            async for message in receiver:
                got += len(message)
                if got >= total:
                    return time.perf_counter()
            raise RuntimeError("the null relay closed before every byte arrived")

        task = asyncio.create_task(receive())
        await asyncio.sleep(0.05)  # the receiver is listening
        start = time.perf_counter()
        for offset in range(0, total, CHUNK):
            await sender.send(data[offset: offset + CHUNK])
        end = await asyncio.wait_for(task, 300)
    seconds = end - start
    return {"transfer_s": seconds, "mib_per_s": total / 2**20 / seconds}


async def through_encspaces(server: Server, data: bytes, workdir: Path) -> dict[str, Any]:
    up_id, down_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    up = await encspaces.create_space(server.url, up_id, data_dir=workdir / "up")
    try:
        await up.add_member(down_id.public)
        start = time.perf_counter()
        await up.files.put("payload.bin", data)
        upload = time.perf_counter() - start
        down = await encspaces.connect(server.url, down_id, up.id, data_dir=workdir / "down")
        try:
            await down.wait_for_seq(up.seq)
            start = time.perf_counter()
            got = await down.files.get("payload.bin")
            download = time.perf_counter() - start
        finally:
            await down.close()
    finally:
        await up.close()
    if got != data:
        return {"error": "the downloaded file differs from the uploaded one"}
    mib = len(data) / 2**20
    return {"upload_s": upload, "download_s": download, "upload_mib_per_s": mib / upload,
            "download_mib_per_s": mib / download}


async def run(contenders: list[str], mib: int, rounds: int, workdir: Path) -> dict[str, Any]:
    usable, skipped = usable_contenders(contenders)
    for name in [c for c in usable if not is_null(c) and c != "encspaces"]:
        usable.remove(name)
        skipped[name] = "a Yjs document server has no file transfer"
    per: dict[str, list[dict[str, Any]]] = {c: [] for c in usable}
    for r in range(rounds):
        for name in rotated(usable, r):
            data = os.urandom(mib << 20)  # fresh content: encspaces dedups equal content in a space
            where = workdir / f"{name}-{r}"
            try:
                async with start_server(name, where) as server:
                    if name == "encspaces":
                        measured = await asyncio.wait_for(through_encspaces(server, data, where), 600)
                    else:
                        measured = await asyncio.wait_for(through_null(server, data), 600)
            except Exception as exc:
                measured = {"error": repr(exc)}
            record_round(per, "files", name, r, measured)
    table = summarize(per, usable)
    return {"mib": mib, "chunk_bytes": CHUNK, "rounds": rounds,
            "contenders": {c: CONTENDERS[c] for c in usable}, "skipped": skipped, "results": table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.files", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64, help="file size in MiB (default 64)")
    parser.add_argument("--contenders", default="null,encspaces", help="null and/or encspaces")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="2 MiB, one round (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/files.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.mib, args.rounds = 2, 1
    with tempfile.TemporaryDirectory(prefix="bench-files-") as tmp:
        payload = asyncio.run(run(parse_contenders(args.contenders), args.mib, args.rounds, Path(tmp)))
    path = write_result("files", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
