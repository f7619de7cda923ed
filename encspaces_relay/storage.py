"""The relay's storage seam: every operation the relay performs on its store, and how to open one.

Two implementations: ``encspaces_relay.store.Store`` (one SQLite file in the data dir, the default, for
one relay process) and ``encspaces_relay.pg_store.PgStore`` (PostgreSQL, for one or several relay
processes sharing the spaces, docs/cluster.md). The relay keeps no state of its own beyond
the log: membership, roles and invites are derived from the entries (``LogState``), so the
store holds the log, the chain head after every entry, the latest signed head of each space,
and the blobs (encrypted file chunks).

The one rule a shared store adds: a commit says which head it extends (the seq before its
first row), and the store refuses it with ``HeadMovedError`` when that is no longer the
newest, atomically with the write. Several relays can then commit to one space and never put
two entries at one seq; the loser reloads and retries (encspaces_relay/room.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from encspaces.core.head import SignedHead
from encspaces.core.log_state import LogState
from encspaces.core.messages import BlobAck, BlobData, BlobGet, BlobMissing, BlobPut, BlobRefused, BlobReply

from .head_signer import HeadSigner
from .store import EntryRow, LoadedSpace
from .tree import StoredNode

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class BlobBackend(Protocol):
    """Where a relay keeps blobs: ``encspaces_relay.blobs.BlobStore`` (files) or
    ``encspaces_relay.pg_blobs.PgBlobStore`` (PostgreSQL)."""

    async def answer(self, state: LogState, member: bytes, request: BlobPut | BlobGet) -> BlobReply: ...

    async def get(self, space: bytes, request: BlobGet) -> BlobData | BlobMissing: ...

    async def put(self, space: bytes, request: BlobPut) -> BlobAck | BlobRefused: ...

    async def usage(self, space: bytes) -> int: ...

    async def total_usage(self) -> int: ...

    def known_total(self) -> int:
        """Bytes stored by all spaces as last counted (0 before the first count): for metrics, no I/O."""
        ...


class RelayStore(Protocol):
    """The durable log of every space a relay serves."""

    @property
    def shared(self) -> bool:
        """True when other relay processes may commit to the same spaces (PostgreSQL)."""
        ...

    @property
    def where(self) -> str:
        """Where the store is, for messages (a path, or a database URL without its password)."""
        ...

    async def close(self) -> None: ...

    async def count_spaces(self) -> int:
        """How many spaces are stored: the health check's proof that the store answers."""
        ...

    async def create_space(self, space: bytes, genesis: EntryRow, signed_head: SignedHead) -> None:
        """Store a new space and its genesis entry atomically; ``SpaceExistsError`` if it is there already."""
        ...

    async def append(
        self, space: bytes, rows: Sequence[EntryRow], ends: Sequence[int], signer: HeadSigner,
        nodes: Sequence[StoredNode] = (),
    ) -> list[SignedHead]:
        """Group commit: the rows (contiguous seqs), the Merkle tree nodes they complete
        (encspaces_relay/tree.py) and the head covering them, in one transaction.

        Returns the heads ``signer`` signed for the commit's frames: one after each of
        ``ends`` (row counts, ascending, the last ``len(rows)``); the last is the one stored.
        They are signed before the transaction, with the other spaces' heads where the store
        writes several spaces in one (one signature for them all).

        Succeeds only if the space's stored head is still at ``rows[0].seq - 1``; otherwise
        ``HeadMovedError`` and nothing is stored. Any other failure stores nothing either
        (or, if the database failed at the commit itself, possibly everything: the relay then
        acknowledges nothing and a resubmission finds what was stored).
        """
        ...

    async def tree_rows(
        self, space: bytes, seqs: Sequence[int], keys: Sequence[int]
    ) -> tuple[dict[int, bytes], dict[int, bytes]]:
        """Leaf digests by seq and stored tree nodes by packed key, of those that exist: what a proof reads."""
        ...

    async def save_checkpoint(self, space: bytes, size: int, note: bytes) -> None:
        """Keep a checkpoint note with its cosignatures (the newest ``KEEP_CHECKPOINTS`` per space)."""
        ...

    async def checkpoints(self, space: bytes) -> list[tuple[int, bytes]]:
        """The stored checkpoints of a space, (size, note), oldest first."""
        ...

    async def read_entries(self, space: bytes, first: int, last: int, max_bytes: int) -> list[bytes]:
        """The raw entries ``first..`` up to ``last``, stopping before ``max_bytes`` (at least one)."""
        ...

    async def read_prefixes(self, space: bytes, first: int, last: int, length: int) -> list[tuple[bytes, int]]:
        """Each entry ``first..last``: its first ``length`` bytes and its whole size (a catch-up that strips).

        A stripped entry is its header, body hash and signature, which an entry's first bytes
        hold; reading only those spares the relay the bodies it would drop.
        """
        ...

    async def find_entry(self, space: bytes, author: bytes, author_seq: int) -> tuple[int, bytes] | None:
        """The seq and raw bytes of an author's entry, to answer a resubmission."""
        ...

    async def load_space(self, space: bytes) -> LoadedSpace | None:
        """The space rebuilt from its entries, its chain checked; None if the store has no such space."""
        ...

    async def tail(self, space: bytes, after_seq: int) -> tuple[list[EntryRow], SignedHead] | None:
        """The rows after ``after_seq`` and the latest signed head (None: no such space).

        How a relay learns what other relays committed to a space it has loaded.
        """
        ...

    async def heads(self, spaces: Sequence[bytes]) -> dict[bytes, int]:
        """The newest stored seq of each of ``spaces`` (those stored): what the bus polls while down."""
        ...

    def blob_store(self, root: Path, *, max_blob_size: int, quota: int, total_quota: int | None) -> BlobBackend:
        """The blob store that goes with this store (``root``: the data dir's blob folder)."""
        ...


def is_postgres(spec: str | None) -> bool:
    return spec is not None and spec.startswith(POSTGRES_SCHEMES)


async def open_store(spec: str | None, data_dir: Path) -> RelayStore:
    """The store ``--store`` names: None (or a path) is SQLite in ``data_dir``, a postgresql:// URL is PostgreSQL."""
    if is_postgres(spec):
        assert spec is not None
        from .pg_store import PgStore  # the driver is an optional extra: imported only when asked for

        return await PgStore.open(spec)
    if spec is not None and Path(spec) != data_dir:
        raise ValueError(f"--store takes a postgresql:// URL (the SQLite store is always in --data-dir), not {spec!r}")
    from .store import Store

    return await Store.open(data_dir)
