"""This device's copy of a space, read from its local store without the relay.

``load_stored_log`` reads the verified log as stored (and the epoch keys of the newest
checkpoint); ``reverify_local`` re-verifies it from genesis (``encspaces.core.reverify``). Neither
connects, writes or creates anything: a data dir that holds no copy of the space raises
``StoreError``. ``open_local`` (in ``encspaces.space``) gives the shared objects themselves.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from .core import crypto
from .core.encoding import as_bytes, as_int, as_list, unpack
from .core.identity import Identity, decode_space_id
from .core.reverify import Reverification, reverify_log
from .core.verifier import LogVerifier
from .errors import EncspacesError, ProtocolError, StoreError
from .store import ANCHOR_META, EVIDENCE_META, STORE_FILE, LocalStore


@dataclass(frozen=True)
class StoredLog:
    """The verified log this device stored for one space, and the epoch keys its checkpoint holds."""

    space: bytes
    rows: list[tuple[int, bytes, bytes]]  # (seq, raw entry, head at seq), in log order
    keys: dict[int, bytes] = field(default_factory=dict)  # epoch -> key, from the newest checkpoint
    # The relay-signed heads this device kept (seq, signed_bytes, signature), re-checked by ``reverify_local``.
    relay_heads: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    # The newest cosigned checkpoint notes the device verified (one per witness, from its
    # checkpoint's witness state), re-checked by ``reverify_local``.
    checkpoints: list[bytes] = field(default_factory=list)
    # (seq, log state) of the anchor this device started at, whose earlier rows are digests alone
    # (docs/PROTOCOL.md section 14, "Anchors"); None: the rows start at the genesis.
    anchor: tuple[int, bytes] | None = None

    def head_at(self, seq: int) -> bytes | None:
        """The stored head at ``seq`` (None when this device stored no entry there)."""
        if 1 <= seq <= len(self.rows) and self.rows[seq - 1][0] == seq:
            return self.rows[seq - 1][2]
        return None


def require_stored(space_id: str, data_dir: str | Path) -> bytes:
    """The space's id as bytes, once sure ``data_dir`` holds a store of it (else ``StoreError``)."""
    space = decode_space_id(space_id)
    if not (Path(data_dir) / space.hex() / STORE_FILE).exists():
        raise StoreError(f"this device holds no copy of space {space_id} in {data_dir}")
    return space


async def load_stored_log(identity: Identity, space_id: str, *, data_dir: str | Path) -> StoredLog:
    """The log this device verified and stored for ``space_id`` in ``data_dir``, as stored.

    The rows are not verified again here (``reverify_local`` does that). The checkpoint's epoch
    keys are included when its verified state resumes cleanly; an unusable checkpoint only costs
    readability, so it is ignored rather than raised.
    """
    space = require_stored(space_id, data_dir)
    store = await LocalStore.open(data_dir, space.hex())
    try:
        rows = await store.load_log()
        checkpoint = await store.load_checkpoint()
        relay_heads = await store.load_relay_heads()
        anchor = _decode_anchor(await store.get_meta(ANCHOR_META))
    finally:
        await store.close()
    keys: dict[int, bytes] = {}
    notes: list[bytes] = []
    if checkpoint is not None and checkpoint[0] <= len(rows):
        heads = [crypto.ZERO_HASH, *(head for _, _, head in rows[: checkpoint[0]])]
        with contextlib.suppress(EncspacesError):
            resumed = LogVerifier.from_checkpoint(space, identity, checkpoint[1], heads)[0]
            keys = dict(resumed.epoch_keys)
            notes = [] if resumed.tree_missing else resumed.witness.witnessed_checkpoints()
    return StoredLog(space, rows, keys, relay_heads, notes, anchor)


def _decode_anchor(stored: bytes | None) -> tuple[int, bytes] | None:
    if stored is None:
        return None
    try:
        seq, state = as_list(unpack(stored, what="stored anchor"), "stored anchor", 2)
        return as_int(seq, "stored anchor seq", minimum=1), as_bytes(state, "stored anchor state")
    except ProtocolError as exc:
        raise StoreError(f"the anchor this device started at does not decode: {exc}") from exc


async def reverify_local(identity: Identity, space_id: str, *, data_dir: str | Path) -> Reverification:
    """Re-verify this device's stored log of ``space_id`` from genesis (see ``reverify_log``).

    A log that fails verification is reported in the result's ``error``, not raised; an
    unreadable or missing store raises ``StoreError``.
    """
    log = await load_stored_log(identity, space_id, data_dir=data_dir)
    return reverify_log(log.space, identity, log.rows, log.keys, log.relay_heads, log.checkpoints, log.anchor)


async def load_evidence(space_id: str, *, data_dir: str | Path) -> bytes | None:
    """The evidence file (``encspaces.core.evidence``) this device wrote when ``space_id`` failed with
    a fork, rollback or withholding, or None. ``encspaces.core.evidence.check`` verifies it."""
    space = require_stored(space_id, data_dir)
    store = await LocalStore.open(data_dir, space.hex())
    try:
        return await store.get_meta(EVIDENCE_META)
    finally:
        await store.close()


__all__ = ["StoredLog", "load_evidence", "load_stored_log", "require_stored", "reverify_local"]
