"""Random concurrent edits on every kind of object converge, whatever the delivery interleaving.

Three members edit texts, lists (with nested items), maps (with nested values) and tables at
random, sometimes in transactions, while updates trickle between them in random
interleavings; once everything is delivered all three show the same content, and one
member's change events, replayed, account for exactly the rows its tables hold.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from shared_net import Net, Peer, snapshot

from encspaces.document import Document, ListChange, MapChange, TableChange

COLUMNS = ["p", "q", "r"]
KEYS = ["a", "b", "c", "d"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(8 if depth < 2 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.randint(-1000, 1000)
    if choice == 3:
        return rng.choice([0.5, -2.25, 1e-3])
    if choice in (4, 5):
        return rng.choice(["", "x", "héllo", "a b"])
    if choice == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(3))}


def edit_text(peer: Peer, rng: random.Random) -> None:
    text = peer.text(f"text{rng.randrange(2)}")
    n = len(text)
    op = rng.randrange(4)
    if op == 0 and n:
        i = rng.randrange(n)
        text.delete(i, rng.randint(1, min(4, n - i)))
    elif op == 1 and n:
        i = rng.randrange(n)
        text.format(i, rng.randint(1, n - i), {rng.choice(["bold", "em"]): rng.choice([True, None, "x"])})
    else:
        attrs = rng.choice([None, {}, {"bold": True}])
        text.insert(rng.randint(0, n), rng.choice(["x", "yz", "hello ", "ü"]), attrs)


def edit_list(peer: Peer, rng: random.Random) -> None:
    lst = peer.list(f"list{rng.randrange(2)}")
    n = len(lst)
    op = rng.randrange(7)
    if op == 0 and n:
        del lst[rng.randrange(n)]
    elif op == 1 and n:
        lst[rng.randrange(n)] = random_value(rng)
    elif op == 2 and n:
        i = rng.randrange(n)
        item = lst[i]
        if isinstance(item, dict):
            lst.get_map(i)[rng.choice(KEYS)] = random_value(rng, 1)
        elif isinstance(item, list):
            nested = lst.get_list(i)
            nested.insert(rng.randint(0, len(nested)), random_value(rng, 1))
    elif op == 3:
        lst.extend([random_value(rng) for _ in range(rng.randint(1, 3))])
    elif op == 4 and n > 2:
        del lst[rng.randrange(n) :]
    else:
        lst.insert(rng.randint(-n, n), random_value(rng))


def edit_map(peer: Peer, rng: random.Random) -> None:
    m = peer.map(f"map{rng.randrange(2)}")
    key = rng.choice(KEYS)
    op = rng.randrange(5)
    if op == 0 and key in m:
        del m[key]
    elif op == 1 and isinstance(m.get(key), dict):
        m.get_map(key)[rng.choice(KEYS)] = random_value(rng, 1)
    elif op == 2 and isinstance(m.get(key), list):
        m.get_list(key).append(random_value(rng, 1))
    elif op == 3:
        m.update({k: random_value(rng) for k in rng.sample(KEYS, 2)})
    else:
        m[key] = random_value(rng)


def edit_table(peer: Peer, rng: random.Random) -> None:
    table = peer.table(f"table{rng.randrange(2)}")
    ids = list(table)
    op = rng.randrange(4)
    if op == 0 and ids:
        table.delete(rng.choice(ids))
    elif op in (1, 2) and ids:
        table.update(rng.choice(ids), {c: random_value(rng, 1) for c in rng.sample(COLUMNS, rng.randint(1, 2))})
    else:
        table.insert({c: random_value(rng, 1) for c in rng.sample(COLUMNS, rng.randint(0, 3))})


EDITS = [edit_text, edit_list, edit_map, edit_table]


def random_session(seed: int, steps: int) -> Net:
    rng = random.Random(seed)
    net = Net("ana", "ben", "cy")
    watcher = net.peers[2]
    stream = watcher.document.changes()
    rows: dict[str, set[str]] = {}  # what the watcher's events say each table, map and list holds
    keys: dict[str, set[str]] = {}
    lengths: dict[str, int] = {}

    def watch() -> None:
        while (change := stream.get_nowait()) is not None:
            if isinstance(change, TableChange):
                held = rows.setdefault(change.name, set())
                assert not held & set(change.inserted) and set(change.deleted) <= held
                assert set(change.updated) <= held
                held.update(change.inserted)
                held.difference_update(change.deleted)
            elif isinstance(change, MapChange):
                present = keys.setdefault(change.name, set())
                for key, key_change in change.keys.items():
                    assert (key in present) == (key_change.action != "add"), (key, key_change, present, change)
                    (present.discard if key_change.action == "delete" else present.add)(key)
            elif isinstance(change, ListChange):
                length = lengths.get(change.name, 0)
                for op in change.delta:
                    length += len(op.get("insert", ())) - op.get("delete", 0)
                lengths[change.name] = length

    for _ in range(steps):
        peer = rng.choice(net.peers)
        if rng.random() < 0.2:
            with peer.document.transaction():
                for _ in range(rng.randint(2, 4)):
                    rng.choice(EDITS)(peer, rng)
                if rng.random() < 0.3:
                    net.deliver_one(rng)  # arrives mid-transaction: applied when the block ends
        else:
            rng.choice(EDITS)(peer, rng)
        for _ in range(rng.randrange(4)):
            net.deliver_one(rng)
        watch()
    net.settle(rng)
    watch()
    first = snapshot(net.peers[0])
    for peer in net.peers[1:]:
        assert snapshot(peer) == first
    for name, held in rows.items():
        assert held == set(watcher.table(name))
    for name, present in keys.items():
        assert present == set(watcher.map(name))
    for name, length in lengths.items():
        assert length == len(watcher.list(name))
    fresh = Peer("late")
    fresh.document.apply_remote(net.peers[1].document.state(), "ben")
    assert snapshot(fresh) == first
    return net


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
@example(seed=88025)  # a concurrent cell write yrs applied without an event: the table index went stale
def test_random_concurrent_edits_converge(seed: int) -> None:
    random_session(seed, steps=60)


def test_a_long_seeded_session_converges() -> None:
    net = random_session(20240601, steps=600)
    assert any(snapshot(net.peers[0]).values())


def test_two_members_editing_offline_then_merging_converge() -> None:
    """A long offline stretch: nothing is delivered until the end, then everything at once."""
    rng = random.Random(5)
    net = Net("a", "b")
    for _ in range(150):
        rng.choice(EDITS)(rng.choice(net.peers), rng)
    net.settle()
    assert snapshot(net.peers[0]) == snapshot(net.peers[1])
    merged = Document(lambda update: None)
    for peer in net.peers:
        merged.apply_remote(peer.document.state(), peer.member)
    assert snapshot(Peer("x")) == {}
