"""The removal window: a relay that withholds a removal cannot keep a member writing under the old key.

The lying relay sequences Alice's removal of Carol (epoch 2) but delivers no frame from then on
and silently swallows Bob's submissions (reading them, as a relay colluding with Carol would:
they are under epoch 1, whose key Carol holds). Bob's view stops getting fresher; once it is
older than the freshness limit (his injected clock jumps past it) he sends nothing more,
reconnects for a freshly signed welcome, and,
as the catch-up never comes, stays held. His edits stay in the stored outbox and, once an honest
relay serves the removal, are re-issued under epoch 2 and reach Alice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from encspaces import ManualClock, SpaceOptions
from encspaces.core.head import SignedHead
from encspaces_relay.room import Submission
from encspaces_relay.server import RelayServer
from tests.support import InterceptingRelay, RelayHandle, swallow

from .conftest import make_members, settle, wait_for


class WithholdingRelay(InterceptingRelay):
    withhold_from = 0  # from this seq on, no frame is delivered (0: honest)

    def frames_for_entries(
        self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
    ) -> Sequence[bytes]:
        if self.withhold_from and first_seq + len(entries) - 1 >= self.withhold_from:
            return []
        return super().frames_for_entries(space, first_seq, entries, head)


async def test_withheld_removal_bounds_old_epoch_writes(tmp_path: Path) -> None:
    clock = ManualClock()  # every member's: only the jump below makes a view stale, never the machine's speed
    options = SpaceOptions(clock=clock)
    handle = RelayHandle(tmp_path / "relay", WithholdingRelay)
    server = await handle.start()
    assert isinstance(server, WithholdingRelay)
    swallowed: list[Submission] = []  # bob's submissions, read and dropped
    (_, bob_id, carol_id), (alice, bob, carol) = await make_members(handle.url, tmp_path, 3, options)
    bob.text("doc").insert(0, "b0.")
    await settle([alice, bob, carol])

    server.withhold_from = alice.seq + 1
    server.intercept = swallow(bob_id.public.sign_key, swallowed)
    removal = asyncio.create_task(alice.remove_member(carol_id.public, revoke_invites=False))
    await wait_for(lambda: server.rooms[alice.space_bytes].state.epoch == 2, "the relay to sequence the removal")

    # Bob keeps typing; until his view is stale his entries go out under epoch 1 (the window).
    i = 1
    for _ in range(3):
        bob.text("doc").insert(len(str(bob.text("doc"))), f"b{i}.")
        await bob.flush()
        i += 1
    await wait_for(lambda: len(swallowed) > 0, "the window: bob's entries under epoch 1 are sent")
    clock.advance(options.freshness_limit + 1)  # no signed head since is fresh enough any more
    bob.text("doc").insert(len(str(bob.text("doc"))), f"b{i}.")
    await bob.flush()
    i += 1
    # stale: he reconnects for a fresher view, and the catch-up is withheld
    await wait_for(lambda: not bob.connected, "bob to reconnect for a fresher view")
    assert swallowed, "the window: entries under epoch 1 before the view went stale"
    assert not bob.connected
    sent_before = len(swallowed)
    for _ in range(20):
        bob.text("doc").insert(len(str(bob.text("doc"))), f"b{i}.")
        await bob.flush()
        i += 1
        await asyncio.sleep(0.02)
    assert len(swallowed) == sent_before, "nothing is sent while the view is stale"
    assert all(e.header.epoch == 1 for s in swallowed for e in s.entries)
    assert bob.unsent > 0 and bob.epoch == 1
    assert server.rooms[alice.space_bytes].state.author_seqs.get(bob_id.public.sign_key) == 1  # none stored

    # An honest relay on the same store: the removal arrives, Bob's held edits are re-issued under epoch 2.
    clock.advance(-(options.freshness_limit + 1))  # the clocks agree again: fresh heads are fresh
    await handle.stop()
    handle.cls = RelayServer
    await handle.start()
    await asyncio.wait_for(removal, 30)
    await bob.sync()
    await alice.wait_for_seq(bob.seq)
    assert bob.epoch == alice.epoch == 2
    expected = "".join(f"b{n}." for n in range(i))
    assert str(alice.text("doc")) == str(bob.text("doc")) == expected
    assert alice.error is None and bob.error is None
    for space in (alice, bob, carol):
        await space.close()
    await handle.stop()
