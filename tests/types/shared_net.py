"""Peers that exchange Yjs updates by hand: the SDK's transport with the network taken out.

Each peer's local updates are captured through ``on_local_update`` exactly as the SDK
captures them; delivering one applies it to another peer with ``apply_remote`` under the
sender's member id, in whatever order a test chooses.
"""

from __future__ import annotations

import random
from typing import Any

from encspaces.document import Document
from encspaces.shared import SharedList, SharedMap, SharedTable, SharedText


class Peer:
    def __init__(self, member: str) -> None:
        self.member = member
        self.sent: list[bytes] = []
        self.document = Document(self.sent.append)
        self.guard_calls = 0
        self.read_only = False

    def guard(self) -> None:
        self.guard_calls += 1
        if self.read_only:
            raise PermissionError(f"{self.member} may not write")

    def text(self, name: str = "t") -> SharedText:
        return self.document.text(name, self.guard)

    def list(self, name: str = "l") -> SharedList:
        return self.document.list(name, self.guard)

    def map(self, name: str = "m") -> SharedMap:
        return self.document.map(name, self.guard)

    def table(self, name: str = "tb") -> SharedTable:
        return self.document.table(name, self.guard)


class Net:
    """Updates in flight: every update a peer sends reaches every other peer exactly once.

    Deliveries interleave senders and receivers at random, but each sender's updates reach a
    receiver in the order they were made. That is what the SDK guarantees (the verified log
    orders an author's entries by author_seq), and it matters: pycrdt 0.14 can lose content
    when one author's updates are applied out of their order (see
    test_out_of_order_updates_of_one_author_can_lose_content).
    """

    def __init__(self, *members: str) -> None:
        self.peers = [Peer(member) for member in members]
        self._queues: dict[tuple[int, int], list[bytes]] = {
            (s, r): [] for s in range(len(self.peers)) for r in range(len(self.peers)) if s != r
        }
        self._collected = [0] * len(self.peers)

    def collect(self) -> None:
        """Move newly sent updates into flight, one copy per receiver."""
        for s, sender in enumerate(self.peers):
            fresh = sender.sent[self._collected[s] :]
            self._collected[s] = len(sender.sent)
            for (source, _), queue in self._queues.items():
                if source == s:
                    queue.extend(fresh)

    def deliver_one(self, rng: random.Random) -> bool:
        """Deliver the oldest update of a random sender to a random receiver; False if none is in flight."""
        self.collect()
        busy = [pair for pair, queue in self._queues.items() if queue]
        if not busy:
            return False
        s, r = rng.choice(busy)
        self.peers[r].document.apply_remote(self._queues[(s, r)].pop(0), self.peers[s].member)
        return True

    def settle(self, rng: random.Random | None = None) -> None:
        """Deliver everything: sender by sender, or interleaved at random when given a random source."""
        while True:
            self.collect()
            busy = [pair for pair, queue in self._queues.items() if queue]
            if not busy:
                return
            if rng is not None:
                self.deliver_one(rng)
                continue
            for s, r in busy:
                queue = self._queues[(s, r)]
                while queue:
                    self.peers[r].document.apply_remote(queue.pop(0), self.peers[s].member)


def snapshot(peer: Peer) -> dict[str, Any]:
    """Everything a peer shows, as plain data, for convergence checks."""
    out: dict[str, Any] = {}
    for name, kind in peer.document.objects():
        if kind == "text":
            out[f"text:{name}"] = peer.document.text(name, peer.guard).to_delta()
        elif kind == "list":
            out[f"list:{name}"] = peer.document.list(name, peer.guard).to_py()
        elif kind == "map":
            out[f"map:{name}"] = peer.document.map(name, peer.guard).to_py()
        else:
            out[f"table:{name}"] = peer.document.table(name, peer.guard).to_py()
    return out
