"""Entries every member rejects: signed by a member and in the log, but carrying nothing usable.

The relay sequenced them and their author signed them, so the log goes on past them; what
they carry is the author's fault (or a key the author did not give everyone). Every member
decides from the entry's bytes alone, so every member rejects the same entries:

- ``undecryptable``: the ciphertext does not open under the epoch key this member holds;
- ``invalid_update``: the plaintext is not a Yjs update the document can decode;
- ``foreign_client``: the update holds items under a Yjs client id that is not its author's
  (encspaces.core.client_ids).

Each is reported once per device and session as a ``RejectedEntry`` (``Space.rejected`` and
``Space.rejected_entries()``), naming its seq and author; nothing of it is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RejectionKind = Literal["undecryptable", "invalid_update", "foreign_client"]


@dataclass(frozen=True)
class RejectedEntry:
    """An entry of the verified log whose payload this device (and every other) did not apply."""

    seq: int
    author: str  # the author's member id
    kind: RejectionKind
    reason: str

    def __str__(self) -> str:
        return f"entry at seq {self.seq} by {self.author} rejected ({self.kind}): {self.reason}"


__all__ = ["RejectedEntry", "RejectionKind"]
