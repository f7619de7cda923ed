"""Snapshots: the whole document at one seq, so a new device need not replay the whole log.

A snapshot is an ordinary encrypted, signed entry; the state it holds is the document once
the log reached the entry's parent seq (public in its header, so the relay knows which older
bodies a device starting from it can do without). Its author is a member, not the relay, but
a member can be wrong or lie, so the snapshot also carries a hash of the *content* (every
object's value, formatting included), and every member that saw the document at that seq
compares. A content hash, unlike the Yjs state bytes, is the same on every device that holds
the same document, however it got there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pycrdt

from .core import crypto
from .core.client_ids import decode_owners, encode_owners
from .core.encoding import as_bytes, as_int, as_map, field, pack, unpack
from .core.log_state import LogState
from .errors import ProtocolError
from .shared.kinds import parse_root_name
from .shared.values import canonical

PAYLOAD_VERSION = 2  # 2: with the first writers of client ids (spaces that bind them); 1: without
GRANULARITY = 100  # members note the content at the end of each frame crossing a multiple of this

Owners = dict[int, bytes]  # Yjs client id -> the device key that first wrote under it (core/client_ids.py)


@dataclass(frozen=True)
class SnapshotPayload:
    state: bytes  # the document's full state (a Yjs update)
    content: bytes  # content_hash of that state
    # In a space that binds client ids, who first wrote under each client id in the log up to the
    # snapshot's base: a device that starts from the snapshot applies the first-writer rule as
    # the devices that replayed the log do. None: a version 1 payload (spaces that do not).
    owners: Owners | None = None

    def encode(self) -> bytes:
        if self.owners is None:
            return pack({"v": 1, "state": self.state, "content": self.content})
        return pack({"v": PAYLOAD_VERSION, "state": self.state, "content": self.content,
                     "owners": encode_owners(self.owners)})

    @classmethod
    def decode(cls, data: bytes) -> SnapshotPayload:
        m = as_map(unpack(data, max_size=1 << 30, what="snapshot"), "snapshot")
        version = as_int(field(m, "v", "snapshot"), "snapshot version")
        if version not in (1, PAYLOAD_VERSION):
            raise ProtocolError(f"snapshot: unknown version {version}")
        owners: Owners | None = None
        if version == PAYLOAD_VERSION:
            owners = decode_owners(field(m, "owners", "snapshot"), "snapshot owners")
        return cls(as_bytes(field(m, "state", "snapshot"), "snapshot state"),
                   as_bytes(field(m, "content", "snapshot"), "snapshot content hash", crypto.HASH_SIZE), owners)


def owners_digest(owners: Owners) -> bytes:
    """A hash of a first-writer map, to compare one noted at a seq with a snapshot's."""
    return crypto.hash_parts(crypto.CTX_SNAPSHOT_OWNERS, pack(sorted(owners.items())))


def snapshot_payload(doc_state: bytes, content: bytes, bound: bool, owners: Owners) -> bytes:
    """A snapshot of a document whose first writers are ``owners`` (carried where ``bound``)."""
    return SnapshotPayload(doc_state, content, dict(owners) if bound else None).encode()


def content_hash(doc: pycrdt.Doc[Any]) -> bytes:
    """A hash of what every object holds (texts with their formatting), independent of history.

    Total: whatever state another member's updates produced (numbers of any size, embeds,
    XML, sub-documents, nesting of any depth), it hashes without raising, the same on every
    device that holds the same content (see ``encspaces.shared.values.canonical``).
    """
    content = []
    for name in sorted(doc.keys()):
        # Yjs updates do not say what type a root is; the root's name does (encspaces.shared.kinds).
        parsed = parse_root_name(name)
        kind = parsed[0] if parsed is not None else "map"  # other roots we write (file manifests) are maps
        if kind == "text":
            runs = [[chunk, attrs or {}] for chunk, attrs in doc.get(name, type=pycrdt.Text).diff()]
            value = canonical(runs)
        elif kind == "list":
            value = canonical(doc.get(name, type=pycrdt.Array))
        else:
            value = canonical(doc.get(name, type=pycrdt.Map))
        if value in ([["l", 0]], [["m", 0]]):
            continue  # an empty root is only one this device opened: content is what was written
        content.append([name, value])
    return crypto.hash_parts(crypto.CTX_SNAPSHOT_CONTENT, pack(content))


def load_state(state: bytes, client_id: int | None = None) -> pycrdt.Doc[Any]:
    """A snapshot's state loaded into a document of its own (raises on a state that does not load);
    with ``client_id``, one a device may adopt as its own (``Document.adopt``)."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    doc.apply_update(state)
    return doc


def state_content_hash(state: bytes) -> bytes:
    """The content hash of a snapshot's state, loaded into a throwaway document."""
    return content_hash(load_state(state))


def snapshot_due(state: LogState, base: int) -> bool:
    """Whether the policy wants a snapshot of the document at ``base`` (a multiple of GRANULARITY)."""
    policy = state.policy
    if state.snapshot is not None and state.snapshot[1] >= base:
        return False
    if policy.snapshot_entries is not None and state.data_since_snapshot >= policy.snapshot_entries:
        return True
    return policy.snapshot_bytes is not None and state.bytes_since_snapshot >= policy.snapshot_bytes
