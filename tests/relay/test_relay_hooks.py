"""The frame hooks let a test turn the relay malicious over a real websocket; clients catch it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from relay_kit import RelayFactory, SpaceBuilder, join, url_of

from encspaces.core.encoding import pack, unpack
from encspaces.core.head import SignedHead
from encspaces.errors import BodyDigestError, ChainError, ForkError
from encspaces_relay.server import RelayServer
from tests.support import ForkingRelay


class TamperingRelay(RelayServer):
    """Flips one byte of the ciphertext of every data entry it serves."""

    def encode_entries_frame(self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead) -> bytes:
        tampered = []
        for raw in entries:
            header, body_hash, signature, body = unpack(raw)
            if body and first_seq > 1:
                body = body[:-1] + bytes([body[-1] ^ 1])
            tampered.append(pack([header, body_hash, signature, body]))
        return super().encode_entries_frame(space, first_seq, tampered, head)


class DroppingRelay(RelayServer):
    """Drops the first live frame after seq 2, then serves the rest."""

    dropped = False

    def frames_for_entries(
        self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
    ) -> Sequence[bytes]:
        if first_seq > 2 and not self.dropped:
            self.dropped = True
            return []
        return super().frames_for_entries(space, first_seq, entries, head)


async def test_tampered_ciphertext_is_caught(make_relay: RelayFactory) -> None:
    relay = await make_relay(cls=TamperingRelay)
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.send_submit([space.data(space.creator, b"secret")])
    with pytest.raises(BodyDigestError):
        while True:
            await alice.recv()


async def test_dropped_frame_is_caught(make_relay: RelayFactory) -> None:
    relay = await make_relay(cls=DroppingRelay)
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.submit([space.data(space.creator, b"one")])  # seq 2, served
    await alice.submit([space.data(space.creator, b"two")])  # seq 3, its frame dropped
    await alice.send_submit([space.data(space.creator, b"three")])  # seq 4 shows the gap
    with pytest.raises(ChainError, match="missing"):
        while True:
            await alice.recv()


async def test_forked_anchor_is_caught(make_relay: RelayFactory) -> None:
    relay = await make_relay(cls=ForkingRelay)
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.close()
    with pytest.raises(ForkError):
        await join(url_of(relay), space, space.creator, verifier=alice.verifier)
