"""Real relays on 127.0.0.1 for SDK tests, honest or lying, and the helpers to wait on them."""

from __future__ import annotations

from pathlib import Path

import encspaces
from tests.support import RelayHandle, relay, wait_for

__all__ = ["RelayHandle", "make_members", "relay", "settle", "wait_for"]


async def make_members(
    url: str, tmp_path: Path, n: int, options: encspaces.SpaceOptions | None = None
) -> tuple[list[encspaces.Identity], list[encspaces.Space]]:
    """A space created by the first of ``n`` fresh identities, the others added and connected."""
    identities = [encspaces.Identity.generate() for _ in range(n)]
    creator = await encspaces.create_space(url, identities[0], data_dir=tmp_path / "m0", options=options)
    for other in identities[1:]:
        await creator.add_member(other.public)
    spaces = [creator]
    for i, other in enumerate(identities[1:], start=1):
        spaces.append(await encspaces.connect(url, other, creator.id, data_dir=tmp_path / f"m{i}", options=options))
    return identities, spaces


async def settle(spaces: list[encspaces.Space]) -> None:
    """Every member's edits in the log, and every member caught up with all of them."""
    for space in spaces:
        await space.sync()
    newest = max(space.seq for space in spaces)
    for space in spaces:
        await space.wait_for_seq(newest)
