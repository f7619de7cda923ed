"""Catch-up progress: the relay's announced head (``Space.relay_seq``) and the CLI's bar over it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import encspaces
from encspaces_clients.cli import connecting as cli
from tests.support import RelayHandle, make_relay, relay

__all__ = ["make_relay", "relay"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Lagging:
    """What the bar reads from a space: how far it is, and how far the relay said it is."""

    def __init__(self, seq: int, relay_seq: int) -> None:
        self.seq, self.relay_seq = seq, relay_seq


def test_a_long_catch_up_shows_a_bar_a_short_one_none() -> None:
    screen = Terminal()
    space = Lagging(10, 10 + cli.CATCH_UP_THRESHOLD)
    with cli.catch_up_bar(space, screen) as update:  # type: ignore[arg-type]
        update()
        space.seq = 510
        update()
    assert "catching up" in screen.getvalue() and f"510/{10 + cli.CATCH_UP_THRESHOLD}" in screen.getvalue()
    for stream, behind in ((Terminal(), cli.CATCH_UP_THRESHOLD - 1), (io.StringIO(), cli.CATCH_UP_THRESHOLD)):
        with cli.catch_up_bar(Lagging(0, behind), stream) as update:  # type: ignore[arg-type]
            update()
        assert stream.getvalue() == ""  # too short to need one, or not a terminal


async def test_relay_seq_is_the_head_the_relay_announced(relay: RelayHandle, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice = await encspaces.create_space(relay.url, alice_id, data_dir=tmp_path / "alice")
    try:
        await alice.add_member(bob_id.public)
        bob = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "bob")
        await bob.close()
        for i in range(30):
            alice.text("notes").insert(0, f"{i} ")
            await alice.sync()
        bob = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "bob")
        try:
            assert bob.seq < alice.seq
            monkeypatch.setattr(cli, "CATCH_UP_THRESHOLD", 1)
            screen = Terminal()
            assert await cli.catch_up(bob, 15, progress=screen)
            assert bob.relay_seq == bob.seq == alice.seq
        finally:
            await bob.close()
    finally:
        await alice.close()
