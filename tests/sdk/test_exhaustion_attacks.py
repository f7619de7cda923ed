"""A member trying to exhaust the relay or the other members with presence, over a real relay.

The relay must refuse what is over the documented limits with its code and drop what is over
the rate, and the other members' spaces must keep working.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from encspaces import errors
from encspaces.core.messages import Presence
from tests.support import RawMember, sealed_presence

from .conftest import RelayHandle, make_members


async def test_oversized_presence_is_refused_and_the_others_go_on(relay: RelayHandle, tmp_path: Path) -> None:
    identities, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        async with RawMember(relay.url, identities[1], alice.space_bytes) as raw:
            raw_ws = raw._ws
            assert raw_ws is not None
            await raw_ws.send(Presence(b"\x00" * 9000).encode())
            with pytest.raises(errors.RelayError) as caught:
                for _ in range(10):
                    await raw._receive()
        assert "malformed" in str(caught.value) and "9000 bytes is over the limit of 8192" in str(caught.value)
        alice.text("doc").insert(0, "still here")
        await alice.sync()
        await bob.wait_for_seq(alice.seq)
        assert str(bob.text("doc")) == "still here"
    finally:
        await alice.close()
        await bob.close()


async def test_a_presence_flood_is_dropped_past_the_rate(relay: RelayHandle, tmp_path: Path) -> None:
    """2000 valid presence messages at once: the relay forwards its burst and rate, no more."""
    identities, (alice, bob, carol) = await make_members(relay.url, tmp_path, 3)
    server = relay.server
    assert server is not None
    flood: set[bytes] = set()  # the raw member's messages: the others' own presence is not counted
    forwarded: list[bytes] = []
    encode = server.encode_presence

    def counting(space: bytes, presence: Presence) -> bytes:
        if presence.data in flood:
            forwarded.append(presence.data)
        return encode(space, presence)

    server.encode_presence = counting  # type: ignore[method-assign]
    try:
        start = time.monotonic()
        async with RawMember(relay.url, identities[2], alice.space_bytes) as raw:
            raw_ws = raw._ws
            assert raw_ws is not None
            state = b"\xc4\xff" + b"s" * 255
            for counter in range(1, 2001):
                sealed = sealed_presence(raw, state, counter)
                flood.add(sealed)
                await raw_ws.send(raw.session.presence(sealed))
            alice.text("doc").insert(0, "still here")
            await alice.sync()
            await bob.wait_for_seq(alice.seq)
            assert str(bob.text("doc")) == "still here"
            await (await raw_ws.ping())  # the relay has read the flood
        count = len(forwarded)  # each forwarded before now: the bucket (full at connect) bounds them
        elapsed = time.monotonic() - start
        config = server.config
        assert 1 <= count <= config.presence_burst + config.presence_rate * elapsed
    finally:
        for space in (alice, bob, carol):
            await space.close()
