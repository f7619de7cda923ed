"""A relay can neither read a presence message's head claim nor replay an old message.

The lying relay is the real RelayServer with its presence hook overridden, over a real websocket:
it records every presence frame it forwards and, once armed, forwards a member's oldest message
in place of their newest.
"""

from __future__ import annotations

from pathlib import Path

from encspaces.core.encoding import unpack
from encspaces.core.messages import Presence
from encspaces_relay.server import RelayServer

from .conftest import RelayHandle, make_members, wait_for


class ReplayingRelay(RelayServer):
    seen: list[tuple[bytes, bytes]]  # (author, frame) of every presence message forwarded
    replay_from: bytes | None = None  # this member's next message is swapped for their oldest

    def encode_presence(self, space: bytes, presence: Presence) -> bytes:
        header = unpack(unpack(presence.data)[0])
        author = header[2]  # the routing header: version, space, author, epoch, nonce
        frame = super().encode_presence(space, presence)
        self.seen.append((author, frame))
        if author == self.replay_from:
            return next(old for who, old in self.seen if who == author)
        return frame


async def test_a_replayed_presence_message_is_dropped_and_the_claim_is_sealed(tmp_path: Path) -> None:
    handle = RelayHandle(tmp_path / "relay", ReplayingRelay)
    server = await handle.start()
    assert isinstance(server, ReplayingRelay)
    server.seen = []
    (alice_id, _), (alice, bob) = await make_members(handle.url, tmp_path, 2)
    me = alice_id.public.sign_key
    try:
        alice.presence.set({"cursor": 1})
        await wait_for(lambda: bob.presence.peers.get(alice_id.member_id) == {"cursor": 1},
                       what="bob to see alice's first cursor")
        first_seq = bob.presence.peer_seqs[alice_id.member_id]
        alice.text("doc").insert(0, "moves the log on")
        await alice.sync()
        await bob.wait_for_seq(alice.seq)
        alice.presence.set({"cursor": 2})
        await wait_for(lambda: bob.presence.peers.get(alice_id.member_id) == {"cursor": 2},
                       what="bob to see alice's second cursor")
        await wait_for(lambda: bob.presence.peer_seqs[alice_id.member_id] == alice.seq,
                       what="bob to see the head alice claims now")
        assert alice.seq > first_seq
        assert bob.presence.replays_dropped == 0

        server.replay_from = me  # Alice's next message is replaced by her first one
        alice.presence.set({"cursor": 3})
        await wait_for(lambda: bob.presence.replays_dropped >= 1, what="bob to drop the replayed message")
        assert bob.presence.peers[alice_id.member_id] == {"cursor": 2}  # not back to 1
        assert bob.presence.peer_seqs[alice_id.member_id] == alice.seq  # her head did not go back either
        assert bob.error is None and alice.error is None

        # What the relay saw of Alice's messages: neither the head she claimed (its hash or its
        # signed bytes) nor her state.
        claimed = alice.head
        frames = [frame for who, frame in server.seen if who == me]
        assert len(frames) >= 3
        for frame in frames:
            assert claimed not in frame
            assert b"cursor" not in frame
        assert server.seen[0][1].find(me) >= 0  # (the routing header is in clear: it names the sender)
    finally:
        await alice.close()
        await bob.close()
        await handle.stop()
