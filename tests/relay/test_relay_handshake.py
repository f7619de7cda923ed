"""Admission: create, connect, and every way a hello can be refused."""

from __future__ import annotations

import time

from relay_kit import RawClient, RelayFactory, SpaceBuilder, join, make_hello, refused_hello, url_of

from encspaces.core import crypto
from encspaces.core.entry import Kind, build_entry
from encspaces.core.identity import Identity
from encspaces.core.log_state import space_id_of
from encspaces.core.messages import Entries, Hello, Submit, Welcome
from encspaces_relay.server import RelayServer


async def test_create_then_connect(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    assert alice.welcome.head.seq == 1 and alice.welcome.anchor is None
    assert alice.seq == 1 and alice.frames[0].entries == [space.genesis.raw]
    await alice.close()

    again = await join(url_of(relay), space, space.creator, verifier=alice.verifier)
    assert again.welcome.anchor is not None and again.welcome.anchor.seq == 1
    assert again.frames == []  # nothing to catch up
    await again.close()


async def test_create_is_idempotent(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    first = await join(url_of(relay), space, space.creator, create=True)
    second = await join(url_of(relay), space, space.creator, create=True)
    assert second.welcome.head.seq == 1 and second.seq == 1
    await first.close()
    await second.close()


async def test_member_added_can_connect(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    bob = Identity.generate()
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.submit([space.add_member(bob)])
    member = await join(url_of(relay), space, bob)
    assert member.seq == 2
    await alice.close()
    await member.close()


async def test_non_member_refused(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    mallory = Identity.generate()
    error = await refused_hello(url_of(relay), lambda c: make_hello(c, mallory, space.space), "not_a_member")
    assert mallory.member_id in error.message
    await alice.close()


async def test_unknown_space(relay: RelayServer) -> None:
    who = Identity.generate()
    await refused_hello(url_of(relay), lambda c: make_hello(c, who, bytes(32)), "unknown_space")


async def test_bad_auth_signature(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    client = await RawClient.open(url_of(relay))
    hello = make_hello(client.challenge, space.creator, space.space)
    bad_sig = bytes([hello.signature[0] ^ 1]) + hello.signature[1:]
    await client.send(Hello(hello.auth, bad_sig, 0, crypto.ZERO_HASH).encode())
    error = await client.expect_refusal("bad_auth")
    assert "signature" in error.message
    # signed by someone else than the member it names
    mallory = Identity.generate()
    client = await RawClient.open(url_of(relay))
    hello = make_hello(client.challenge, space.creator, space.space)
    await client.send(Hello(hello.auth, mallory.sign(crypto.CTX_AUTH, hello.auth), 0, crypto.ZERO_HASH).encode())
    await client.expect_refusal("bad_auth")
    await alice.close()


async def test_stale_time(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    ten_minutes_ago = int(time.time() * 1000) - 10 * 60 * 1000
    error = await refused_hello(
        url_of(relay),
        lambda c: make_hello(c, space.creator, space.space, genesis=space.genesis.raw, time_ms=ten_minutes_ago),
        "bad_auth",
    )
    assert "clock" in error.message


async def test_wrong_nonce(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    error = await refused_hello(
        url_of(relay),
        lambda c: make_hello(c, space.creator, space.space, genesis=space.genesis.raw, nonce=bytes(32)),
        "bad_auth",
    )
    assert "nonce" in error.message


async def test_hello_for_another_relay(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    other = Identity.generate().public.sign_key
    await refused_hello(
        url_of(relay),
        lambda c: make_hello(c, space.creator, space.space, genesis=space.genesis.raw, relay_key=other),
        "bad_auth",
    )


async def test_genesis_pinned_to_another_relay(relay: RelayServer) -> None:
    space = SpaceBuilder(Identity.generate().public.sign_key)
    await refused_hello(
        url_of(relay), lambda c: make_hello(c, space.creator, space.space, genesis=space.genesis.raw), "wrong_relay"
    )


async def test_genesis_must_match_space_and_member(relay: RelayServer) -> None:
    space = SpaceBuilder(relay.public_key)
    other = SpaceBuilder(relay.public_key)
    await refused_hello(
        url_of(relay), lambda c: make_hello(c, space.creator, space.space, genesis=other.genesis.raw), "bad_genesis"
    )
    stranger = Identity.generate()
    await refused_hello(
        url_of(relay), lambda c: make_hello(c, stranger, space.space, genesis=space.genesis.raw), "bad_genesis"
    )
    # a data entry posing as a genesis
    fake = build_entry(space.creator, space=b"", author_seq=1, epoch=1, kind=Kind.DATA, parent_seq=0,
                       parent_hash=crypto.ZERO_HASH, payload=b"x", epoch_key=space.epoch_key)
    await refused_hello(
        url_of(relay),
        lambda c: make_hello(c, space.creator, space_id_of(fake.raw), genesis=fake.raw),
        "bad_genesis",
    )
    # a genesis whose body is not a genesis body
    bad = build_entry(space.creator, space=b"", author_seq=1, epoch=1, kind=Kind.GENESIS, parent_seq=0,
                      parent_hash=crypto.ZERO_HASH, payload=b"\x90", epoch_key=None)
    await refused_hello(
        url_of(relay), lambda c: make_hello(c, space.creator, space_id_of(bad.raw), genesis=bad.raw), "bad_genesis"
    )


async def test_handshake_timeout(make_relay: RelayFactory) -> None:
    relay = await make_relay(handshake_timeout=0.2)
    client = await RawClient.open(url_of(relay))
    error = await client.expect_refusal("timeout")
    assert "hello" in error.message


async def test_submit_before_hello_is_unexpected(relay: RelayServer) -> None:
    client = await RawClient.open(url_of(relay))
    await client.send(Submit([b"x"]).encode())
    await client.expect_refusal("unexpected")


async def test_since_beyond_the_log_gets_welcome_and_stays(relay: RelayServer) -> None:
    """A client ahead of the relay sees the rollback in the Welcome; the relay keeps the connection."""
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    client = await RawClient.open(url_of(relay))
    await client.send(make_hello(client.challenge, space.creator, space.space, since_seq=50).encode())
    welcome = await client.expect(Welcome)
    assert welcome.head.seq == 1 and welcome.anchor is None
    await alice.submit([space.data(space.creator)])
    live = await client.expect(Entries)
    assert live.first_seq == 2
    await client.close()
    await alice.close()
