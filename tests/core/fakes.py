"""A fake relay for the protocol-core tests: builds valid logs, and lets tests break them.

``FakeSpace`` is an honest sequencer (``LogState.check`` then ``apply``, exactly like a relay)
that also holds the relay's signing key, so a test can play a malicious relay: re-chain and
re-sign any list of entry bytes (``frame_of``), sign heads for any seq / hash / space
(``signed``), or append an entry without checking it (``force``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import nacl.signing

from encspaces.core import crypto
from encspaces.core.encoding import pack
from encspaces.core.entry import FORMAT_VERSION, Entry, Header, Kind, build_entry
from encspaces.core.head import SignedHead, next_head
from encspaces.core.identity import Identity
from encspaces.core.log_state import LogState, space_id_of
from encspaces.core.membership import Member, Role, add_member_body, genesis_body
from encspaces.core.messages import Entries
from encspaces.core.verifier import LogVerifier
from encspaces.core.witness_policy import WitnessPolicy

FIXED_TIME_MS = 1_700_000_000_000


def craft_entry(identity: Identity, header: Header, body: bytes, *, body_hash: bytes | None = None) -> Entry:
    """Sign an arbitrary header and body (no rules applied): for entries build_entry refuses to make."""
    header_bytes = header.encode()
    if body_hash is None:
        body_hash = crypto.hash_parts(crypto.CTX_BODY, body)
    signature = identity.sign(crypto.CTX_ENTRY_SIG, header_bytes + body_hash)
    raw = pack([header_bytes, body_hash, signature, body])
    return Entry(raw, header_bytes, body_hash, signature, body, header)


def reencode(entry: Entry, **parts: bytes) -> bytes:
    """The entry's wire bytes with some of its four parts replaced (header, body_hash, signature, body)."""
    items = {
        "header": entry.header_bytes,
        "body_hash": entry.body_hash,
        "signature": entry.signature,
        "body": entry.body,
    }
    items.update(parts)
    return pack([items["header"], items["body_hash"], items["signature"], items["body"]])


def chain(previous: bytes, first_seq: int, raws: list[bytes]) -> list[bytes]:
    """The heads h(first_seq).. that ``raws`` produce when chained onto ``previous``."""
    heads = []
    h = previous
    for i, raw in enumerate(raws):
        h = next_head(h, first_seq + i, Entry.decode(raw).digest())
        heads.append(h)
    return heads


@dataclass(frozen=True)
class Snapshot:
    """Everything a failed frame must leave untouched."""

    seq: int
    head: bytes
    heads: tuple[bytes, ...]
    author_seqs: tuple[tuple[bytes, int], ...]
    members: tuple[tuple[bytes, Member], ...]
    epoch_keys: tuple[tuple[int, bytes], ...]
    epoch: int
    relay_key: bytes | None
    skipped: int
    awaiting_key: int
    latest_head: SignedHead | None


def snapshot(v: LogVerifier) -> Snapshot:
    return Snapshot(
        seq=v.seq,
        head=v.head,
        heads=tuple(v.state.heads),
        author_seqs=tuple(sorted(v.state.author_seqs.items())),
        members=tuple(sorted(v.state.members.items())),
        epoch_keys=tuple(sorted(v.epoch_keys.items())),
        epoch=v.state.epoch,
        relay_key=v.relay_key,
        skipped=len(v.skipped),
        awaiting_key=len(v.awaiting_key),
        latest_head=v.latest_head,
    )


class FakeSpace:
    """A space on an honest relay whose key the test holds.

    ``alice`` creates the space (admin); ``with_members`` adds ``bob`` as a writer and
    ``carol`` as a reader. ``raws[i - 1]`` is the entry at seq i, ``heads[i]`` is h(i).
    """

    def __init__(
        self,
        *,
        relay_key: nacl.signing.SigningKey | None = None,
        pinned_relay_key: bytes | None = None,
        with_members: bool = True,
        witnesses: WitnessPolicy = WitnessPolicy.NONE,
    ) -> None:
        self.relay_key = relay_key or nacl.signing.SigningKey.generate()
        self.relay_pk = bytes(self.relay_key.verify_key)
        self.epoch_key = crypto.random_key()
        self.alice = Identity.generate()
        self.bob = Identity.generate()
        self.carol = Identity.generate()
        self.dave = Identity.generate()  # never a member
        self.next_seqs: dict[bytes, int] = {}
        self.raws: list[bytes] = []
        self.heads: list[bytes] = [crypto.ZERO_HASH]
        genesis = build_entry(
            self.alice,
            space=b"",
            author_seq=self._take(self.alice),
            epoch=1,
            kind=Kind.GENESIS,
            parent_seq=0,
            parent_hash=crypto.ZERO_HASH,
            payload=genesis_body(self.alice.public, pinned_relay_key or self.relay_pk, self.epoch_key, witnesses),
            epoch_key=None,
            time_ms=FIXED_TIME_MS,
        )
        self.space = space_id_of(genesis.raw)
        self.state = LogState(self.space)
        self.genesis = genesis
        self.sequence(genesis)
        if with_members:
            self.add(self.bob, Role.WRITER)
            self.add(self.carol, Role.READER)

    # --- authors ------------------------------------------------------------------------------

    def _take(self, identity: Identity) -> int:
        key = identity.public.sign_key
        n = self.next_seqs.get(key, 1)
        self.next_seqs[key] = n + 1
        return n

    @property
    def seq(self) -> int:
        return len(self.raws)

    def make(
        self,
        author: Identity,
        payload: bytes = b"hello",
        *,
        kind: Kind = Kind.DATA,
        author_seq: int | None = None,
        epoch: int = 1,
        epoch_key: bytes | None = None,
        parent_seq: int | None = None,
        parent_hash: bytes | None = None,
        space: bytes | None = None,
    ) -> Entry:
        """An entry as its author would build it now (parent = current head); not sequenced."""
        if parent_seq is None:
            parent_seq = self.seq
        if parent_hash is None:
            parent_hash = self.heads[parent_seq]
        return build_entry(
            author,
            space=self.space if space is None else space,
            author_seq=self._take(author) if author_seq is None else author_seq,
            epoch=epoch,
            kind=kind,
            parent_seq=parent_seq,
            parent_hash=parent_hash,
            payload=payload,
            epoch_key=(epoch_key or self.epoch_key) if kind is Kind.DATA else None,
            time_ms=FIXED_TIME_MS + self.seq,
        )

    def add_member_entry(
        self,
        by: Identity,
        new: Identity,
        role: Role,
        keys: dict[int, bytes] | None = None,
        *,
        author_seq: int | None = None,
    ) -> Entry:
        return self.make(
            by,
            add_member_body(new.public, role, {1: self.epoch_key} if keys is None else keys),
            kind=Kind.ADD_MEMBER,
            author_seq=author_seq,
        )

    # --- the honest relay ---------------------------------------------------------------------

    def sequence(self, entry: Entry) -> int:
        """What an honest relay does: check the entry against the log, then append it."""
        entry.check_signature()
        seq = self.seq + 1
        self.state.check(entry, seq)
        head = next_head(self.heads[-1], seq, entry.digest())
        self.state.apply(entry, seq, head)
        self.raws.append(entry.raw)
        self.heads.append(head)
        return seq

    def force(self, raw: bytes) -> int:
        """A malicious relay appends anything that decodes, unchecked."""
        seq = self.seq + 1
        self.raws.append(raw)
        self.heads.append(next_head(self.heads[-1], seq, Entry.decode(raw).digest()))
        return seq

    def write(self, author: Identity, payload: bytes = b"hello", **kwargs: Any) -> Entry:
        entry = self.make(author, payload, **kwargs)
        self.sequence(entry)
        return entry

    def add(self, new: Identity, role: Role, by: Identity | None = None) -> Entry:
        entry = self.add_member_entry(by or self.alice, new, role)
        self.sequence(entry)
        return entry

    # --- heads and frames ---------------------------------------------------------------------

    def signed(
        self,
        seq: int,
        head: bytes | None = None,
        *,
        space: bytes | None = None,
        key: nacl.signing.SigningKey | None = None,
    ) -> SignedHead:
        return SignedHead.create(
            key or self.relay_key,
            self.space if space is None else space,
            seq,
            self.heads[seq] if head is None else head,
            time_ms=FIXED_TIME_MS + seq,
        )

    def frame(self, first: int, last: int | None = None) -> Entries:
        """The honest frame of seqs first..last (default: to the end)."""
        last = self.seq if last is None else last
        return Entries(first, self.raws[first - 1 : last], self.signed(last))

    def frame_of(self, first: int, raws: list[bytes], previous: bytes | None = None) -> Entries:
        """Any entry bytes, chained from h(first - 1) (or ``previous``) and signed: a lying relay."""
        heads = chain(self.heads[first - 1] if previous is None else previous, first, raws)
        return Entries(first, raws, self.signed(first + len(raws) - 1, heads[-1]))

    def verifier(self, identity: Identity | None = None, *, through: int = 0) -> LogVerifier:
        """A device of ``identity`` (default bob) that verified the honest log through seq ``through``."""
        v = LogVerifier(self.space, identity or self.bob, self.relay_pk)
        if through:
            v.verify_frame(self.frame(1, through))
        return v


def header_of(entry: Entry, **changes: Any) -> Header:
    return replace(entry.header, **changes)


__all__ = [
    "FIXED_TIME_MS",
    "FORMAT_VERSION",
    "FakeSpace",
    "Snapshot",
    "chain",
    "craft_entry",
    "header_of",
    "reencode",
    "snapshot",
]
