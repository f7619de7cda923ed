"""Whatever a client sends, the relay answers with an Error frame or a valid reply, and keeps serving."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_kit import Member, RawClient, SpaceBuilder, join, make_hello, url_of

from encspaces.core.encoding import pack, unpack
from encspaces.core.identity import Identity
from encspaces.core.messages import Ack, Challenge, Entries, Error, Submit
from encspaces_relay.server import RelayServer

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=80)
    | st.text(max_size=20) | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)


class Fixture:
    """One relay and space for all examples (hypothesis runs many examples per test call)."""

    def __init__(self, relay: RelayServer) -> None:
        self.relay = relay
        self.space = SpaceBuilder(relay.public_key)
        self.bob = Identity.generate()
        self.alice: Member | None = None
        entry = self.space.data(self.bob, b"template")  # valid once bob is added: submitting it gets an ack
        self.templates: list[bytes] = [
            make_hello(Challenge(relay.public_key, bytes(32)), self.bob, self.space.space).encode(),
            make_hello(Challenge(relay.public_key, bytes(32)), self.space.creator, self.space.space,
                       genesis=self.space.genesis.raw).encode(),
            Submit([entry.raw]).encode(),
            pack({"t": "ack", "results": [[1, 2]]}),
            pack({"t": "error", "code": "x", "message": "y", "fatal": True}),
        ]

    async def setup(self) -> None:
        self.alice = await join(url_of(self.relay), self.space, self.space.creator, create=True)
        await self.alice.submit([self.space.add_member(self.bob)])


@st.composite
def mutated(draw: st.DrawFn, templates: list[bytes]) -> bytes | str:
    base = draw(st.sampled_from(templates))
    how = draw(st.sampled_from(["flip", "truncate", "insert", "field", "random", "text"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    if how == "text":
        return draw(st.text(max_size=50))
    if how == "flip":
        i = draw(st.integers(0, len(base) - 1))
        return base[:i] + bytes([base[i] ^ draw(st.integers(1, 255))]) + base[i + 1 :]
    if how == "truncate":
        return base[: draw(st.integers(0, len(base) - 1))]
    if how == "insert":
        i = draw(st.integers(0, len(base)))
        return base[:i] + draw(st.binary(min_size=1, max_size=20)) + base[i:]
    message: dict[str, Any] = unpack(base)
    key = draw(st.sampled_from(sorted(message)) | st.text(max_size=6))
    message[key] = draw(msgpack_values)
    return pack(message)


@pytest.fixture
async def fuzz(relay: RelayServer) -> Fixture:
    """Created once per test call and shared by all of its examples (hence the suppressed health check)."""
    fixture = Fixture(relay)
    await fixture.setup()
    return fixture


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), admitted=st.booleans())
async def test_junk_never_breaks_the_relay(fuzz: Fixture, data: st.DataObject, admitted: bool) -> None:
    fixture, relay = fuzz, fuzz.relay
    errors = _Errors()
    logging.getLogger("encspaces_relay").addHandler(errors)
    try:
        junk = data.draw(mutated(fixture.templates))
        if admitted:
            member = await join(url_of(relay), fixture.space, fixture.bob)
            client = member.client
        else:
            client = await RawClient.open(url_of(relay))
        await client.send(junk)
        while True:
            reply = await client.recv()
            if isinstance(reply, Error):
                await client.expect_closed()
                break
            assert admitted and isinstance(reply, (Ack, Entries)), reply
            if isinstance(reply, Ack):
                await client.close()
                break
    finally:
        logging.getLogger("encspaces_relay").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    # the relay still serves: alice submits and a fresh connection catches up
    assert fixture.alice is not None
    ack = await fixture.alice.submit([fixture.space.data(fixture.space.creator, b"alive")])
    fresh = await join(url_of(relay), fixture.space, fixture.space.creator)
    assert fresh.seq >= ack.results[0][1]
    await fresh.close()
