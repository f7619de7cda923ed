"""Garbage in: an Error frame saying why, a closed connection, and nothing else disturbed."""

from __future__ import annotations

from relay_kit import Member, RawClient, RelayFactory, SpaceBuilder, join, make_hello, url_of

from encspaces.core.encoding import pack
from encspaces.core.identity import Identity
from encspaces.core.messages import Ack, Challenge, Welcome
from encspaces_relay.server import RelayServer


async def _two_members(relay: RelayServer) -> tuple[SpaceBuilder, Member, Member]:
    space = SpaceBuilder(relay.public_key)
    bob = Identity.generate()
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.submit([space.add_member(bob)])
    return space, alice, await join(url_of(relay), space, bob)


async def _still_serving(relay: RelayServer, space: SpaceBuilder, alice: Member, bob: Member) -> None:
    ack = await alice.submit([space.data(space.creator, b"still here")])
    await bob.sync_to(ack.results[0][1])
    fresh = await join(url_of(relay), space, space.creator)
    assert fresh.seq == ack.results[0][1]
    await fresh.close()


BAD_FIRST_MESSAGES: list[tuple[bytes | str, str]] = [
    (b"\xc1", "malformed"),  # never valid msgpack
    (b"\x92\x01", "malformed"),  # truncated array
    (pack([1, 2, 3]), "malformed"),  # not a map
    (pack({"t": "bogus"}), "malformed"),  # unknown kind
    (pack({"t": "hello"}), "malformed"),  # missing fields
    (pack({"t": "hello", "auth": 5, "sig": b"", "since": 0, "since_head": b"", "genesis": None}), "malformed"),
    (pack({"t": "ack", "results": []}), "unexpected"),  # valid message, wrong time
    ("a text frame", "malformed"),
]


async def test_bad_first_messages(relay: RelayServer) -> None:
    space, alice, bob = await _two_members(relay)
    for data, code in BAD_FIRST_MESSAGES:
        client = await RawClient.open(url_of(relay))
        await client.send(data)
        await client.expect_refusal(code)
    await _still_serving(relay, space, alice, bob)


async def test_bad_messages_after_admission(relay: RelayServer) -> None:
    space, alice, bob = await _two_members(relay)
    carol = Identity.generate()
    await alice.submit([space.add_member(carol)])
    for data, code in [*BAD_FIRST_MESSAGES, (make_hello_bytes(space, carol), "unexpected")]:
        member = await join(url_of(relay), space, carol)
        await member.client.send(data)
        await member.client.expect_refusal(code)
    await _still_serving(relay, space, alice, bob)


def make_hello_bytes(space: SpaceBuilder, who: Identity) -> bytes:
    return make_hello(Challenge(space.relay_key, bytes(32)), who, space.space).encode()


async def test_oversized_frame(make_relay: RelayFactory) -> None:
    relay = await make_relay(max_frame=8192)
    space, alice, bob = await _two_members(relay)
    client = await RawClient.open(url_of(relay))
    await client.send(b"\x00" * 8193)
    error = await client.expect_refusal("too_large")
    assert "8193" in error.message
    # after admission too
    await bob.client.send(pack({"t": "submit", "entries": [b"x" * 9000]}))
    await bob.client.expect_refusal("too_large")
    # far over the limit: websockets stops reading it and closes with 1009 (message too big)
    client = await RawClient.open(url_of(relay))
    await client.send(b"\x00" * 3 * 8192)
    await client.expect_closed()
    assert client.ws.close_code == 1009
    await alice.submit([space.data(space.creator)])
    fresh = await join(url_of(relay), space, space.creator)
    await fresh.close()


async def test_entry_too_large_for_a_frame(make_relay: RelayFactory) -> None:
    """An entry that fits in a Submit but not in an Entries frame is refused: it could not be delivered."""
    relay = await make_relay(max_frame=8192)
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.client.send(pack({"t": "submit", "entries": [space.data(space.creator, b"x" * 7900).raw]}))
    await alice.client.expect_refusal("too_large")


async def test_refused_connection_does_not_disturb_a_welcome_in_progress(relay: RelayServer) -> None:
    space, alice, _bob = await _two_members(relay)
    client = await RawClient.open(url_of(relay))
    bad = await RawClient.open(url_of(relay))
    await bad.send(b"\xc1")
    await client.send(make_hello(client.challenge, space.creator, space.space).encode())
    await bad.expect_refusal("malformed")
    assert isinstance(await client.recv(), Welcome)
    await client.close()
    ack = await alice.submit([space.data(space.creator)])
    assert isinstance(ack, Ack)
