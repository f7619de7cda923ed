"""Attestations: members' signed statements of the content at a snapshot's base.

A snapshot is trusted by a new device only when enough members other than its author have
checked it against the document they built from the log. Each check ends in an ``attest``
control entry: the snapshot's seq, a *tag* (a keyed hash of the attester's own content hash
at the snapshot's base, under a key derived from the snapshot's epoch key) and a verdict
(whether the snapshot's state is that content). The relay reads the body, so it can count
agreeing attestations and compare tags, without learning the content hash (a small
document's hash could be guessed); members holding the epoch key recompute the tag.

Two signed attestations with different tags for one snapshot are the proof that someone
stated a false content; a device that replays the full log knows the right one.

Pure: bytes and records in, records or a specific exception out. ``LogState`` (shared by
relay and clients) keeps the records; ``status`` is the one rule both sides apply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from . import crypto
from .encoding import as_bytes, as_int, field, pack

BODY_VERSION = 1
TRACKED_SNAPSHOTS = 16  # the newest snapshots whose attestations the log state keeps


class Status(enum.StrEnum):
    PENDING = "pending"  # fewer agreeing attestations than the threshold, and no conflict
    AGREED = "agreed"  # the threshold of agreeing attestations, every tag the same, none disagreeing
    DISPUTED = "disputed"  # a disagreeing attestation, or two different tags: never started from


@dataclass(frozen=True)
class AttestBody:
    snapshot: int  # the seq of the snapshot entry
    tag: bytes  # attest_tag(...) of the attester's own content hash at the snapshot's base
    agrees: bool  # the snapshot's state hashes to its claimed content, and that content is the attester's
    # The digest of the log state at the snapshot's anchor (LogState.anchors), as the attester's own
    # log has it: public (the relay computes the same state), checked by the log rules, and what
    # lets a new device start at the anchor (docs/PROTOCOL.md section 14, "Anchors").
    anchor: bytes | None = None

    def encode(self) -> bytes:
        fields: dict[str, object] = {"v": BODY_VERSION, "snapshot": self.snapshot, "tag": self.tag,
                                     "agrees": self.agrees}
        if self.anchor is not None:  # (absent rather than nil: the body of an attestation before anchors)
            fields["anchor"] = self.anchor
        return pack(fields)

    @classmethod
    def decode(cls, data: bytes) -> AttestBody:
        from .membership import decode_body  # membership imports entry; avoid a cycle at import time

        def parse(m: dict[str, Any]) -> AttestBody:
            agrees = field(m, "agrees", "attest")
            if not isinstance(agrees, bool):
                raise ProtocolError("attest agrees: expected a boolean")
            anchor = m.get("anchor")
            return cls(as_int(field(m, "snapshot", "attest"), "attest snapshot seq", minimum=2),
                       as_bytes(field(m, "tag", "attest"), "attest tag", crypto.HASH_SIZE), agrees,
                       None if anchor is None else as_bytes(anchor, "attest anchor", crypto.HASH_SIZE))

        return decode_body(data, "attest", parse)


def attest_tag(epoch_key: bytes, space: bytes, snapshot_seq: int, base: int, content: bytes) -> bytes:
    """The keyed hash of ``content`` (a content hash at ``base``) that an attestation carries."""
    key = crypto.hash_parts(crypto.CTX_ATTEST_KEY, epoch_key)
    return crypto.hash_parts(crypto.CTX_ATTEST_TAG, key, space, snapshot_seq, base, content)


@dataclass(frozen=True)
class Attestation:
    member: bytes
    seq: int  # where the attest entry stands
    tag: bytes
    agrees: bool
    anchored: bool = False  # it stated the log state at the snapshot's anchor (which the rules checked)


@dataclass(frozen=True)
class SnapshotRecord:
    """A snapshot entry as the public log knows it, with the attestations of it so far."""

    seq: int
    base: int  # the seq whose state it holds (its parent)
    epoch: int
    author: bytes
    attestations: tuple[Attestation, ...] = ()
    # The log state digest at the snapshot's anchor (the last multiple of ANCHOR_GRID at or before
    # its base) when the snapshot entry was applied; None when the log kept none for that seq.
    anchor: bytes | None = None

    def by(self, member: bytes) -> Attestation | None:
        return next((a for a in self.attestations if a.member == member), None)

    def status(self, threshold: int) -> Status:
        """The rule relay and clients share: agreed, disputed or pending under ``threshold``."""
        if any(not a.agrees for a in self.attestations) or len({a.tag for a in self.attestations}) > 1:
            return Status.DISPUTED
        return Status.AGREED if len(self.attestations) >= threshold else Status.PENDING

    def anchored(self, threshold: int) -> bool:
        """Agreed, and every attestation stated the log state at its anchor: a new device may start there."""
        return (self.anchor is not None and self.status(threshold) is Status.AGREED
                and all(a.anchored for a in self.attestations))

    def encode(self) -> list[Any]:
        return [self.seq, self.base, self.epoch, self.author,
                [[a.member, a.seq, a.tag, a.agrees, a.anchored] for a in self.attestations], self.anchor]

    @classmethod
    def decode(cls, item: list[Any]) -> SnapshotRecord:
        """The inverse of ``encode``; also a record from before anchors (5 items, attestations of 4)."""
        seq, base, epoch, author, attestations = item[:5]
        anchor = item[5] if len(item) > 5 else None
        return cls(as_int(seq, "record seq"), as_int(base, "record base"), as_int(epoch, "record epoch"),
                   as_bytes(author, "record author", 32),
                   tuple(Attestation(as_bytes(a[0], "attester", 32), as_int(a[1], "attest seq"),
                                     as_bytes(a[2], "attest tag", crypto.HASH_SIZE), bool(a[3]),
                                     len(a) > 4 and a[4] is True)
                         for a in attestations),
                   None if anchor is None else as_bytes(anchor, "record anchor", crypto.HASH_SIZE))
