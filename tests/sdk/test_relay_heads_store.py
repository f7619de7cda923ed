"""The local store's relay-signed heads stay bounded, and every verified seq keeps a head near above it."""

from __future__ import annotations

from pathlib import Path

from encspaces.store import HEAD_BUCKET, HEAD_WINDOW, LocalStore


async def test_old_heads_are_thinned_to_one_per_bucket(tmp_path: Path) -> None:
    store = await LocalStore.open(tmp_path, "ab" * 32)
    try:
        newest = 20_000
        # One head per frame of three entries, as a busy space's frames might come.
        await store.write(heads=[(seq, b"signed %d" % seq, b"s") for seq in range(3, newest + 1, 3)])
        await store.write(prune_heads_below=newest - HEAD_WINDOW)
        seqs = [seq for seq, _, _ in await store.load_relay_heads()]
    finally:
        await store.close()
    window = [s for s in seqs if s >= newest - HEAD_WINDOW]
    assert len(window) == len(range(newest - HEAD_WINDOW + (-(newest - HEAD_WINDOW)) % 3, newest + 1, 3))
    older = [s for s in seqs if s < newest - HEAD_WINDOW]
    assert len(older) <= (newest - HEAD_WINDOW) // HEAD_BUCKET + 1
    # Every seq below the window has a kept head at most two buckets above it.
    for seq in range(1, newest - HEAD_WINDOW):
        above = next(s for s in seqs if s >= seq)
        assert above - seq < 2 * HEAD_BUCKET


async def test_heads_past_the_log_are_bounded_and_dropped_once_reached(tmp_path: Path) -> None:
    from encspaces.store import HEADS_AHEAD_KEPT

    store = await LocalStore.open(tmp_path, "cd" * 32)
    try:
        await store.write(heads_ahead=[(seq, b"signed %d" % seq, b"s", "ack") for seq in range(10, 110)])
        await store.write(heads_ahead=[(109, b"other", b"s", "welcome")])  # the first one per seq stays
        rows = await store.load_heads_ahead()
        assert [seq for seq, _, _, _ in rows] == list(range(110 - HEADS_AHEAD_KEPT, 110))
        assert rows[-1] == (109, b"signed 109", b"s", "ack")
        await store.write(heads_ahead_through=100)
        assert [seq for seq, _, _, _ in await store.load_heads_ahead()] == list(range(101, 110))
    finally:
        await store.close()
