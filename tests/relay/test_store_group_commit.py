"""The relay store commits appends of different spaces together: one transaction, one fsync."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from relay_kit import SpaceBuilder

import encspaces_relay.store as store_module
from encspaces.core import crypto
from encspaces.core.head import SignedHead, next_head
from encspaces_relay.head_signer import HeadSigner
from encspaces_relay.store import EntryRow, Store

KEY = nacl.signing.SigningKey.generate()
RELAY = bytes(KEY.verify_key)


def row(seq: int) -> EntryRow:
    return EntryRow(seq, b"a" * 32, seq, os.urandom(32), os.urandom(32), os.urandom(100))


async def new_space(store: Store) -> bytes:
    space = os.urandom(32)
    await store.create_space(space, row(1), SignedHead.create(KEY, space, 1, os.urandom(32)))
    return space


async def test_appends_of_many_spaces_share_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await Store.open(tmp_path)
    spaces = [await new_space(store) for _ in range(3)]
    transactions: list[int] = []
    original = Store._transaction

    async def counted(self: Store, *statements: Any) -> None:
        transactions.append(len(statements[0][1]))
        await original(self, *statements)

    monkeypatch.setattr(Store, "_transaction", counted)
    signer = HeadSigner(KEY)
    rows = {space: [row(2), row(3), row(4)] for space in spaces}
    async with store._write_lock:  # a transaction is running: the three appends queue behind it
        appends = [asyncio.ensure_future(store.append(space, rows[space], [1, 3], signer)) for space in spaces]
        await asyncio.sleep(0.01)
        assert not any(a.done() for a in appends)  # nothing is acknowledged before it is written
    signed = await asyncio.gather(*appends)
    assert transactions == [9]  # one transaction holding the three spaces' rows
    # The transaction's heads (one after each frame: seqs 2 and 4) share one signature.
    assert (signer.signatures, signer.heads) == (1, 6)
    assert len({head.signature[:crypto.SIGNATURE_SIZE] for heads in signed for head in heads}) == 1
    for space, heads in zip(spaces, signed, strict=True):
        assert [(h.space, h.seq, h.head) for h in heads] == [(space, 2, rows[space][0].head),
                                                             (space, 4, rows[space][2].head)]
        for head in heads:
            head.check(RELAY, space)
    await store.close()
    store = await Store.open(tmp_path)
    for space, heads in zip(spaces, signed, strict=True):
        found = await store.tail(space, 1)
        assert found is not None
        assert [r.seq for r in found[0]] == [2, 3, 4] and found[1] == heads[-1]  # the head stored is the last
    await store.close()


async def test_an_append_must_cut_its_rows_into_frames(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    space = await new_space(store)
    for ends in ([], [2], [1, 1, 3], [0, 3], [2, 1, 3], [1, 4]):
        with pytest.raises(ValueError, match="do not cut 3 rows"):
            await store.append(space, [row(2), row(3), row(4)], ends, HeadSigner(KEY))
    await store.close()


async def test_a_failed_group_commit_fails_every_append_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await Store.open(tmp_path)
    spaces = [await new_space(store) for _ in range(2)]

    async def broken(self: Store, *statements: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Store, "_transaction", broken)
    async with store._write_lock:
        appends = [asyncio.ensure_future(store.append(s, [row(2)], [1], HeadSigner(KEY)))
                   for s in spaces]
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*appends, return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]
    monkeypatch.undo()
    await store.close()



def chain(n: int) -> tuple[bytes, list[EntryRow]]:
    """A real space of ``n`` entries (genesis and data) as the store keeps them."""
    builder = SpaceBuilder(KEY.verify_key.encode())
    entries = [builder.genesis] + [builder.data(builder.creator, b"x") for _ in range(n - 1)]
    rows, head = [], crypto.ZERO_HASH
    for seq, entry in enumerate(entries, 1):
        head = next_head(head, seq, entry.digest())
        rows.append(EntryRow(seq, entry.header.author, entry.header.author_seq, entry.digest(), head, entry.raw))
    return builder.space, rows


async def test_a_space_loading_never_hides_what_another_space_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a big space reads in pages; a catch-up on the same reader connection meanwhile
    must see entries committed after the load began (it used to see the load's old snapshot,
    and the relay refused the newcomer: "the relay's store has no entry at seq 1")."""
    monkeypatch.setattr(store_module, "_LOAD_CHUNK", 1)
    store = await Store.open(tmp_path)
    big, rows = chain(300)
    await store.create_space(big, rows[0], SignedHead.create(KEY, big, 1, rows[0].head))
    await store.append(big, rows[1:], [len(rows) - 1], HeadSigner(KEY))
    loading = asyncio.ensure_future(store.load_space(big))
    seen: list[int] = []
    while not loading.done():
        space = await new_space(store)  # committed while the load is under way
        seen.append(len(await store.read_entries(space, 1, 1, 1 << 20)))
    loaded = await loading
    assert loaded is not None and loaded.state.seq == 300
    assert seen and all(n == 1 for n in seen), seen
    await store.close()


async def test_a_group_commit_that_fails_stores_nothing_and_the_next_one_works(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    a, b = await new_space(store), await new_space(store)
    async with store._write_lock:  # both appends land in one transaction; a's repeats seq 1
        bad = asyncio.ensure_future(store.append(a, [row(1)], [1], HeadSigner(KEY)))
        good = asyncio.ensure_future(store.append(b, [row(2)], [1], HeadSigner(KEY)))
        await asyncio.sleep(0.01)
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert len(await store.read_entries(b, 1, 10, 1 << 20)) == 1  # rolled back: b's row is not there
    await store.append(b, [row(2)], [1], HeadSigner(KEY))
    assert len(await store.read_entries(b, 1, 10, 1 << 20)) == 2
    await store.close()
