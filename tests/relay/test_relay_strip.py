"""A catch-up that strips bodies reads only the entries' first bytes, and sends what stripping whole entries would."""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing

from encspaces.core import crypto
from encspaces.core.entry import STRIP_PREFIX, Entry, Kind, build_entry, strip_prefix, strip_raw
from encspaces.core.head import SignedHead
from encspaces.core.identity import Identity
from encspaces_relay.head_signer import HeadSigner
from encspaces_relay.storage import RelayStore
from encspaces_relay.store import EntryRow, Store

KEY = nacl.signing.SigningKey.generate()


def entries() -> list[bytes]:
    """Bodies above and below the prefix, a control entry longer than it, one already stripped."""
    author = Identity.generate()
    key = crypto.random_key()

    def make(seq: int, kind: Kind, payload: bytes) -> Entry:
        return build_entry(author, space=bytes(32), author_seq=seq, epoch=1, kind=kind, parent_seq=seq - 1,
                           parent_hash=bytes(32), payload=payload, epoch_key=key if kind.is_encrypted else None)

    big_control = make(3, Kind.POLICY, os.urandom(3 * STRIP_PREFIX))
    return [make(1, Kind.DATA, os.urandom(4000)).raw, make(2, Kind.DATA, b"x").raw, big_control.raw,
            make(4, Kind.SNAPSHOT, os.urandom(2000)).raw, make(5, Kind.DATA, os.urandom(900)).strip(),
            make(6, Kind.ATTEST, b"small").raw]


async def check_prefix_reads(store: RelayStore) -> None:
    raws = entries()
    space = os.urandom(32)
    rows = [EntryRow(seq, bytes(32), seq, Entry.decode(raw).digest(), os.urandom(32), raw)
            for seq, raw in enumerate(raws, 1)]
    await store.create_space(space, rows[0], SignedHead.create(KEY, space, 1, rows[0].head))
    await store.append(space, rows[1:], [len(rows) - 1], HeadSigner(KEY))
    prefixes = await store.read_prefixes(space, 1, len(raws), STRIP_PREFIX)
    assert [size for _, size in prefixes] == [len(raw) for raw in raws]
    stripped = [strip_prefix(prefix, size) for prefix, size in prefixes]
    assert stripped[2] is None  # a control entry cut short: the caller reads it whole
    assert [raw for raw in stripped if raw is not None] == [strip_raw(raw) for i, raw in enumerate(raws) if i != 2]
    for raw, whole in zip(stripped, raws, strict=True):
        if raw is not None:
            entry = Entry.decode(raw)
            assert entry.digest() == Entry.decode(whole).digest()  # the chain is unchanged
            assert entry.stripped == entry.header.kind.is_encrypted
            entry.check_signature()


async def test_prefix_reads_strip_like_whole_entries(tmp_path: Path) -> None:
    store = await Store.open(tmp_path)
    try:
        await check_prefix_reads(store)
    finally:
        await store.close()
