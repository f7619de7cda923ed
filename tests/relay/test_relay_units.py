"""The relay's pure parts and files: frame budgets, the key file, the store's chain check."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relay_kit import RawClient, RelayFactory, SpaceBuilder, join, make_hello, url_of

from encspaces.core.head import MAX_HEAD_BATCH, SignedHead
from encspaces.core.messages import Entries
from encspaces.errors import IdentityError, StoreError
from encspaces_relay.frames import max_entry_size, split_frames
from encspaces_relay.keys import KEY_FILE, load_or_create_signing_key, public_key_text
from encspaces_relay.store import DB_FILE, Store

MAX_FRAME = 8192
# The largest signed head a frame can carry: the longest batch seal (8 proof hashes), the
# largest seq and time.
WORST_HEAD = max(
    SignedHead.create_batch(nacl.signing.SigningKey(bytes(32)),
                            [(bytes(32), 2**63 - 1 - i, bytes(32)) for i in range(MAX_HEAD_BATCH)], time_ms=2**63 - 1),
    key=lambda head: len(head.signature))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(sizes=st.lists(st.integers(0, max_entry_size(MAX_FRAME)), min_size=1, max_size=60),
       per_frame=st.integers(1, 20))
def test_split_frames_fit(sizes: list[int], per_frame: int) -> None:
    entries = [bytes(n) for n in sizes]
    ranges = split_frames(entries, MAX_FRAME, per_frame)
    assert [i for start, end in ranges for i in range(start, end)] == list(range(len(entries)))
    for start, end in ranges:
        assert 1 <= end - start <= per_frame
        assert len(Entries(2**63 - 1, entries[start:end], WORST_HEAD).encode()) <= MAX_FRAME


def test_split_frames_refuses_an_entry_that_cannot_fit() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        split_frames([bytes(MAX_FRAME)], MAX_FRAME, 10)


def test_key_created_private_once_and_reused(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "d")
    path = tmp_path / "d" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bytes(load_or_create_signing_key(tmp_path / "d")) == bytes(key)
    assert len(public_key_text(key)) == 43
    assert list((tmp_path / "d").iterdir()) == [path]  # no temporary file left behind
    path.write_bytes(b"short")
    with pytest.raises(IdentityError, match="expected a 32-byte seed"):
        load_or_create_signing_key(tmp_path / "d")


async def test_tampered_store_is_detected(make_relay: RelayFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    relay = await make_relay(data_dir=data)
    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    await alice.submit([space.data(space.creator, b"one"), space.data(space.creator, b"two")])
    await alice.close()
    await relay.stop()

    store = await Store.open(data)
    loaded = await store.load_space(space.space)
    assert loaded is not None and loaded.state.seq == 3
    await store.close()

    with sqlite3.connect(data / DB_FILE) as db:  # the relay's disk, edited behind its back
        raw = space.data(space.creator, b"evil", author_seq=2).raw
        db.execute("UPDATE entries SET raw = ? WHERE seq = 2", (raw,))
    store = await Store.open(data)
    with pytest.raises(StoreError, match="seq 2"):
        await store.load_space(space.space)
    await store.close()

    # the relay refuses to serve it rather than serving a wrong log
    again = await make_relay(data_dir=data)
    client = await RawClient.open(url_of(again))
    await client.send(make_hello(client.challenge, space.creator, space.space).encode())
    await client.expect_refusal("internal")
