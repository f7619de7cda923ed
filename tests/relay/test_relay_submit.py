"""Submissions: acks, fan-out, resends, refusals, group commit and storage failure."""

from __future__ import annotations

import sqlite3
from typing import Any

from relay_kit import Gate, Member, RawClient, SpaceBuilder, join, url_of, wait_until

from encspaces.core.encoding import pack
from encspaces.core.head import SignedHead
from encspaces.core.identity import Identity
from encspaces.core.membership import Role
from encspaces.core.messages import Ack, Entries, Error
from encspaces.core.verifier import LogVerifier
from encspaces_relay.server import RelayServer


async def _space_with(relay: RelayServer, members: int) -> tuple[SpaceBuilder, Member, list[Member]]:
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    identities = [Identity.generate() for _ in range(members)]
    if identities:
        await alice.submit([space.add_member(who) for who in identities])
    others = [await join(url_of(relay), space, who) for who in identities]
    return space, alice, others


async def test_submit_ack_and_fan_out(relay: RelayServer) -> None:
    space, alice, (bob,) = await _space_with(relay, 1)
    entries = [space.data(bob.identity, f"m{i}".encode()) for i in range(3)]
    ack = await bob.submit(entries)
    assert ack.results == [(1, 3), (2, 4), (3, 5)]
    await alice.sync_to(5)
    await bob.sync_to(5)
    assert [v for f in alice.frames for v in f.entries][-3:] == [e.raw for e in entries]
    assert alice.verifier.head == bob.verifier.head


async def test_resent_entry_gets_its_seq_once(relay: RelayServer) -> None:
    space, _alice, (bob,) = await _space_with(relay, 1)
    first = space.data(bob.identity, b"once")
    ack = await bob.submit([first])
    assert ack.results == [(1, 3)]
    again = await bob.submit([first])  # a retry after a lost ack
    assert again.results == [(1, 3)]
    second = space.data(bob.identity, b"twice")
    both = await bob.submit([first, second])  # retry plus a new entry in one submit
    assert both.results == [(1, 3), (2, 4)]
    fresh = await join(url_of(relay), space, space.creator)
    assert fresh.seq == 4
    assert fresh.frames[-1].entries[-2:] == [first.raw, second.raw]


async def test_equivocating_entry_refused(relay: RelayServer) -> None:
    space, _alice, (bob,) = await _space_with(relay, 1)
    await bob.submit([space.data(bob.identity, b"original")])
    forked = space.data(bob.identity, b"another story", author_seq=1)
    await bob.send_submit([forked])
    error = await bob.client.expect_refusal("device_in_use")  # one device key on two machines
    assert "equivocation" in error.message and "encspaces device add" in error.message
    fresh = await join(url_of(relay), space, space.creator)
    assert fresh.seq == 3


async def next_error(client: RawClient) -> Error:
    """The next Error, past the live frames a subscribed member receives meanwhile."""
    while True:
        message = await client.recv()
        if isinstance(message, Error):
            return message
        assert isinstance(message, Entries), f"expected an error, got {message!r}"


async def test_rule_violations_refused(relay: RelayServer) -> None:
    space, alice, (bob, reader) = await _space_with(relay, 2)
    # Reader role
    dave = Identity.generate()
    await alice.submit([space.add_member(dave, Role.READER)])
    dave_conn = await join(url_of(relay), space, dave)
    await dave_conn.send_submit([space.data(dave)])
    error = await dave_conn.client.expect_refusal("rejected")
    assert "may not write" in error.message
    # author_seq gap: refused without closing (it follows any refusal that keeps the connection)
    await bob.send_submit([space.data(bob.identity, author_seq=5)])
    error = await next_error(bob.client)
    assert error.code == "gap" and not error.fatal and error.ref == 5
    assert "skips" in error.message
    # someone else's entry
    await reader.send_submit([space.data(space.creator)])
    error = await reader.client.expect_refusal("rejected")
    assert "own member" in error.message
    # a broken signature
    fresh = await join(url_of(relay), space, space.creator)
    entry = space.data(space.creator)
    await fresh.client.send(pack({"t": "submit", "entries": [entry.raw[:-1] + bytes([entry.raw[-1] ^ 1])]}))
    error = await fresh.client.expect_refusal("rejected")
    assert "body hash" in error.message
    # nothing of it was stored
    check = await join(url_of(relay), space, space.creator)
    assert check.seq == 4  # genesis and three add_member entries


async def test_rejected_entry_does_not_affect_its_batch(relay: RelayServer) -> None:
    space, alice, members = await _space_with(relay, 3)
    room = relay.rooms[space.space]
    gate = Gate()
    gate.wrap(relay.store, "append")
    await alice.send_submit([space.data(space.creator, b"holds the committer")])
    await gate.wait_entered()
    good1, bad, good2 = members
    await good1.send_submit([space.data(good1.identity)])
    await bad.send_submit([space.data(bad.identity, author_seq=2)])  # gap: refused, connection kept
    await good2.send_submit([space.data(good2.identity)])
    await wait_until(lambda: room.queued() == 3, "three submissions queued")
    gate.release()
    assert (await alice.next_ack()).results == [(5, 5)]
    assert (await good1.next_ack()).results == [(1, 6)]
    assert (await good2.next_ack()).results == [(1, 7)]
    error = await next_error(bad.client)
    assert error.code == "gap" and not error.fatal
    await alice.sync_to(7)


async def test_answers_to_one_connection_keep_their_order_in_a_batch(relay: RelayServer) -> None:
    """An ack is written together with the frame that follows it, but never after a later answer
    to the same connection: a client sees its answers in the order it submitted."""
    space, alice, (bob,) = await _space_with(relay, 1)
    room = relay.rooms[space.space]
    mine = room.durable_seq + 2  # after the entry that holds the committer
    gate = Gate()
    gate.wrap(relay.store, "append")
    await alice.send_submit([space.data(space.creator, b"holds the committer")])
    await gate.wait_entered()
    await bob.send_submit([space.data(bob.identity, b"first")])
    await bob.send_submit([space.data(bob.identity, author_seq=5)])  # gap: refused, connection kept
    await bob.send_submit([space.data(bob.identity, b"second", author_seq=2)])
    await wait_until(lambda: room.queued() == 3, "three submissions queued")
    gate.release()
    seen = []
    while len(seen) < 4:
        message = await bob.client.recv()
        if isinstance(message, Entries) and message.first_seq < mine:
            continue  # alice's entry, committed before
        seen.append(message)
    assert [type(m) for m in seen] == [Ack, Error, Ack, Entries]
    assert seen[0].results == [(1, mine)] and seen[2].results == [(2, mine + 1)]
    assert seen[1].code == "gap" and seen[3].first_seq == mine and len(seen[3].entries) == 2


async def test_group_commit(relay: RelayServer) -> None:
    """Submissions queued during a commit are written together under one signed head."""
    writers = 8
    space, _alice, members = await _space_with(relay, writers)
    watcher = await join(url_of(relay), space, space.creator)
    start = watcher.seq
    room = relay.rooms[space.space]
    gate = Gate()
    gate.wrap(relay.store, "append")
    await members[0].send_submit([space.data(members[0].identity)])
    await gate.wait_entered()
    for member in members[1:]:
        await member.send_submit([space.data(member.identity, b"a"), space.data(member.identity, b"b")])
    await wait_until(lambda: room.queued() == writers - 1, "submissions queued behind the commit")
    gate.release()
    total = 1 + 2 * (writers - 1)
    for member in members:
        ack = await member.next_ack()
        assert all(seq > start for _, seq in ack.results)
    await watcher.sync_to(start + total)
    new_frames = [f for f in watcher.frames if f.first_seq > start]
    assert len(new_frames) == 2  # one for the gated commit, one for everything queued behind it
    assert len(new_frames) < total
    assert sum(len(f.entries) for f in new_frames) == total


async def test_large_batch_is_split_into_frames(make_relay: Any) -> None:
    relay = await make_relay(max_entries_per_frame=10)
    space, alice, (bob,) = await _space_with(relay, 1)
    ack = await bob.submit([space.data(bob.identity, bytes([i])) for i in range(35)])
    assert [seq for _, seq in ack.results] == list(range(3, 38))
    await alice.sync_to(37)
    live = [f for f in alice.frames if f.first_seq >= 3]
    assert [len(f.entries) for f in live] == [10, 10, 10, 5]
    assert [f.head.seq for f in live] == [12, 22, 32, 37]


async def test_storage_failure_acks_nothing_and_reloads(relay: RelayServer) -> None:
    space, alice, (bob,) = await _space_with(relay, 1)
    original = relay.store.append
    calls = 0

    async def failing(*args: Any, **kwargs: Any) -> list[SignedHead]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return await original(*args, **kwargs)

    relay.store.append = failing  # type: ignore[method-assign]
    lost = space.data(bob.identity, b"not stored")
    await bob.send_submit([lost])
    error = await bob.client.expect_refusal("internal")
    assert "store" in error.message
    alice_error = await _refused(alice)
    assert alice_error.code == "internal"
    assert space.space not in relay.rooms  # forgotten: reloaded from disk on the next connection
    # the entry was not stored and is accepted again, at the same seq
    again = await join(url_of(relay), space, bob.identity)
    assert again.seq == 2
    assert (await again.submit([lost])).results == [(1, 3)]
    fresh = LogVerifier(space.space, space.creator, relay.public_key)
    check = await join(url_of(relay), space, space.creator, verifier=fresh)
    assert check.seq == 3


async def _refused(member: Member) -> Error:
    while True:
        message = await member.client.recv()
        if isinstance(message, Error):
            await member.client.expect_closed()
            return message
        assert isinstance(message, (Ack, Entries))
