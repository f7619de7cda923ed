"""Which local-store transactions are fsynced: everything a power loss must not take back.

``flush()`` rests on the outbox row being on disk; an edit that leaves beside its write, on the
session's nonce being on disk before (meta); forgotten keys rest on redactions and purges
staying done; the invite secret on meta. Received entries,
outbox clean-up and checkpoints can be fetched or rebuilt again, so they commit without an
fsync (still durable against a kill of the process: WAL).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from encspaces.errors import StoreError
from encspaces.store import LocalStore

FULL, NORMAL = 2, 1


async def synchronous_after(store: LocalStore, **write: Any) -> int:
    await store.write(**write)
    rows = await store._rows("PRAGMA synchronous", ())  # the connection's own setting, read on its thread
    return int(rows[0][0])


@pytest.mark.parametrize(("write", "expected"), [
    ({"outbox_add": [(1, b"entry")]}, FULL),
    ({"outbox_add": [(2, b"entry")], "log": [(1, b"raw", b"h" * 32)]}, FULL),
    ({"outbox_reset": True}, FULL),
    ({"meta": {"invite": b"secret"}}, FULL),
    ({"meta": {"sessions": b"\x91\xc4\x08nonce-08"}}, FULL),
    ({"redactions": [(1, b"blanked")]}, FULL),
    ({"purge": True}, FULL),
    ({"log": [(1, b"raw", b"h" * 32)]}, NORMAL),
    ({"outbox_done_through": 1}, NORMAL),
    ({"checkpoint": (1, b"verifier", b"document")}, NORMAL),
])
async def test_a_transaction_is_fsynced_exactly_when_it_must_survive_power_loss(
    tmp_path: Path, write: dict[str, Any], expected: int
) -> None:
    async with await LocalStore.open(tmp_path, "ab" * 16) as store:
        # From either mode to the expected one: the mode of the previous write never leaks.
        assert await synchronous_after(store, log=[(9, b"raw", b"h" * 32)]) == NORMAL
        assert await synchronous_after(store, **write) == expected
        assert await synchronous_after(store, outbox_add=[(7, b"entry")]) == FULL
        assert await synchronous_after(store, **write) == expected


async def test_what_was_committed_without_fsync_is_there_after_reopening(tmp_path: Path) -> None:
    async with await LocalStore.open(tmp_path, "cd" * 16) as store:
        await store.write(outbox_add=[(1, b"mine")])
        await store.write(log=[(1, b"raw", b"h" * 32)], outbox_done_through=1)
    async with await LocalStore.open(tmp_path, "cd" * 16) as store:
        assert await store.load_log() == [(1, b"raw", b"h" * 32)]
        assert await store.load_outbox() == []


async def test_a_closed_store_refuses_every_call_and_closes_again_quietly(tmp_path: Path) -> None:
    store = await LocalStore.open(tmp_path, "ef" * 16)
    await store.write(outbox_add=[(1, b"mine")])
    await store.close()
    await store.close()
    with pytest.raises(StoreError):
        await store.load_outbox()
    with pytest.raises(StoreError):
        await store.write(log=[(1, b"raw", b"h" * 32)])


async def test_then_runs_once_the_transaction_committed_and_its_error_is_the_writes(tmp_path: Path) -> None:
    async with await LocalStore.open(tmp_path, "12" * 16) as store:
        seen: list[list[tuple[int, bytes, bytes]]] = []

        def then() -> None:  # on the loop, the commit done: another connection reads the row
            with sqlite3.connect(store.path) as other:
                seen.append(other.execute("SELECT seq, raw, head FROM log").fetchall())

        await store.write(log=[(1, b"raw", b"h" * 32)], then=then)
        assert seen == [[(1, b"raw", b"h" * 32)]]

        def fails() -> None:
            raise RuntimeError("after the commit")

        with pytest.raises(RuntimeError, match="after the commit"):
            await store.write(log=[(2, b"raw", b"h" * 32)], then=fails)
        assert [seq for seq, _, _ in await store.load_log()] == [1, 2]  # committed all the same
