"""The relay store commits appends of different spaces together: one transaction, one fsync."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from encspaces.head import SignedHead
from relay.store import EntryRow, Store

KEY = nacl.signing.SigningKey.generate()


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
    heads = {space: SignedHead.create(KEY, space, 2, os.urandom(32)) for space in spaces}
    async with store._write_lock:  # a transaction is running: the three appends queue behind it
        appends = [asyncio.ensure_future(store.append(space, [row(2)], heads[space])) for space in spaces]
        await asyncio.sleep(0.01)
        assert not any(a.done() for a in appends)  # nothing is acknowledged before it is written
    await asyncio.gather(*appends)
    assert transactions == [3]  # one transaction holding the three spaces' rows
    await store.close()
    store = await Store.open(tmp_path)
    for space in spaces:
        rows = await store.read_entries(space, 1, 10, 1 << 20)
        assert len(rows) == 2
    await store.close()


async def test_a_failed_group_commit_fails_every_append_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await Store.open(tmp_path)
    spaces = [await new_space(store) for _ in range(2)]

    async def broken(self: Store, *statements: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Store, "_transaction", broken)
    async with store._write_lock:
        appends = [asyncio.ensure_future(store.append(s, [row(2)], SignedHead.create(KEY, s, 2, os.urandom(32))))
                   for s in spaces]
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*appends, return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError]
    monkeypatch.undo()
    await store.close()
