"""Bursts of local edits through a real relay: their entries are read from the document (not
merged), a batch full at ``max_batch_count`` leaves once the event loop turns, and every member
ends with the same text, with others' turns applied between the bursts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import encspaces
from encspaces import local_batch

from .conftest import RelayHandle, make_members, settle

WORDS = ["hello ", "wörld ", "中文 ", "😀", "x", "\n"]


@contextmanager
def counting() -> Iterator[dict[str, int]]:
    """How many batches were read from the document and how many merged."""
    counts = {"read": 0, "merged": 0}
    read, merge_within = local_batch.LocalBatch._read, local_batch._merged_within

    def counted_read(*args: object) -> list[bytes] | None:
        out = read(*args)  # type: ignore[arg-type]
        counts["read"] += out is not None
        return out

    def counted_merge(updates: list[bytes], limit: int) -> list[bytes]:
        counts["merged"] += 1
        return merge_within(updates, limit)

    local_batch.LocalBatch._read = staticmethod(counted_read)  # type: ignore[method-assign,assignment]
    local_batch._merged_within = counted_merge
    try:
        yield counts
    finally:
        local_batch.LocalBatch._read = staticmethod(read)  # type: ignore[method-assign]
        local_batch._merged_within = merge_within


def burst(text: encspaces.SharedText, rng: random.Random, keystrokes: int) -> None:
    """Typing without yielding to the event loop: inserts near a cursor, some deletes."""
    cursor = rng.randrange(len(text) + 1)
    for _ in range(keystrokes):
        if len(text) and rng.random() < 0.15:
            cursor = max(0, min(cursor, len(text)) - 1)
            text.delete(cursor, 1)
        else:
            cursor = min(cursor, len(text))
            word = rng.choice(WORDS)
            text.insert(cursor, word)
            cursor += len(word)


async def test_bursts_in_turns_are_read_from_the_document_and_converge(relay: RelayHandle, tmp_path: Path) -> None:
    _, members = await make_members(relay.url, tmp_path, 2)
    rng = random.Random(11)
    try:
        texts = [m.text("doc") for m in members]
        with counting() as counts:
            for turn in range(6):
                me, other = members[turn % 2], members[(turn + 1) % 2]
                await me.wait_for_seq(other.seq)  # the other's burst applied: the next one starts here
                burst(texts[turn % 2], rng, 400)
                await me.sync()
            await settle(members)
        assert str(texts[0]) == str(texts[1]) and len(texts[0]) > 1000
        assert counts == {"read": 6, "merged": 0}
    finally:
        for m in members:
            await m.close()


async def test_a_full_batch_leaves_when_the_loop_turns(relay: RelayHandle, tmp_path: Path) -> None:
    """``max_batch_count`` reached inside a transaction's commit: the batch leaves on the next
    turn of the event loop, with whatever was typed before it turned, read from the document."""
    options = encspaces.SpaceOptions(max_batch_count=300)
    _, members = await make_members(relay.url, tmp_path, 2, options)
    writer, reader = members
    try:
        text = writer.text("doc")
        with counting() as counts:
            burst(text, random.Random(3), 1000)
            assert counts == {"read": 0, "merged": 0}  # nothing left during the burst
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert counts == {"read": 1, "merged": 0}  # then one entry for the 1000 transactions
            burst(text, random.Random(4), 500)
            await settle(members)
        assert counts == {"read": 2, "merged": 0}
        assert str(reader.text("doc")) == str(text)
    finally:
        for m in members:
            await m.close()
