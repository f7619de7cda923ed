"""CPU a device spends to decode and verify one received frame of one entry, without sockets.

``bench.receive_cost`` measures a whole device under a real relay, where frames merge and
split with the load and the machine's other work moves every figure by ±20%: a change of a
few µs per frame does not show there. This builds a space's log in memory (a genesis,
``--members`` writers, ``--entries`` one-keystroke-sized data entries by one of them, each with
its relay-signed head, as a relay sends them at 10×10: one entry a frame), then has a device
decode and verify every frame (``session.batched`` + ``LogVerifier.verify_frame``), timed
with the thread's CPU clock, the best of ``--repeat`` passes:

- ``other_us``: a member's device verifying another member's entries (two Ed25519 checks a
  frame: the author's signature and the relay's head);
- ``own_us``: the author's device verifying its own entries, the outbox still holding them
  (``LogVerifier.own_entry``, where the tree has it);
- ``other_no_ed25519_us``: as ``other_us`` with Ed25519 verification replaced by ``True``:
  what the Python around it costs (decoding, hashing, the log state, decryption, the Merkle
  tree, the witness tracker);
- ``catch_up_us``: per entry, a new device verifying the whole log from its genesis in the
  relay's catch-up frames of 1,024 entries (what a cold open verifies).

Run it in the old and new trees alternately (``PYTHONPATH``), as the other benchmarks.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing

from bench.common import print_result
from encspaces.core import crypto
from encspaces.core.entry import Entry, Kind, build_entry
from encspaces.core.head import SignedHead, next_head
from encspaces.core.identity import Identity
from encspaces.core.log_state import space_id_of
from encspaces.core.membership import Role, add_member_body, genesis_body
from encspaces.core.messages import Entries
from encspaces.core.session import batched
from encspaces.core.verifier import LogVerifier


class _Log:
    """An honest relay's log, in memory: entry bytes and chain heads by seq."""

    def __init__(self, members: int) -> None:
        self.relay = nacl.signing.SigningKey.generate()
        self.key = crypto.random_key()
        self.admin = Identity.generate()
        self.writers = [Identity.generate() for _ in range(members)]
        self.raws: list[bytes] = []
        self.heads = [crypto.ZERO_HASH]
        self.author_seqs: dict[bytes, int] = {}
        genesis = self._build(self.admin, Kind.GENESIS,
                              genesis_body(self.admin.public, bytes(self.relay.verify_key), self.key), b"")
        self.space = space_id_of(genesis.raw)
        self._append(genesis)
        for writer in self.writers:
            self.append(self.admin, Kind.ADD_MEMBER, add_member_body(writer.public, Role.WRITER, {1: self.key}))

    def _build(self, author: Identity, kind: Kind, payload: bytes, space: bytes) -> Entry:
        seq = self.author_seqs[author.public.sign_key] = self.author_seqs.get(author.public.sign_key, 0) + 1
        return build_entry(author, space=space, author_seq=seq, epoch=1, kind=kind, parent_seq=len(self.raws),
                           parent_hash=self.heads[-1], payload=payload,
                           epoch_key=self.key if kind.is_encrypted else None)

    def _append(self, entry: Entry) -> None:
        self.raws.append(entry.raw)
        self.heads.append(next_head(self.heads[-1], len(self.raws), entry.digest()))

    def append(self, author: Identity, kind: Kind, payload: bytes) -> Entry:
        entry = self._build(author, kind, payload, self.space)
        self._append(entry)
        return entry

    def frame(self, first: int, last: int) -> bytes:
        head = SignedHead.create(self.relay, self.space, last, self.heads[last])
        return Entries(first, self.raws[first - 1:last], head).encode()


def _verified(public_key: bytes, context: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 verification left out: what remains is the Python around it."""
    return True


def _pass(log: _Log, who: Identity, frames: list[bytes], held: dict[int, bytes] | None) -> float:
    """One device verifies the log's start in one frame, then every timed frame: CPU µs per frame."""
    start_seq = len(log.raws) - len(frames)
    verifier = LogVerifier(log.space, who, bytes(log.relay.verify_key))
    if held is not None:
        verifier.own_entry = held.get  # type: ignore[attr-defined,unused-ignore]
    (catch_up,) = batched([log.frame(1, start_seq)])
    assert isinstance(catch_up, Entries)
    verifier.verify_frame(catch_up)
    start = time.thread_time()
    for data in frames:
        for step in batched([data]):
            assert isinstance(step, Entries)
            verifier.verify_frame(step)
    return (time.thread_time() - start) / len(frames) * 1e6


def _catch_up(log: _Log, who: Identity) -> float:
    """A new device verifies the whole log from its genesis, in the relay's catch-up frames of
    1,024 entries (the path a cold open takes): CPU µs per entry."""
    frames = [log.frame(first, min(first + 1023, len(log.raws))) for first in range(1, len(log.raws) + 1, 1024)]
    verifier = LogVerifier(log.space, who, bytes(log.relay.verify_key))
    start = time.thread_time()
    for data in frames:
        for step in batched([data]):
            assert isinstance(step, Entries)
            verifier.verify_frame(step)
    return (time.thread_time() - start) / len(log.raws) * 1e6


def measure(members: int, entries: int, repeat: int) -> dict[str, Any]:
    log = _Log(members)
    author, other = log.writers[0], log.writers[1]
    first = len(log.raws) + 1
    written = [log.append(author, Kind.DATA, b"\x01" * 40) for _ in range(entries)]
    frames = [log.frame(seq, seq) for seq in range(first, first + entries)]
    held = {entry.header.author_seq: entry.raw for entry in written}
    own_supported = hasattr(LogVerifier(log.space, author), "own_entry")

    def best(run: Callable[[], float]) -> float:
        return min(run() for _ in range(repeat))

    result: dict[str, Any] = {
        "members": members, "entries": entries, "repeat": repeat,
        "other_us": best(lambda: _pass(log, other, frames, None)),
        "own_us": best(lambda: _pass(log, author, frames, held if own_supported else None)),
    }
    result["catch_up_us"] = best(lambda: _catch_up(log, other))
    real = crypto.verify
    crypto.verify = _verified
    try:
        result["other_no_ed25519_us"] = best(lambda: _pass(log, other, frames, None))
    finally:
        crypto.verify = real
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=11, help="writers in the space (default 11)")
    parser.add_argument("--entries", type=int, default=1000, help="frames timed per pass (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the best is kept (default 5)")
    parser.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    args = parser.parse_args(argv)
    result = measure(args.members, args.entries, args.repeat)
    print_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
