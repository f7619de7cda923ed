"""Failover between several relay URLs (encspaces/connection.py): without any server but ours.

Two relays that are one relay to the clients: the same data dir (so the same log and the same
relay key) served on two ports, never both at once. A member given both URLs moves to the
other one when its relay goes away, resumes from its verified seq and resends its outbox;
the cluster tests (tests/relay/test_relay_failover.py) do the same with three live relays on
PostgreSQL and NATS.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core.encoding import unpack
from encspaces.core.invites import InviteLink, InviteSecret
from encspaces.relay_url import MAX_RELAYS, relay_urls

from .conftest import RelayHandle, settle, wait_for


async def _two_ports(data_dir: Path) -> tuple[RelayHandle, RelayHandle]:
    """Two handles on one data dir with their ports known; neither is running."""
    first, second = RelayHandle(data_dir), RelayHandle(data_dir)
    for handle in (second, first):
        await handle.start()
        await handle.stop()
    return first, second


async def test_members_fail_over_resume_and_resend(tmp_path: Path) -> None:
    a, b = await _two_ports(tmp_path / "relay")
    await a.start()
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    try:
        alice = await encspaces.create_space([a.url, b.url], alice_id, data_dir=tmp_path / "alice")
        await alice.add_member(bob_id.public)
        # bob lists the relay that is down first: an opening tries the next one
        bob = await encspaces.connect([b.url, a.url], bob_id, alice.id, data_dir=tmp_path / "bob")
        assert alice.urls == (a.url, b.url) and bob.urls == (b.url, a.url)
        assert alice.url == bob.url == a.url
        ta, tb = alice.text("doc"), bob.text("doc")
        ta.insert(0, "a0 ")
        await settle([alice, bob])
        seq = alice.seq

        await a.stop()
        await wait_for(lambda: not alice.connected and not bob.connected, what="both to lose relay a")
        for i in range(1, 10):  # written while no relay answers: kept in the outbox
            ta.insert(len(ta), f"a{i} ")
            tb.insert(0, f"b{i} ")
        await b.start()
        await alice.wait_connected(timeout=30)
        await bob.wait_connected(timeout=30)
        assert alice.url == bob.url == b.url
        await settle([alice, bob])
        assert str(ta) == str(tb)
        for i in range(1, 10):
            assert str(ta).count(f"a{i} ") == 1 and str(ta).count(f"b{i} ") == 1
        assert alice.seq > seq and alice.head == bob.head and alice.unsent == bob.unsent == 0

        # The invite names the relay in use first, then the others.
        link = InviteLink.parse(await alice.create_invite())
        assert link.urls == (b.url, a.url)
        await b.stop()
        await a.start()  # and back: carol joins through the link's second relay
        carol = await encspaces.join(str(link), encspaces.Identity.generate(), data_dir=tmp_path / "carol")
        assert carol.url == a.url and carol.urls == (b.url, a.url)
        await settle([alice, bob, carol])
        assert str(carol.text("doc")) == str(ta)
        for space in (alice, bob, carol):
            await space.close()
    finally:
        await a.stop()
        await b.stop()


async def test_no_relay_answers_names_every_one(tmp_path: Path) -> None:
    a, b = await _two_ports(tmp_path / "relay")
    both = (rf"none of the 2 relays could be reached: cannot reach the relay at {a.url}: .*; "
            rf"cannot reach the relay at {b.url}")
    with pytest.raises(errors.ConnectionFailedError, match=both):
        await encspaces.create_space([a.url, b.url], encspaces.Identity.generate(), data_dir=tmp_path / "x")
    await a.start()
    try:
        space = await encspaces.create_space(a.url, encspaces.Identity.generate(), data_dir=tmp_path / "c")
        space_id = space.id
        await space.close()
    finally:
        await a.stop()
    with pytest.raises(errors.ConnectionFailedError, match=f"none of the 2 relays.*{b.url}.*{a.url}"):
        await encspaces.connect([b.url, a.url], encspaces.Identity.generate(), space_id, data_dir=tmp_path / "d")


async def test_a_relay_that_hangs_does_not_keep_the_next_from_being_tried(relay: RelayHandle, tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts the connection and never answers

    hung = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{hung.sockets[0].getsockname()[1]}"
    options = encspaces.SpaceOptions(open_timeout=0.5)
    try:
        alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
        alice = await encspaces.create_space([url, relay.url], alice_id, data_dir=tmp_path / "a", options=options)
        await alice.add_member(bob_id.public)
        bob = await encspaces.connect([url, relay.url], bob_id, alice.id, data_dir=tmp_path / "b", options=options)
        assert alice.url == bob.url == relay.url and bob.seq == alice.seq
        await alice.close()
        await bob.close()
    finally:
        hung.close()


def test_relay_url_lists_are_checked() -> None:
    assert relay_urls("ws://h:1") == ("ws://h:1",)
    assert relay_urls(["ws://h:1", "wss://g", "ws://h:1"]) == ("ws://h:1", "wss://g")  # order kept, no repeats
    with pytest.raises(errors.InvalidArgumentError, match="give 1 to 16 relay URLs, not 0"):
        relay_urls([])
    with pytest.raises(errors.InvalidArgumentError, match="give 1 to 16 relay URLs, not 17"):
        relay_urls([f"ws://h:{port}" for port in range(1, MAX_RELAYS + 2)])
    with pytest.raises(errors.InvalidArgumentError, match="give several relays as a list"):
        relay_urls("ws://h:1,ws://g:2")
    with pytest.raises(errors.InvalidArgumentError, match="not a websocket URL"):
        relay_urls(["ws://h:1", "http://g"])
    with pytest.raises(errors.ArgumentTypeError, match="a str or a list of str"):
        relay_urls(["ws://h:1", b"ws://g"])  # type: ignore[list-item]


def test_invite_link_with_several_relays() -> None:
    secret = InviteSecret.generate()
    one = InviteLink("ws://a:1", b"s" * 32, secret)
    several = InviteLink("ws://a:1", b"s" * 32, secret, ("ws://b:2", "wss://c"))
    assert InviteLink.parse(str(several)) == several and several.urls == ("ws://a:1", "ws://b:2", "wss://c")
    assert InviteLink.parse(str(one)).urls == ("ws://a:1",)
    # one relay: the bytes of a link from before failover (the URL alone, not a list), which older clients read
    body = base64.urlsafe_b64decode(str(one).split(".", 1)[1] + "==")[:-4]
    assert unpack(body, what="link")[0] == "ws://a:1"
