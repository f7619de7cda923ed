"""What a device sees when a relay's limits refuse it: a clear, final error, not an endless retry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import encspaces
from encspaces.errors import RelayError
from encspaces_relay.config import CreatePolicy
from tests.support import RelayHandle


async def test_a_refused_create_fails_with_the_relays_reason(tmp_path: Path) -> None:
    handle = RelayHandle(tmp_path / "relay", create_policy=CreatePolicy.CLOSED)
    await handle.start()
    try:
        async with asyncio.timeout(15):  # before: retried forever, as if the relay were down
            with pytest.raises(RelayError) as caught:
                await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
        assert caught.value.code == "create_forbidden"
        assert "does not create new spaces" in str(caught.value)
    finally:
        await handle.stop()


async def test_over_the_create_rate_the_create_fails(tmp_path: Path) -> None:
    handle = RelayHandle(tmp_path / "relay", max_creates_per_address=1, exempt_addresses=frozenset())
    await handle.start()
    try:
        first = await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
        await first.close()
        async with asyncio.timeout(15):
            with pytest.raises(RelayError) as caught:
                await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "b")
        assert caught.value.code == "rate_limited"
    finally:
        await handle.stop()
