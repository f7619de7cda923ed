"""The rules of the log that anyone can check without keys: relay and clients share them.

The relay runs ``check`` before it sequences an entry and every client runs the same
``check`` on what the relay sends, so "the relay never sequences an entry an honest client
would reject" holds by construction rather than by two implementations agreeing.
``apply`` records a checked entry; a journal lets a verifier undo a whole frame when a
later entry of it fails, so a frame is applied entirely or not at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ..errors import (
    AttestationConflictError,
    AttestationError,
    AuthorSeqGapError,
    DeviceCertificateError,
    DeviceNotPermittedError,
    DeviceRemovedError,
    EpochError,
    MalformedEntryError,
    MembershipChangeError,
    MembershipError,
    ParentError,
    PermissionDeniedError,
    ProtocolError,
    RemovedPersonError,
    ReplayError,
    SpaceIdError,
    SpaceMismatchError,
)
from . import crypto
from .attestation import TRACKED_SNAPSHOTS, Attestation, AttestBody, SnapshotRecord, Status
from .devices import Device, verify_revocation
from .encoding import as_bytes, as_int, as_list, as_map, as_str, field, pack, unpack
from .entry import Entry, Kind
from .identity import member_id
from .invites import InviteBody, JoinBody, RevokeInviteBody, verify_join_proof
from .membership import AddDeviceBody, AddMemberBody, GenesisBody, Member, Policy, RekeyBody, Role, SetRoleBody
from .witness_policy import WitnessPolicy, policy_at

GENESIS_SEQ = 1
FIRST_EPOCH = 1
MAX_DEVICES = 32  # per person and space: every rekey seals one key per device
# Every ANCHOR_GRID seqs the state is hashed (``anchors``): the seqs a new device may start at.
ANCHOR_GRID = 100
ANCHORS_KEPT = 64  # digests kept (by seq): 6,400 seqs back, far more than a snapshot's write takes


def anchor_of(base: int) -> int:
    """The anchor of a snapshot whose state is the log at ``base``: the last grid seq at or before it
    (0: none, the log is too short)."""
    return base - base % ANCHOR_GRID


def space_id_of(genesis_raw: bytes) -> bytes:
    """A space is named by the hash of its signed genesis entry: self-certifying."""
    return crypto.hash_parts(crypto.CTX_SPACE_ID, genesis_raw)


@dataclass(frozen=True)
class Invite:
    """An invite as the log knows it: its public key, what it grants, and how much is left."""

    key: bytes
    box_key: bytes
    role: Role
    uses: int
    used: int
    expires_ms: int | None
    history: bool
    created_by: bytes
    created_seq: int
    revoked: bool = False

    @property
    def open(self) -> bool:
        """Not revoked and not used up (expiry is judged against an entry's time, see ``check``)."""
        return not self.revoked and self.used < self.uses

    def expired_at(self, time_ms: int) -> bool:
        return self.expires_ms is not None and time_ms > self.expires_ms


@dataclass
class _Journal:
    """What ``rollback`` restores: counters by undo log, the small collections by copy."""

    seq: int
    epoch: int
    relay_key: bytes | None
    members: dict[bytes, Member]
    invites: dict[bytes, Invite]
    epoch_started: dict[int, int]
    policy: Policy
    entries_in_epoch: int
    snapshot: tuple[tuple[int, int] | None, int, int]
    snapshots: dict[int, SnapshotRecord]
    witness_policies: list[tuple[int, WitnessPolicy]]
    anchors: dict[int, bytes]
    author_seqs: dict[bytes, int | None] = dataclasses.field(default_factory=dict)
    devices: tuple[dict[bytes, bytes], dict[bytes, int], dict[bytes, int], dict[bytes, bytes]] = ({}, {}, {}, {})


class LogState:
    """Membership, per-author counters, epoch and the chain of head hashes of one space."""

    def __init__(self, space: bytes) -> None:
        self.space = space
        self.relay_key: bytes | None = None
        self.heads: list[bytes] = [crypto.ZERO_HASH]  # heads[i] is h(i)
        self.members: dict[bytes, Member] = {}
        self.author_seqs: dict[bytes, int] = {}
        self.epoch = FIRST_EPOCH
        self.epoch_started: dict[int, int] = {}  # epoch -> time (ms) of the entry that began it
        self.entries_in_epoch = 0  # data entries under the current epoch (rotation policy)
        self.invites: dict[bytes, Invite] = {}
        self.policy = Policy()
        # The newest snapshot entry (its seq, and the seq whose state it holds: its parent), and
        # the data written since, which the snapshot policy measures.
        self.snapshot: tuple[int, int] | None = None
        self.data_since_snapshot = 0
        self.bytes_since_snapshot = 0
        # The newest snapshots (by seq) and the attestations of each (encspaces.core.attestation).
        self.snapshots: dict[int, SnapshotRecord] = {}
        # Devices (encspaces.core.devices): each current device's person, the devices removed from the
        # space (remove_device: never admitted again) and the people removed (remove_member), by seq.
        self.device_owner: dict[bytes, bytes] = {}
        self.removed_devices: dict[bytes, int] = {}
        self.removed_people: dict[bytes, int] = {}
        self.removed_device_owner: dict[bytes, bytes] = {}  # each removed device's person (for reports)
        # Every witness policy the log set, as (seq of the entry that set it, policy), in order:
        # genesis first. Few entries (admins change witnesses rarely), kept whole for clients
        # that check old checkpoints against the policy of their time.
        self.witness_policies: list[tuple[int, WitnessPolicy]] = []
        # Whether data entries carry their session nonce and bind Yjs client ids to their
        # authors (the genesis says; encspaces.core.client_ids). Checked by members, not the relay.
        self.client_ids_bound = False
        # The digest of this state at each of the last ANCHORS_KEPT multiples of ANCHOR_GRID
        # (``state_digest``), in seq order. Part of the state (so of every later digest), so a
        # device that starts at an anchor holds the same ones as every member and the attestation
        # rule gives the same answer everywhere. docs/PROTOCOL.md section 14, "Anchors".
        self.anchors: dict[int, bytes] = {}
        # A new device's catch-up up to an anchor: control entries only, without the author_seq
        # rule (data entries, which move the counters, came as digests); no anchor is hashed.
        self.sparse = False
        # Restored from a checkpoint written before anchors: its ring must be rebuilt from the
        # stored log (``LogVerifier.rebuild_anchors``) before a new grid seq is hashed.
        self.anchors_missing = False
        self._journal: _Journal | None = None

    @property
    def seq(self) -> int:
        return len(self.heads) - 1

    @property
    def head(self) -> bytes:
        return self.heads[-1]

    @property
    def witness_policy(self) -> WitnessPolicy:
        """The witness policy in force (``WitnessPolicy.NONE`` for a space without witnesses)."""
        return self.witness_policies[-1][1] if self.witness_policies else WitnessPolicy.NONE

    def witness_policy_at(self, size: int) -> WitnessPolicy:
        """The policy that governs a checkpoint of tree size ``size``: the one set by the newest
        entry at a seq <= size. A client counts a new policy's cosignatures only once the entry
        that set it is covered by a checkpoint witnessed under the policy before it."""
        return policy_at(self.witness_policies, size)

    # --- checkpoints: resume without replaying the whole log ------------------------------

    def export(self) -> bytes:
        """Everything but the heads (kept beside each stored entry), for a local checkpoint, and what
        the relay sends a new device that starts at an anchor. Canonical: every collection sorted."""
        return pack(self._fields())

    def _fields(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "relay": self.relay_key,
            "epoch": self.epoch,
            "authors": sorted([author, n] for author, n in self.author_seqs.items()),
            **self._membership(),
            "in_epoch": self.entries_in_epoch,
            "snapshot": None if self.snapshot is None else list(self.snapshot),
            "since_snapshot": [self.data_since_snapshot, self.bytes_since_snapshot],
            "snapshots": [self.snapshots[seq].encode() for seq in sorted(self.snapshots)],
            "anchors": [[seq, self.anchors[seq]] for seq in sorted(self.anchors)],
        }

    def _membership(self) -> dict[str, Any]:
        """What control entries alone decide (members, devices, keys' epochs, invites, policies)."""
        return {
            "members": [[m.sign_key, m.box_key, m.role.value, m.added_by, m.added_seq,
                         [d.encode() for d in m.devices]] for _, m in sorted(self.members.items())],
            "removed_devices": sorted([d, s] for d, s in self.removed_devices.items()),
            "removed_people": sorted([p, s] for p, s in self.removed_people.items()),
            "removed_owners": sorted([d, p] for d, p in self.removed_device_owner.items()),
            "started": sorted([epoch, t] for epoch, t in self.epoch_started.items()),
            "policy": self.policy.encode(),
            "witness_policies": [[seq, p.encode()] for seq, p in self.witness_policies],
            "client_ids": self.client_ids_bound,
            "invites": [[i.key, i.box_key, i.role.value, i.uses, i.used, i.expires_ms, i.history, i.created_by,
                         i.created_seq, i.revoked] for _, i in sorted(self.invites.items())],
        }

    def membership_digest(self) -> bytes:
        """A hash of what control entries alone decide: a device that checked every control entry
        from genesis compares it with the state a relay sent for an anchor."""
        return crypto.hash_parts(crypto.CTX_LOG_STATE, b"membership", pack(self._membership()))

    def state_digest(self) -> bytes:
        """The hash of this state that ``anchors`` keep and attestations state.

        Leaves out the heads (the chain commits to them), the digest at this very seq (it is
        this hash), and the bytes counted since the last snapshot: an entry whose body a relay
        stripped counts no bytes, so that counter may differ between honest devices (it only
        times this device's own snapshots).
        """
        fields = self._fields()
        fields["since_snapshot"] = [self.data_since_snapshot]
        fields["anchors"] = [[seq, digest] for seq, digest in fields["anchors"] if seq != self.seq]
        return crypto.hash_parts(crypto.CTX_LOG_STATE, pack(fields))

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
            fields = as_list(item, "checkpoint member")
            if len(fields) not in (5, 6):  # 5: a checkpoint from before devices (all self-certified)
                raise ProtocolError(f"checkpoint member: expected 5 or 6 items, found {len(fields)}")
            sign, box, role, added_by, added_seq = fields[:5]
            devices = [] if len(fields) == 5 else as_list(fields[5], "checkpoint member devices")
            member = Member(
                sign_key=as_bytes(sign, "checkpoint member key", 32),
                box_key=as_bytes(box, "checkpoint member box key", 32),
                role=Role(as_str(role, "checkpoint member role", 16)),
                added_by=None if added_by is None else as_bytes(added_by, "checkpoint added by", 32),
                added_seq=as_int(added_seq, "checkpoint added seq"),
                devices=tuple(Device.decode(d) for d in devices),
            )
            state.members[member.sign_key] = member
            for device in member.devices:
                state.device_owner[device.key] = member.sign_key
        for name, target in (("removed_devices", state.removed_devices), ("removed_people", state.removed_people)):
            for item in as_list(m.get(name, []), f"checkpoint {name}"):
                key, removed_seq = as_list(item, f"checkpoint {name} item", 2)
                target[as_bytes(key, f"checkpoint {name} key", 32)] = as_int(removed_seq, f"checkpoint {name} seq")
        for item in as_list(m.get("removed_owners", []), "checkpoint removed_owners"):
            device, person = as_list(item, "checkpoint removed_owners item", 2)
            state.removed_device_owner[as_bytes(device, "checkpoint removed device", 32)] = as_bytes(
                person, "checkpoint removed device's person", 32)
        for item in as_list(field(m, "started", "checkpoint"), "checkpoint epochs"):
            epoch, started = as_list(item, "checkpoint epoch start", 2)
            state.epoch_started[as_int(epoch, "checkpoint epoch", minimum=1)] = as_int(started, "epoch start")
        state.entries_in_epoch = as_int(field(m, "in_epoch", "checkpoint"), "checkpoint entries in epoch")
        snapshot = m.get("snapshot")
        if snapshot is not None:
            seq, base = as_list(snapshot, "checkpoint snapshot", 2)
            state.snapshot = (as_int(seq, "snapshot seq"), as_int(base, "snapshot base"))
        since = as_list(m.get("since_snapshot", [0, 0]), "checkpoint since snapshot", 2)
        state.data_since_snapshot = as_int(since[0], "data since snapshot")
        state.bytes_since_snapshot = as_int(since[1], "bytes since snapshot")
        for item in as_list(m.get("snapshots", []), "checkpoint snapshots"):
            record_items = as_list(item, "checkpoint snapshot record")
            if len(record_items) not in (5, 6):  # 5: a checkpoint from before anchors
                raise ProtocolError(f"checkpoint snapshot record: expected 5 or 6 items, found {len(record_items)}")
            record = SnapshotRecord.decode(record_items)
            state.snapshots[record.seq] = record
        state.anchors_missing = "anchors" not in m and state.seq >= ANCHOR_GRID
        for item in as_list(m.get("anchors", []), "checkpoint anchors"):
            at, digest = as_list(item, "checkpoint anchor", 2)
            state.anchors[as_int(at, "anchor seq", minimum=ANCHOR_GRID)] = as_bytes(digest, "anchor digest",
                                                                                   crypto.HASH_SIZE)
        state.policy = Policy.decode(as_bytes(field(m, "policy", "checkpoint"), "checkpoint policy"))
        # Absent from checkpoints written before witnesses existed: those spaces had none.
        for item in as_list(m.get("witness_policies", [[GENESIS_SEQ, WitnessPolicy.NONE.encode()]]),
                            "checkpoint witness policies"):
            set_at, encoded = as_list(item, "checkpoint witness policy", 2)
            state.witness_policies.append(
                (as_int(set_at, "witness policy seq", minimum=1), WitnessPolicy.decode(as_map(encoded, "policy"))))
        state.client_ids_bound = m.get("client_ids", False) is True  # absent: a checkpoint from before
        for item in as_list(field(m, "invites", "checkpoint"), "checkpoint invites"):
            key, box, role, uses, used, expires, history, by, created, revoked = as_list(item, "invite", 10)
            invite = Invite(
                key=as_bytes(key, "invite key", 32), box_key=as_bytes(box, "invite box key", 32),
                role=Role(as_str(role, "invite role", 16)), uses=as_int(uses, "invite uses"),
                used=as_int(used, "invite used"),
                expires_ms=None if expires is None else as_int(expires, "invite expiry"),
                history=bool(history), created_by=as_bytes(by, "invite creator", 32),
                created_seq=as_int(created, "invite seq"), revoked=bool(revoked),
            )
            state.invites[invite.key] = invite
        return state

    def admins(self) -> list[bytes]:
        return [key for key, m in self.members.items() if m.role is Role.ADMIN]

    def key_recipients(self, without: bytes | None = None, without_device: bytes | None = None) -> dict[bytes, bytes]:
        """Who must receive a new epoch key: every current device of every member (but the person
        ``without`` and the device ``without_device``) and every open invite, by signing key."""
        recipients = {d.key: d.box_key for key, m in self.members.items() if key != without
                      for d in m.devices if d.key != without_device}
        recipients.update({key: inv.box_key for key, inv in self.invites.items() if inv.open})
        return recipients

    def person_of(self, key: bytes) -> bytes | None:
        """The member (person key) a current device belongs to; a person key names itself."""
        person = self.device_owner.get(key)
        if person is None and key in self.members:
            return key
        return person

    def same_person(self, a: bytes, b: bytes) -> bool:
        """Whether two device keys are (or were, for a removed device: its own key) of one person."""
        return a == b or self.device_owner.get(a, a) == self.device_owner.get(b, b)

    def role_of(self, author: bytes) -> Role | None:
        """The role of a device's person (or of a person key)."""
        person = self.person_of(author)
        member = None if person is None else self.members.get(person)
        return member.role if member else None

    def snapshot_status(self, seq: int) -> Status | None:
        record = self.snapshots.get(seq)
        return None if record is None else record.status(self.policy.snapshot_attesters)

    def agreed_snapshot(self) -> tuple[int, int] | None:
        """The newest snapshot (seq, base) a new device may start from: attested, undisputed."""
        for seq in sorted(self.snapshots, reverse=True):
            record = self.snapshots[seq]
            if record.status(self.policy.snapshot_attesters) is Status.AGREED:
                return seq, record.base
        return None

    # --- checking -------------------------------------------------------------------------

    def check(self, entry: Entry, seq: int) -> None:
        """Raise the specific RuleError if ``entry`` may not stand at ``seq``; never mutates.

        Assumes the author's signature was already checked (``Entry.check_signature``). In a
        ``sparse`` state only control entries other than attestations stand here, and the
        author_seq rule is not applied: the data entries between them came as digests.
        """
        h = entry.header
        kind = h.kind
        encrypted = kind.is_encrypted
        if seq != len(self.heads):  # i.e. self.seq + 1
            raise ValueError(f"check at seq {seq} but the log is at {self.seq}")
        if seq == GENESIS_SEQ:
            self._check_genesis(entry)
            return
        if kind is Kind.GENESIS:
            raise MembershipChangeError(f"{_who(entry, seq)}: a genesis entry may only stand at seq 1")
        if h.space != self.space:
            raise SpaceMismatchError(
                f"{_who(entry, seq)}: names space {h.space.hex()[:16]}…, expected {self.space.hex()[:16]}…"
            )
        if kind is Kind.JOIN:
            if h.author in self.device_owner or h.author in self.members:
                raise MembershipChangeError(f"{_who(entry, seq)}: {member_id(h.author)} is already a member")
        else:
            person = self.device_owner.get(h.author)
            if person is None:
                self._not_a_device(entry, _who(entry, seq))
            role = self.members[person].role
            if (encrypted or kind is Kind.ATTEST) and not role.can_write:
                raise PermissionDeniedError(
                    f"{_who(entry, seq)}: author's role {role.value} may not {_MANAGING[kind]}")
            if not encrypted and kind not in _ANY_ROLE and not role.can_manage:
                raise PermissionDeniedError(
                    f"{_who(entry, seq)}: author's role {role.value} may not {_MANAGING[kind]}")
        if self.sparse:
            if encrypted or kind is Kind.ATTEST:
                raise ValueError(f"a {kind.value} entry is never checked in a sparse state")
        else:
            self._check_author_seq(entry, seq)
        self._check_parent(entry, seq)
        if h.epoch != self.epoch:
            raise EpochError(f"{_who(entry, seq)}: under epoch {h.epoch}, expected the current epoch {self.epoch}")
        if encrypted and not h.nonce:
            raise MalformedEntryError(f"{_who(entry, seq)}: a {h.kind.value} entry needs a nonce")
        if not encrypted and h.nonce:
            raise MalformedEntryError(f"{_who(entry, seq)}: a control entry is not encrypted and carries no nonce")
        # Bodies last, so that a replayed membership entry is a ReplayError, not a body conflict.
        checker = _BODY_CHECKS.get(kind)
        if checker is not None:
            checker(self, entry, _who(entry, seq))

    def _not_a_device(self, entry: Entry, who: str) -> NoReturn:
        """The author is no current device of a member: say why, as precisely as the log knows."""
        author = entry.header.author
        removed = self.removed_devices.get(author)
        if removed is not None:
            raise DeviceRemovedError(f"{who}: device {member_id(author)} was removed from the space at seq {removed}")
        if entry.header.kind is Kind.ADD_DEVICE:
            person = AddDeviceBody.decode(entry.body).cert.person
            if person in self.removed_people:
                raise RemovedPersonError(f"{who}: certifies a device of person {member_id(person)}, who was removed "
                                         f"from the space at seq {self.removed_people[person]}")
        raise MembershipError(f"{who}: author {member_id(author)} is not a member of the space")

    def _check_new_device(self, device: bytes, who: str) -> None:
        """A device key that may join the space: not there already, and never removed from it."""
        removed = self.removed_devices.get(device)
        if removed is not None:
            raise DeviceRemovedError(f"{who}: device {member_id(device)} was removed from the space at seq "
                                     f"{removed}; its certificate cannot bring it back (pair a new device)")
        if device in self.device_owner or device in self.members or device in self.invites:
            raise MembershipChangeError(f"{who}: device {member_id(device)} is already in the space")

    def _check_add(self, entry: Entry, who: str) -> None:
        body = AddMemberBody.decode(entry.body)
        if body.member in self.members:
            raise MembershipChangeError(f"{who}: {member_id(body.member)} is already a member")
        cert = body.cert
        if cert is not None and (cert.person != body.member or cert.device_box != body.box_key):
            raise DeviceCertificateError(f"{who}: the device certificate names person {member_id(cert.person)[:12]}… "
                                         f"and another box key than the entry's member {member_id(body.member)[:12]}…")
        self._check_new_device(body.device, who)
        if self.epoch not in {epoch for epoch, _ in body.sealed_keys}:
            raise MembershipChangeError(f"{who}: does not give the new member the key of epoch {self.epoch}")

    def _check_add_device(self, entry: Entry, who: str) -> None:
        body = AddDeviceBody.decode(entry.body)  # a forged certificate: DeviceCertificateError
        cert = body.cert
        author_person = self.device_owner[entry.header.author]
        if cert.person in self.removed_people and cert.person not in self.members:
            raise RemovedPersonError(f"{who}: certifies a device of person {member_id(cert.person)}, who was "
                                     f"removed from the space at seq {self.removed_people[cert.person]}")
        if cert.person != author_person:
            raise DeviceNotPermittedError(
                f"{who}: device added by someone else's device: the author's person is "
                f"{member_id(author_person)}, the certificate's {member_id(cert.person)} "
                "(only a device of the same person may add a device)")
        self._check_new_device(cert.device, who)
        if len(self.members[author_person].devices) >= MAX_DEVICES:
            raise MembershipChangeError(f"{who}: person {member_id(author_person)} already has {MAX_DEVICES} "
                                        "devices in this space, the most a person may have")
        if self.epoch not in {epoch for epoch, _ in body.sealed_keys}:
            raise MembershipChangeError(f"{who}: does not give the new device the key of epoch {self.epoch}")

    def _check_remove_device(self, body: RekeyBody, entry: Entry, who: str) -> None:
        device = body.device
        if device is None or body.member is not None:
            raise MalformedEntryError(f"{who}: a remove_device entry names one device and no member")
        owner = self.device_owner.get(device)
        if owner is None:
            removed = self.removed_devices.get(device)
            why = f"was removed at seq {removed}" if removed is not None else "is no device of a member"
            raise MembershipChangeError(f"{who}: device {member_id(device)} {why}")
        author_person = self.device_owner[entry.header.author]
        if body.revocation is not None and not verify_revocation(owner, self.space, device, body.revocation):
            raise DeviceNotPermittedError(f"{who}: the revocation of device {member_id(device)[:12]}… does not "
                                          f"verify under its person {member_id(owner)}")
        if self.members[author_person].role is not Role.ADMIN and not (
                author_person == owner and body.revocation is not None):
            raise DeviceNotPermittedError(
                f"{who}: device {member_id(device)[:12]}… of person {member_id(owner)[:12]}… removed by someone "
                "else's device: only an admin, or a device of the same person with the person's revocation, may")
        if len(self.members[owner].devices) == 1:
            raise MembershipChangeError(f"{who}: device {member_id(device)[:12]}… is the last device of "
                                        f"{member_id(owner)}: remove the member instead")

    def _check_rekey(self, entry: Entry, who: str) -> None:
        kind = entry.header.kind
        body = RekeyBody.decode(entry.body, kind.value)
        removed = body.member
        if kind is Kind.REMOVE_DEVICE:
            self._check_remove_device(body, entry, who)
        elif body.device is not None:
            raise MalformedEntryError(f"{who}: a {kind.value} entry names no device")
        elif kind is Kind.REMOVE_MEMBER:
            if removed is None or removed not in self.members:
                name = "nobody" if removed is None else member_id(removed)
                raise MembershipChangeError(f"{who}: {name} is not a member")
            self._keep_an_admin(removed, None, who)
        elif removed is not None:
            raise MalformedEntryError(f"{who}: a rotation names no member")
        if body.epoch != self.epoch + 1:
            raise MembershipChangeError(f"{who}: starts epoch {body.epoch}, expected epoch {self.epoch + 1}")
        expected = set(self.key_recipients(without=removed, without_device=body.device))
        found = {recipient for recipient, _ in body.grants}
        if found != expected:
            missing = ", ".join(member_id(k)[:12] for k in expected - found) or "none"
            extra = ", ".join(member_id(k)[:12] for k in found - expected) or "none"
            raise MembershipChangeError(f"{who}: the new key must go to every member who stays and every "
                                        f"open invite (missing: {missing}; not entitled: {extra})")

    def _check_set_role(self, entry: Entry, who: str) -> None:
        body = SetRoleBody.decode(entry.body)
        member = self.members.get(body.member)
        if member is None:
            raise MembershipChangeError(f"{who}: {member_id(body.member)} is not a member")
        if member.role is body.role:
            raise MembershipChangeError(f"{who}: {member_id(body.member)} already has role {body.role.value}")
        self._keep_an_admin(body.member, body.role, who)

    def loses_last_admin(self, member: bytes, new_role: Role | None) -> bool:
        """Whether giving ``member`` ``new_role`` (None: removing them) leaves the space with no admin.

        Such a space could never change its membership or keys again, so the rules refuse it;
        the SDK asks the same question before it signs anything.
        """
        return self.members[member].role is Role.ADMIN and new_role is not Role.ADMIN and len(self.admins()) == 1

    def _keep_an_admin(self, member: bytes, new_role: Role | None, who: str) -> None:
        if self.loses_last_admin(member, new_role):
            raise MembershipChangeError(f"{who}: {member_id(member)} is the last admin; add another admin first")

    def _check_policy(self, entry: Entry, who: str) -> None:
        Policy.decode(entry.body)

    def _check_witnesses(self, entry: Entry, who: str) -> None:
        try:
            WitnessPolicy.decode_body(entry.body)
        except ProtocolError as exc:
            raise MalformedEntryError(f"{who}: malformed witnesses entry: {exc}") from exc

    def _check_attest(self, entry: Entry, who: str) -> None:
        body = AttestBody.decode(entry.body)
        record = self.snapshots.get(body.snapshot)
        if record is None:
            raise AttestationError(f"{who}: attests seq {body.snapshot}, which is not one of the newest "
                                   f"{TRACKED_SNAPSHOTS} snapshots of the log")
        # One attestation per person, never of the person's own snapshot (another device of theirs included).
        if self.same_person(record.author, entry.header.author):
            raise AttestationError(f"{who}: attests its author's own snapshot at seq {body.snapshot}")
        if any(self.same_person(a.member, entry.header.author) for a in record.attestations):
            raise AttestationConflictError(
                f"{who}: {entry.author_id} already attested the snapshot at seq {body.snapshot}")
        if body.anchor is not None and body.anchor != record.anchor:
            anchor = anchor_of(record.base)
            found = "keeps none there" if record.anchor is None else f"has {record.anchor.hex()[:16]}…"
            raise AttestationError(f"{who}: states the log state at seq {anchor} (the snapshot's anchor) as "
                                   f"{body.anchor.hex()[:16]}…; the log {found}")

    def _check_invite(self, entry: Entry, who: str) -> None:
        body = InviteBody.decode(entry.body)
        if body.invite in self.invites or body.invite in self.members or body.invite in self.device_owner:
            raise MembershipChangeError(f"{who}: invite {member_id(body.invite)[:12]} already exists")
        if self.epoch not in {epoch for epoch, _ in body.sealed_keys}:
            raise MembershipChangeError(f"{who}: the invite does not carry the key of epoch {self.epoch}")

    def _check_revoke(self, entry: Entry, who: str) -> None:
        body = RevokeInviteBody.decode(entry.body)
        invite = self.invites.get(body.invite)
        if invite is None or not invite.open:
            raise MembershipChangeError(f"{who}: invite {member_id(body.invite)[:12]} is not open")

    def _check_join(self, entry: Entry, who: str) -> None:
        h = entry.header
        body = JoinBody.decode(entry.body)
        invite = self.invites.get(body.invite)
        name = member_id(body.invite)[:12]
        if invite is None:
            raise MembershipChangeError(f"{who}: no invite {name} in this space")
        if invite.revoked:
            raise MembershipChangeError(f"{who}: invite {name} was revoked")
        if not invite.open:
            raise MembershipChangeError(f"{who}: invite {name} is used up ({invite.used} of {invite.uses})")
        if invite.expired_at(h.time_ms):
            raise MembershipChangeError(f"{who}: invite {name} expired before this join")
        if not verify_join_proof(body.invite, self.space, h.author, body.box_key, body.proof):
            raise MembershipChangeError(f"{who}: the join does not prove knowledge of invite {name}'s secret")
        cert = body.cert
        if cert is not None:
            if cert.device != h.author or cert.device_box != body.box_key:
                raise DeviceCertificateError(f"{who}: the device certificate is for device "
                                             f"{member_id(cert.device)[:12]}…, not the joining device")
            if cert.person in self.members:
                raise MembershipChangeError(f"{who}: person {member_id(cert.person)} is already a member: "
                                            "a device of theirs adds this one (add_device)")
        self._check_new_device(h.author, who)

    def _check_genesis(self, entry: Entry) -> None:
        h = entry.header
        if h.kind is not Kind.GENESIS:
            raise SpaceIdError(f"seq 1 holds a {h.kind.value} entry, expected the genesis entry")
        found = self.space if entry.redacted else space_id_of(entry.raw)  # checked when it arrived
        if found != self.space:
            raise SpaceIdError(
                f"the genesis entry hashes to {found.hex()[:16]}…, not to the space id {self.space.hex()[:16]}…"
            )
        if h.space or h.author_seq != 1 or h.epoch != FIRST_EPOCH or h.parent_seq != 0 \
                or h.parent_hash != crypto.ZERO_HASH or h.nonce:
            raise MalformedEntryError("genesis header must have no space, author_seq 1, epoch 1, parent 0")
        body = GenesisBody.decode(entry.body)
        if body.cert is not None and (body.cert.device != h.author or body.cert.device_box != body.creator_box):
            raise DeviceCertificateError(f"the genesis entry's device certificate is for device "
                                         f"{member_id(body.cert.device)[:12]}…, not its author {entry.author_id[:12]}…")

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
        kind = h.kind
        if kind is Kind.DATA:
            self.entries_in_epoch += 1
            self.data_since_snapshot += 1
            self.bytes_since_snapshot += len(entry.body_hash) + len(entry.header_bytes) + len(entry.body)
        elif kind is Kind.SNAPSHOT:
            self.snapshot = (seq, h.parent_seq)
            self.data_since_snapshot = 0
            self.bytes_since_snapshot = 0
            anchor = anchor_of(h.parent_seq)
            self.snapshots[seq] = SnapshotRecord(seq, h.parent_seq, h.epoch, h.author,
                                                 anchor=self.anchors.get(anchor) if anchor else None)
            for old in sorted(self.snapshots)[:-TRACKED_SNAPSHOTS]:
                del self.snapshots[old]
        elif kind is Kind.ATTEST:
            attest = AttestBody.decode(entry.body)
            record = self.snapshots[attest.snapshot]
            self.snapshots[attest.snapshot] = dataclasses.replace(
                record, attestations=(*record.attestations,
                                      Attestation(h.author, seq, attest.tag, attest.agrees, attest.anchor is not None)))
        elif kind is Kind.GENESIS:
            body = GenesisBody.decode(entry.body)
            self.relay_key = body.relay_key
            self.witness_policies = [(seq, body.witnesses)]
            self.client_ids_bound = body.client_ids
            self.epoch_started[FIRST_EPOCH] = h.time_ms
            person = h.author if body.cert is None else body.cert.person
            self._admit(Member(person, body.creator_box, Role.ADMIN, None, seq,
                               (Device(h.author, body.creator_box, body.cert, seq),)))
        elif kind is Kind.ADD_MEMBER:
            add = AddMemberBody.decode(entry.body)
            self._admit(Member(add.member, add.box_key, add.role, self.device_owner[h.author], seq,
                               (Device(add.device, add.box_key, add.cert, seq),)))
        elif kind is Kind.ADD_DEVICE:
            cert = AddDeviceBody.decode(entry.body).cert
            member = self.members[cert.person]
            self.members[cert.person] = dataclasses.replace(
                member, devices=(*member.devices, Device(cert.device, cert.device_box, cert, seq)))
            self.device_owner[cert.device] = cert.person
        elif kind.starts_epoch:
            rekey = RekeyBody.decode(entry.body, kind.value)
            if rekey.member is not None:
                for device in self.members.pop(rekey.member).devices:
                    del self.device_owner[device.key]
                self.removed_people[rekey.member] = seq
            if rekey.device is not None:
                owner = self.device_owner.pop(rekey.device)
                member = self.members[owner]
                self.members[owner] = dataclasses.replace(
                    member, devices=tuple(d for d in member.devices if d.key != rekey.device))
                self.removed_devices[rekey.device] = seq
                self.removed_device_owner[rekey.device] = owner
            self.epoch = rekey.epoch
            self.epoch_started[rekey.epoch] = h.time_ms
            self.entries_in_epoch = 0
        elif kind is Kind.SET_ROLE:
            change = SetRoleBody.decode(entry.body)
            self.members[change.member] = dataclasses.replace(self.members[change.member], role=change.role)
        elif kind is Kind.POLICY:
            self.policy = Policy.decode(entry.body)
        elif kind is Kind.WITNESSES:
            self.witness_policies = [*self.witness_policies, (seq, WitnessPolicy.decode_body(entry.body))]
        elif kind is Kind.INVITE:
            inv = InviteBody.decode(entry.body)
            self.invites[inv.invite] = Invite(inv.invite, inv.box_key, inv.role, inv.uses, 0, inv.expires_ms,
                                              inv.history, self.device_owner[h.author], seq)
        elif kind is Kind.REVOKE_INVITE:
            revoked = RevokeInviteBody.decode(entry.body).invite
            self.invites[revoked] = dataclasses.replace(self.invites[revoked], revoked=True)
        elif kind is Kind.JOIN:
            join = JoinBody.decode(entry.body)
            invite = self.invites[join.invite]
            self.invites[join.invite] = dataclasses.replace(invite, used=invite.used + 1)
            person = h.author if join.cert is None else join.cert.person
            self._admit(Member(person, join.box_key, invite.role, invite.created_by, seq,
                               (Device(h.author, join.box_key, join.cert, seq),)))
        self.heads.append(head)
        if seq % ANCHOR_GRID == 0 and not self.sparse:
            self._note_anchor(seq)

    def apply_pruned(self, seq: int, head: bytes) -> None:
        """In a sparse state: an entry the relay sent as its digest alone stands at ``seq``."""
        if not self.sparse or seq != len(self.heads):
            raise ValueError(f"a pruned entry at seq {seq} in a {'sparse' if self.sparse else 'full'} state "
                             f"at seq {self.seq}")
        self.heads.append(head)

    def _note_anchor(self, seq: int) -> None:
        # The oldest dropped first: the digest at ``seq`` then covers exactly the ring the state
        # holds at ``seq`` (less its own digest), which a device that installs it recomputes.
        while len(self.anchors) >= ANCHORS_KEPT:
            del self.anchors[next(iter(self.anchors))]
        self.anchors[seq] = self.state_digest()

    def _admit(self, member: Member) -> None:
        self.members[member.sign_key] = member
        self.removed_people.pop(member.sign_key, None)
        for device in member.devices:
            self.device_owner[device.key] = member.sign_key

    # --- all or nothing -------------------------------------------------------------------

    def begin(self) -> None:
        self._journal = _Journal(self.seq, self.epoch, self.relay_key, dict(self.members), dict(self.invites),
                                 dict(self.epoch_started), self.policy, self.entries_in_epoch,
                                 (self.snapshot, self.data_since_snapshot, self.bytes_since_snapshot),
                                 dict(self.snapshots), list(self.witness_policies), dict(self.anchors),
                                 devices=(dict(self.device_owner), dict(self.removed_devices),
                                          dict(self.removed_people), dict(self.removed_device_owner)))

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal = self._journal
        if journal is None:
            return
        del self.heads[journal.seq + 1 :]
        self.epoch = journal.epoch
        self.relay_key = journal.relay_key
        self.members = journal.members
        self.invites = journal.invites
        self.epoch_started = journal.epoch_started
        self.policy = journal.policy
        self.entries_in_epoch = journal.entries_in_epoch
        self.snapshot, self.data_since_snapshot, self.bytes_since_snapshot = journal.snapshot
        self.snapshots = journal.snapshots
        self.witness_policies = journal.witness_policies
        self.anchors = journal.anchors
        _restore(self.author_seqs, journal.author_seqs)
        self.device_owner, self.removed_devices, self.removed_people, self.removed_device_owner = journal.devices
        self._journal = None


def _who(entry: Entry, seq: int) -> str:
    """"<entry> at seq N" for an error message: formatted only when one is raised.

    ``check`` runs for every entry a device verifies (thousands on a new device); naming the
    author costs a base64 encoding that only an error needs.
    """
    return f"{entry.describe()} at seq {seq}"


def _restore(target: dict[bytes, Any], saved: dict[bytes, Any]) -> None:
    for key, old in saved.items():
        if old is None:
            target.pop(key, None)
        else:
            target[key] = old


_MANAGING = {
    Kind.GENESIS: "create the space",
    Kind.ADD_MEMBER: "add members",
    Kind.REMOVE_MEMBER: "remove members",
    Kind.SET_ROLE: "change roles",
    Kind.ROTATE: "rotate the key",
    Kind.POLICY: "set the policy",
    Kind.INVITE: "create invites",
    Kind.REVOKE_INVITE: "revoke invites",
    Kind.JOIN: "join",
    Kind.DATA: "write",
    Kind.SNAPSHOT: "write",
    Kind.ATTEST: "attest snapshots",
    Kind.ADD_DEVICE: "add devices",
    Kind.REMOVE_DEVICE: "remove devices",
    Kind.WITNESSES: "set the witnesses",
}

# Control kinds any member may author: its own attestations and devices (their body rules say whose).
_ANY_ROLE = frozenset({Kind.ATTEST, Kind.ADD_DEVICE, Kind.REMOVE_DEVICE})

_BODY_CHECKS: dict[Kind, Callable[[LogState, Entry, str], None]] = {
    Kind.ADD_MEMBER: LogState._check_add,
    Kind.REMOVE_MEMBER: LogState._check_rekey,
    Kind.ROTATE: LogState._check_rekey,
    Kind.SET_ROLE: LogState._check_set_role,
    Kind.POLICY: LogState._check_policy,
    Kind.INVITE: LogState._check_invite,
    Kind.REVOKE_INVITE: LogState._check_revoke,
    Kind.JOIN: LogState._check_join,
    Kind.ATTEST: LogState._check_attest,
    Kind.ADD_DEVICE: LogState._check_add_device,
    Kind.REMOVE_DEVICE: LogState._check_rekey,
    Kind.WITNESSES: LogState._check_witnesses,
}
