"""Heads of several spaces signed together (encspaces_relay/head_signer.py).

The heads one group commit stores share one signature, and so do heads asked for in one pass
of the relay's loop: the unit tests drive the signer alone; the relay tests commit in several
spaces at once through real sockets and check that every member verifies the batched heads,
before and after a restart.
"""

from __future__ import annotations

import asyncio

import nacl.signing
import pytest
from relay_kit import Member, RelayFactory, SpaceBuilder, join, url_of, wait_until

from encspaces.core import crypto
from encspaces.core.head import MAX_HEAD_BATCH
from encspaces.core.identity import Identity
from encspaces_relay.head_signer import HeadSigner
from encspaces_relay.server import RelayServer
from encspaces_relay.store import Store

KEY = nacl.signing.SigningKey(bytes(range(32)))
RELAY = bytes(KEY.verify_key)


def request(i: int) -> tuple[bytes, int, bytes]:
    return crypto.hash_parts(b"space", i), i + 1, crypto.hash_parts(b"head", i)


async def test_heads_asked_in_one_pass_share_one_signature() -> None:
    signer = HeadSigner(KEY)
    heads = await asyncio.gather(*(signer.sign(*request(i)) for i in range(5)))
    assert (signer.signatures, signer.heads, signer.waiting) == (1, 5, 0)
    assert len({h.signature[:crypto.SIGNATURE_SIZE] for h in heads}) == 1
    for i, head in enumerate(heads):
        assert (head.space, head.seq, head.head) == request(i)
        head.check(RELAY, head.space)


async def test_heads_asked_in_separate_passes_are_signed_apart_and_plainly() -> None:
    signer = HeadSigner(KEY)
    first = await signer.sign(*request(0))
    second = await signer.sign(*request(1))
    assert (signer.signatures, signer.heads) == (2, 2)
    assert len(first.signature) == len(second.signature) == crypto.SIGNATURE_SIZE


async def test_more_heads_than_a_batch_holds_take_more_signatures() -> None:
    signer = HeadSigner(KEY)
    heads = await asyncio.gather(*(signer.sign(*request(i)) for i in range(MAX_HEAD_BATCH + 1)))
    assert (signer.signatures, signer.heads) == (2, MAX_HEAD_BATCH + 1)
    for head in heads[MAX_HEAD_BATCH - 2:]:
        head.check(RELAY, head.space)


def test_heads_signed_at_once_take_one_signature_per_full_batch() -> None:
    signer = HeadSigner(KEY)
    heads = signer.sign_now([request(i) for i in range(MAX_HEAD_BATCH + 2)])
    assert (signer.signatures, signer.heads, signer.waiting) == (2, MAX_HEAD_BATCH + 2, 0)
    assert [(h.space, h.seq, h.head) for h in heads] == [request(i) for i in range(MAX_HEAD_BATCH + 2)]
    assert len({h.signature[:crypto.SIGNATURE_SIZE] for h in heads}) == 2
    for head in heads[MAX_HEAD_BATCH - 1:]:
        head.check(RELAY, head.space)
    assert signer.sign_now([]) == [] and signer.signatures == 2


async def test_a_commit_that_stopped_waiting_does_not_stop_the_others() -> None:
    signer = HeadSigner(KEY)
    gone, kept = signer.sign(*request(0)), signer.sign(*request(1))
    gone.cancel()
    (await kept).check(RELAY, request(1)[0])
    assert signer.heads == 2


async def _spaces(relay: RelayServer, count: int) -> list[tuple[SpaceBuilder, Member]]:
    spaces = []
    for _ in range(count):
        space = SpaceBuilder(relay.public_key)
        spaces.append((space, await join(url_of(relay), space, space.creator, create=True)))
    return spaces


@pytest.mark.parametrize("count", [2, 5])
async def test_spaces_committing_at_once_get_one_signature_that_every_member_verifies(
        make_relay: RelayFactory, count: int) -> None:
    relay = await make_relay()
    store, signer = relay.store, relay.head_signer
    assert isinstance(store, Store)
    spaces = await _spaces(relay, count)
    readers = []
    for space, creator in spaces:
        reader = Identity.generate()
        await creator.submit([space.add_member(reader)])
        readers.append(await join(url_of(relay), space, reader))
    before = signer.signatures
    async with store._write_lock:  # a transaction is running: every space's commit queues behind it
        for space, creator in spaces:
            await creator.send_submit([space.data(creator.identity, b"at once")])
        await wait_until(lambda: store.waiting == count, "every space's commit to reach the store")
        assert signer.signatures == before  # signed by the group commit, not before it
    for (_, creator), reader in zip(spaces, readers, strict=True):
        ack = await creator.next_ack()
        (_, seq), = ack.results
        await reader.sync_to(seq)  # its verifier checks the frame under the batch's signature
        frame = reader.frames[-1]
        assert frame.head.seq == seq and len(frame.head.signature) > crypto.SIGNATURE_SIZE
        assert ack.head is not None and ack.head.signature == frame.head.signature
    assert signer.signatures == before + 1
    # A device arriving later catches up from the store, and a restarted relay reloads the
    # batched heads it stored.
    await relay.stop()
    again = await make_relay(data_dir=relay.config.data_dir)
    for (space, creator), reader in zip(spaces, readers, strict=True):
        late = await join(url_of(again), space, reader.identity)
        assert late.seq == reader.seq
        for member in (creator, reader):
            await member.close()
        await late.close()
