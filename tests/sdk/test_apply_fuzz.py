"""Fuzz the whole apply path through a real relay: hostile updates from a member, awkward values.

One relay and three members live for the whole module on a loop in a background thread, so
each example costs a few round trips, not a relay start. Carol plays a dishonest member: her
own client signs and submits whatever bytes hypothesis makes (random, truncated or mutated
Yjs updates, and valid ones carrying content this API never writes). Alice and Bob are honest:
after every example neither has failed, both are connected, and they agree on every object,
on the content hash and on the entries they rejected. Examples are derandomised (fixed by the
test's source), so the suite cannot flake.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import encspaces
from encspaces.core.entry import Kind
from encspaces.errors import EntryTooLargeError, UnsupportedValueError
from encspaces.snapshot import content_hash, state_content_hash
from tests.support import AuthoredDoc, RawMember, RelayHandle

from .conftest import make_members, settle

T = TypeVar("T")
FUZZ = settings(max_examples=50, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# Carol's raw client: a second device of hers, made here so that the updates below stand under a
# client id it may write under (encspaces.core.client_ids), and the nonce its entries carry.
CAROL_DEVICE = encspaces.Identity.generate()
AUTHORED = AuthoredDoc(CAROL_DEVICE)


def valid_updates() -> list[bytes]:
    """Updates a Yjs client could send: ordinary edits and content this API never writes."""
    doc = AUTHORED.doc
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("text:doc", type=pycrdt.Text)
    m = doc.get("map:m", type=pycrdt.Map)
    lst = doc.get("list:l", type=pycrdt.Array)
    table = doc.get("table:t", type=pycrdt.Map)
    text.insert(0, "hello wörld")
    text.format(0, 5, {"bold": True, "size": 1e20})
    text.insert_embed(3, pycrdt.Map({"img": 1}))
    del text[1:4]
    m["a"] = pycrdt.Map({"x": pycrdt.Array([1, 2.5, None])})
    m["big"] = 1e300
    m["sub"] = pycrdt.Doc()
    m["bin"] = b"\x00\x01"
    lst.extend(["q", float("nan"), -0.0, 2**60])
    lst.append(pycrdt.Text("nested"))
    table["row"] = pycrdt.Map({"c": "v"})
    table["not-a-row"] = 7
    return updates


VALID = valid_updates()


@st.composite
def hostile_update(draw: st.DrawFn) -> bytes:
    """A data entry's plaintext: mostly the nonce and a hostile update, or any bytes at all."""
    kind = draw(st.sampled_from(["random", "valid", "truncated", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=80))
    return AUTHORED.payload(draw(hostile_yjs(kind)))


@st.composite
def hostile_yjs(draw: st.DrawFn, kind: str) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, max(0, len(data) - 1)))])
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] = draw(st.integers(0, 255))
    return bytes(data)


class Members:
    """Relay and members on a private loop; ``run`` executes a coroutine there and waits."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.relay = RelayHandle(tmp / "relay")
        self.run(self.relay.start())
        _, (self.alice, self.bob, self.carol) = self.run(make_members(self.relay.url, tmp, 3))
        # Carol's own raw client is a second device of hers: one device key has one writing connection.
        person = self.carol.identity.person
        assert person is not None
        self.carol_device = CAROL_DEVICE.with_certificate(person.certify(CAROL_DEVICE.public))
        self.run(self.carol.add_device(self.carol_device.certificate))  # type: ignore[arg-type]

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def honest(self) -> list[encspaces.Space]:
        return [self.alice, self.bob]

    async def settle_and_check(self) -> None:
        await settle([self.alice, self.bob, self.carol])
        for space in self.honest:
            assert space.error is None and space.connected
        alice, bob = self.alice, self.bob
        assert alice.rejected == bob.rejected
        assert content_hash(alice.doc) == content_hash(bob.doc) == state_content_hash(alice.doc.get_update())
        for name, kind in alice.objects():
            # (repr: a member may store NaN, which is not equal to itself)
            assert repr(getattr(alice, kind)(name).to_py()) == repr(getattr(bob, kind)(name).to_py())

    def close(self) -> None:
        async def close_all() -> None:
            for space in (self.alice, self.bob, self.carol):
                await space.close()
            await self.relay.stop()

        self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Members]:
    harness = Members(tmp_path_factory.mktemp("apply-fuzz"))
    try:
        yield harness
    finally:
        harness.close()


@FUZZ
@given(payloads=st.lists(hostile_update(), min_size=1, max_size=4))
def test_hostile_updates_from_a_member_never_break_honest_members(members: Members, payloads: list[bytes]) -> None:
    async def example() -> None:
        carol = members.carol
        async with RawMember(members.relay.url, members.carol_device, carol.space_bytes) as raw:  # carol's own
            await carol.wait_for_seq(await raw.commit(*(raw.entry(Kind.DATA, payload) for payload in payloads)))
        carol.map("marker")["n"] = carol.seq  # an honest edit after them must still apply everywhere
        await members.settle_and_check()
        assert members.bob.map("marker")["n"] == carol.map("marker")["n"]

    members.run(example())


AWKWARD_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), st.sampled_from(["\ud800", "a\udfffb"]),
    st.binary(max_size=4),
)
AWKWARD = st.recursive(
    AWKWARD_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3) | st.integers(0, 3), inner,
                                                               max_size=3),
    max_leaves=8,
)


@FUZZ
@given(value=AWKWARD, target=st.sampled_from(["map", "list", "table", "text"]))
def test_awkward_values_are_refused_or_round_trip(members: Members, value: Any, target: str) -> None:
    async def example() -> None:
        alice, bob = members.alice, members.bob
        before = content_hash(alice.doc)
        try:
            if target == "map":
                alice.map(f"values-{target}")["v"] = value
                read = lambda s: s.map(f"values-{target}")["v"]  # noqa: E731
            elif target == "list":
                alice.list(f"values-{target}").append(value)
                read = lambda s: s.list(f"values-{target}")[-1]  # noqa: E731
            elif target == "table":
                row = alice.table(f"values-{target}").insert({"v": value})
                read = lambda s: s.table(f"values-{target}")[row]["v"]  # noqa: E731
            else:
                alice.text(f"values-{target}").insert(0, "v", {"mark": value})
                read = lambda s: s.text(f"values-{target}").to_delta()[0].get("attributes", {}).get("mark")  # noqa: E731
        except (UnsupportedValueError, EntryTooLargeError):
            assert content_hash(alice.doc) == before and alice.error is None
            return
        await members.settle_and_check()
        assert read(alice) == value and read(bob) == value

    members.run(example())
