"""Yjs client ids bound to the device that writes under them.

A data entry is signed by its author, but the Yjs update inside names its items by (client
id, clock), and nothing in Yjs ties a client id to anyone. A writer who copied another
member's client id could post items at that member's next clocks; wherever the log put the
forgery first, devices would keep it and drop the member's real edit at those clocks as
already seen, while the member's own device kept its edit: a lasting, silent divergence.

So in a space whose genesis says so (``GenesisBody.client_ids``), a device's client id is
derived from its signing key and a random nonce it picks for each session, and every data
entry's plaintext starts with that nonce. Every member checks, from the entry alone, that
the update's items all stand under the client id that the author's key and the nonce
derive: an entry whose items stand under any other client id is rejected (``foreign_client``)
by every member alike, in whatever order the entries reach it. Deletions name others' items
by design and are not restricted.

Yrs caps client ids at 53 bits, so a derivation can be matched by brute force: about 2^53
hashes to land on one given client id. ``ClientOwners`` makes that useless where it matters:
a client id belongs to the first author whose entry this device applied under it, and a later
entry by another author under it is rejected too. Devices keep that map in their checkpoints,
and snapshots carry it (agreed like their content), so a reopened device and one that joined
from a snapshot apply the rule as the others do. The residual risk is stated in
docs/PROTOCOL.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ProtocolError
from . import crypto
from .encoding import as_bytes, as_int, as_list
from .identity import member_id

NONCE_SIZE = 8  # random per session: a clash between two sessions of one key is a 2^-64 event
CLIENT_ID_BITS = 53  # the largest client id Yrs accepts (JavaScript's safe integers)
_MASK = (1 << CLIENT_ID_BITS) - 1
_DERIVED_KEPT = 1024


def derive_client_id(device_key: bytes, nonce: bytes) -> int:
    """The Yjs client id a device writes under in a session that picked ``nonce``."""
    digest = crypto.hash_parts(crypto.CTX_YJS_CLIENT, device_key, nonce)
    return int.from_bytes(digest[:8], "big") & _MASK


def data_plaintext(nonce: bytes, update: bytes) -> bytes:
    """A data entry's plaintext in a space that binds client ids."""
    return nonce + update


def split_plaintext(plaintext: bytes) -> tuple[bytes, bytes] | None:
    """(nonce, update) of a data entry's plaintext, or None when it is too short to hold a nonce."""
    if len(plaintext) <= NONCE_SIZE:
        return None
    return plaintext[:NONCE_SIZE], plaintext[NONCE_SIZE:]


@dataclass
class ClientOwners:
    """Which author first wrote under each client id, in the order this device applied entries.

    Every honest client id is derived from its author's key, so two authors share one only by
    a brute-force search of ~2^53 hashes; this catches the one who found one second.
    """

    first: dict[int, bytes] = field(default_factory=dict)  # client id -> the author's signing key
    # (author, nonce) -> client id: an author keeps one nonce a session, a hash per entry is waste.
    _derived: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    # (author, nonce) -> (client id, the bytes an applied update of that session wrote it in):
    # the same bytes in the next update are the same client id, unread (encspaces.data_payload).
    written: dict[tuple[bytes, bytes], tuple[int, bytes]] = field(default_factory=dict)

    def expected(self, author: bytes, nonce: bytes) -> int:
        """``derive_client_id(author, nonce)``, remembered."""
        found = self._derived.get((author, nonce))
        if found is None:
            if len(self._derived) >= _DERIVED_KEPT:
                self._derived.clear()
                self.written.clear()
            found = self._derived[author, nonce] = derive_client_id(author, nonce)
        return found

    def claim(self, client: int, author: bytes) -> str | None:
        """Record ``author`` as the owner of ``client`` (derived from its key) unless another author
        wrote under it first: then why the entry may not be applied."""
        owner = self.first.setdefault(client, author)
        if owner != author:
            return (f"Yjs client id {client} was first written under by another device, "
                    f"{member_id(owner)[:12]}…, not this entry's author")
        return None


def encode_owners(first: dict[int, bytes]) -> list[list[object]]:
    """A first-writer map as msgpack-ready lists: ``[[device key, [client id, ...]], ...]``, keys
    and ids sorted. Grouped by writer, a session costs its id alone (~9 bytes, not ~45 with a
    key beside each): the map gains one id per writing session, and snapshots carry it whole."""
    grouped: dict[bytes, list[int]] = {}
    for client, author in first.items():
        grouped.setdefault(author, []).append(client)
    return [[author, sorted(clients)] for author, clients in sorted(grouped.items())]


def decode_owners(value: object, what: str) -> dict[int, bytes]:
    """The inverse of ``encode_owners``; raises ProtocolError on any other shape, or on a client id
    listed twice."""
    first: dict[int, bytes] = {}
    for item in as_list(value, what):
        author, clients = as_list(item, f"{what} writer", 2)
        key = as_bytes(author, f"{what} writer key", crypto.PUBLIC_KEY_SIZE)
        for client in as_list(clients, f"{what} client ids"):
            number = as_int(client, f"{what} client id", maximum=_MASK)
            if number in first:
                raise ProtocolError(f"{what}: client id {number} listed twice")
            first[number] = key
    return first


__all__ = ["CLIENT_ID_BITS", "NONCE_SIZE", "ClientOwners", "data_plaintext", "decode_owners", "derive_client_id",
           "encode_owners", "split_plaintext"]
