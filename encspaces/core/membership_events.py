"""Membership changes as an application sees them: who, what role (None: gone), by whom, when.

A person's devices come and go without changing their membership; those changes are reported
too (``device``), so an application can show "Bob added a phone" or notice a device it does not
know of.
"""

from __future__ import annotations

from dataclasses import dataclass

from .entry import Kind
from .identity import member_id
from .invites import JoinBody
from .log_state import LogState
from .membership import AddDeviceBody, AddMemberBody, GenesisBody, RekeyBody, Role, SetRoleBody
from .verifier import VerifiedEntry

MEMBERSHIP_KINDS = frozenset({Kind.GENESIS, Kind.ADD_MEMBER, Kind.JOIN, Kind.SET_ROLE, Kind.REMOVE_MEMBER,
                              Kind.ADD_DEVICE, Kind.REMOVE_DEVICE})


@dataclass(frozen=True)
class MemberChange:
    member: str
    role: Role | None  # None: removed
    by: str  # the admin who made the change (for a join: the admin whose invite was used)
    seq: int
    # A device change: the device's id, and whether it was removed. ``member`` is its person, who
    # stays a member with ``role``; None for changes of membership itself.
    device: str | None = None
    device_removed: bool = False


def member_change(result: VerifiedEntry, state: LogState) -> MemberChange:
    """The change a verified membership entry made (``state`` is the log state after its frame)."""
    entry, seq = result.entry, result.seq
    h = entry.header
    by = member_id(state.person_of(h.author) or h.author)  # the person whose device wrote it
    if h.kind is Kind.GENESIS:
        cert = GenesisBody.decode(entry.body).cert
        creator = by if cert is None else member_id(cert.person)
        return MemberChange(creator, Role.ADMIN, creator, seq)
    if h.kind is Kind.ADD_MEMBER:
        add = AddMemberBody.decode(entry.body)
        return MemberChange(member_id(add.member), add.role, by, seq)
    if h.kind is Kind.JOIN:
        join = JoinBody.decode(entry.body)
        invite = state.invites[join.invite]
        person = h.author if join.cert is None else join.cert.person
        return MemberChange(member_id(person), invite.role, member_id(invite.created_by), seq)
    if h.kind is Kind.SET_ROLE:
        change = SetRoleBody.decode(entry.body)
        return MemberChange(member_id(change.member), change.role, by, seq)
    if h.kind is Kind.ADD_DEVICE:
        cert = AddDeviceBody.decode(entry.body).cert
        return MemberChange(member_id(cert.person), _role(state, cert.person), by, seq, member_id(cert.device))
    if h.kind is Kind.REMOVE_DEVICE:
        device = RekeyBody.decode(entry.body, h.kind.value).device or b""
        person = state.removed_device_owner[device]
        return MemberChange(member_id(person), _role(state, person), by, seq, member_id(device), device_removed=True)
    removed = RekeyBody.decode(entry.body, h.kind.value).member
    return MemberChange(member_id(removed or b""), None, by, seq)


def _role(state: LogState, person: bytes) -> Role | None:
    """The person's role after the frame (None if a later entry of the same frame removed them)."""
    member = state.members.get(person)
    return None if member is None else member.role
