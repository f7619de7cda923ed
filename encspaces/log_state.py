"""The rules of the log that anyone can check without keys: relay and clients share them.

The relay runs ``check`` before it sequences an entry and every client runs the same
``check`` on what the relay sends, so "the relay never sequences an entry an honest client
would reject" holds by construction rather than by two implementations agreeing.
``apply`` records a checked entry; a journal lets a verifier undo a whole frame when a
later entry of it fails, so a frame is applied entirely or not at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import crypto
from .encoding import as_bytes, as_int, as_list, as_map, as_str, field, pack, unpack
from .entry import Entry, Kind
from .errors import (
    AuthorSeqGapError,
    EpochError,
    MalformedEntryError,
    MembershipChangeError,
    MembershipError,
    ParentError,
    PermissionDeniedError,
    ProtocolError,
    ReplayError,
    SpaceIdError,
    SpaceMismatchError,
)
from .identity import member_id
from .membership import AddMemberBody, GenesisBody, Member, Role

GENESIS_SEQ = 1
FIRST_EPOCH = 1


def space_id_of(genesis_raw: bytes) -> bytes:
    """A space is named by the hash of its signed genesis entry: self-certifying."""
    return crypto.hash_parts(crypto.CTX_SPACE_ID, genesis_raw)


@dataclass
class _Journal:
    seq: int
    epoch: int
    relay_key: bytes | None
    author_seqs: dict[bytes, int | None] = dataclasses.field(default_factory=dict)
    members: dict[bytes, Member | None] = dataclasses.field(default_factory=dict)


class LogState:
    """Membership, per-author counters, epoch and the chain of head hashes of one space."""

    def __init__(self, space: bytes) -> None:
        self.space = space
        self.relay_key: bytes | None = None
        self.heads: list[bytes] = [crypto.ZERO_HASH]  # heads[i] is h(i)
        self.members: dict[bytes, Member] = {}
        self.author_seqs: dict[bytes, int] = {}
        self.epoch = FIRST_EPOCH
        self._journal: _Journal | None = None

    @property
    def seq(self) -> int:
        return len(self.heads) - 1

    @property
    def head(self) -> bytes:
        return self.heads[-1]

    # --- checkpoints: resume without replaying the whole log ------------------------------

    def export(self) -> bytes:
        """Everything but the heads (kept beside each stored entry), for a local checkpoint."""
        return pack({
            "seq": self.seq,
            "relay": self.relay_key,
            "epoch": self.epoch,
            "authors": [[author, n] for author, n in self.author_seqs.items()],
            "members": [[m.sign_key, m.box_key, m.role.value, m.added_by, m.added_seq]
                        for m in self.members.values()],
        })

    @classmethod
    def restore(cls, space: bytes, exported: bytes, heads: list[bytes]) -> LogState:
        """The inverse of ``export``; ``heads`` are h(0)..h(seq). Raises ProtocolError if corrupt."""
        m = as_map(unpack(exported, what="log state checkpoint"), "log state checkpoint")
        seq = as_int(field(m, "seq", "checkpoint"), "checkpoint seq")
        if len(heads) != seq + 1 or heads[0] != crypto.ZERO_HASH:
            raise ProtocolError(f"checkpoint at seq {seq} has {len(heads) - 1} heads beside it")
        state = cls(space)
        state.heads = heads
        relay = field(m, "relay", "checkpoint")
        state.relay_key = None if relay is None else as_bytes(relay, "checkpoint relay key", 32)
        state.epoch = as_int(field(m, "epoch", "checkpoint"), "checkpoint epoch", minimum=1)
        for item in as_list(field(m, "authors", "checkpoint"), "checkpoint authors"):
            author, n = as_list(item, "checkpoint author", 2)
            state.author_seqs[as_bytes(author, "checkpoint author key", 32)] = as_int(n, "checkpoint author_seq")
        for item in as_list(field(m, "members", "checkpoint"), "checkpoint members"):
            sign, box, role, added_by, added_seq = as_list(item, "checkpoint member", 5)
            member = Member(
                sign_key=as_bytes(sign, "checkpoint member key", 32),
                box_key=as_bytes(box, "checkpoint member box key", 32),
                role=Role(as_str(role, "checkpoint member role", 16)),
                added_by=None if added_by is None else as_bytes(added_by, "checkpoint added by", 32),
                added_seq=as_int(added_seq, "checkpoint added seq"),
            )
            state.members[member.sign_key] = member
        return state

    def role_of(self, author: bytes) -> Role | None:
        member = self.members.get(author)
        return member.role if member else None

    # --- checking -------------------------------------------------------------------------

    def check(self, entry: Entry, seq: int) -> None:
        """Raise the specific RuleError if ``entry`` may not stand at ``seq``; never mutates.

        Assumes the author's signature was already checked (``Entry.check_signature``).
        """
        h = entry.header
        who = f"{entry.describe()} at seq {seq}"
        if seq != self.seq + 1:
            raise ValueError(f"check at seq {seq} but the log is at {self.seq}")
        if seq == GENESIS_SEQ:
            self._check_genesis(entry)
            return
        if h.kind is Kind.GENESIS:
            raise MembershipChangeError(f"{who}: a genesis entry may only stand at seq 1")
        if h.space != self.space:
            raise SpaceMismatchError(
                f"{who}: names space {h.space.hex()[:16]}…, expected {self.space.hex()[:16]}…"
            )
        role = self.role_of(h.author)
        if role is None:
            raise MembershipError(f"{who}: author {member_id(h.author)} is not a member of the space")
        if h.kind is Kind.DATA and not role.can_write:
            raise PermissionDeniedError(f"{who}: author's role {role.value} may not write")
        if h.kind is Kind.ADD_MEMBER and not role.can_manage:
            raise PermissionDeniedError(f"{who}: author's role {role.value} may not add members")
        self._check_author_seq(entry, seq)
        self._check_parent(entry, seq)
        if h.epoch != self.epoch:
            raise EpochError(f"{who}: under epoch {h.epoch}, expected the current epoch {self.epoch}")
        if h.kind is Kind.DATA and not h.nonce:
            raise MalformedEntryError(f"{who}: a data entry needs a nonce")
        if h.kind.is_control and h.nonce:
            raise MalformedEntryError(f"{who}: a control entry is not encrypted and carries no nonce")
        if h.kind is Kind.ADD_MEMBER:
            # after author_seq, so that a replayed add_member is a ReplayError, not "already a member"
            body = AddMemberBody.decode(entry.body)
            if body.member in self.members:
                raise MembershipChangeError(f"{who}: {member_id(body.member)} is already a member")
            if self.epoch not in {epoch for epoch, _ in body.sealed_keys}:
                raise MembershipChangeError(f"{who}: does not give the new member the key of epoch {self.epoch}")

    def _check_genesis(self, entry: Entry) -> None:
        h = entry.header
        if h.kind is not Kind.GENESIS:
            raise SpaceIdError(f"seq 1 holds a {h.kind.value} entry, expected the genesis entry")
        found = space_id_of(entry.raw)
        if found != self.space:
            raise SpaceIdError(
                f"the genesis entry hashes to {found.hex()[:16]}…, not to the space id {self.space.hex()[:16]}…"
            )
        if h.space or h.author_seq != 1 or h.epoch != FIRST_EPOCH or h.parent_seq != 0 \
                or h.parent_hash != crypto.ZERO_HASH or h.nonce:
            raise MalformedEntryError("genesis header must have no space, author_seq 1, epoch 1, parent 0")
        GenesisBody.decode(entry.body)

    def _check_author_seq(self, entry: Entry, seq: int) -> None:
        h = entry.header
        last = self.author_seqs.get(h.author, 0)
        if h.author_seq <= last:
            raise ReplayError(
                f"{entry.describe()} at seq {seq}: replayed, author {entry.author_id} is already at "
                f"author_seq {last} (expected {last + 1}, found {h.author_seq})"
            )
        if h.author_seq != last + 1:
            raise AuthorSeqGapError(
                f"{entry.describe()} at seq {seq}: author {entry.author_id} skips from author_seq {last} "
                f"to {h.author_seq} (expected {last + 1}): an entry was dropped"
            )

    def _check_parent(self, entry: Entry, seq: int) -> None:
        h = entry.header
        if h.parent_seq >= seq:
            raise ParentError(
                f"{entry.describe()} at seq {seq}: parent seq {h.parent_seq} is not below the entry's own"
            )
        if self.heads[h.parent_seq] != h.parent_hash:
            raise ParentError(
                f"{entry.describe()} at seq {seq}: parent hash at seq {h.parent_seq} is "
                f"{h.parent_hash.hex()[:16]}…, our chain has {self.heads[h.parent_seq].hex()[:16]}… "
                "(the author was shown another history)"
            )

    # --- applying -------------------------------------------------------------------------

    def apply(self, entry: Entry, seq: int, head: bytes) -> None:
        """Record an entry that passed ``check`` at ``seq``, with the chain head it produced."""
        h = entry.header
        journal = self._journal
        if journal is not None:
            journal.author_seqs.setdefault(h.author, self.author_seqs.get(h.author))
        self.author_seqs[h.author] = h.author_seq
        if h.kind is Kind.GENESIS:
            body = GenesisBody.decode(entry.body)
            self.relay_key = body.relay_key
            self._set_member(Member(h.author, body.creator_box, Role.ADMIN, None, seq))
        elif h.kind is Kind.ADD_MEMBER:
            add = AddMemberBody.decode(entry.body)
            self._set_member(Member(add.member, add.box_key, add.role, h.author, seq))
        self.heads.append(head)

    def _set_member(self, member: Member) -> None:
        if self._journal is not None:
            self._journal.members.setdefault(member.sign_key, self.members.get(member.sign_key))
        self.members[member.sign_key] = member

    # --- all or nothing -------------------------------------------------------------------

    def begin(self) -> None:
        self._journal = _Journal(self.seq, self.epoch, self.relay_key)

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal = self._journal
        if journal is None:
            return
        del self.heads[journal.seq + 1 :]
        self.epoch = journal.epoch
        self.relay_key = journal.relay_key
        _restore(self.author_seqs, journal.author_seqs)
        _restore(self.members, journal.members)
        self._journal = None


def _restore(target: dict[bytes, Any], saved: dict[bytes, Any]) -> None:
    for key, old in saved.items():
        if old is None:
            target.pop(key, None)
        else:
            target[key] = old
