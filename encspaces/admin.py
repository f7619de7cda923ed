"""The admin actions of a space: add and remove members, roles, rotation, policy, invites, snapshots.

Each action checks what it can before queuing anything (``NotPermittedError``: not an admin,
already a member, the last admin), queues its entries back to back, and returns once they are
in the verified log. An action that times out or is cancelled before any of its entries was
handed to the relay is withdrawn from the outbox and the local store (never published);
after that, the log decides (see ``Space``). ``AdminActions`` is owned by its ``Space`` and
wired through the ``SpaceHost`` protocol (encspaces/host.py), as the connection runner and the
local store's writer are; it is given the space's outbox (to withdraw from) and its
persistence (to make a withdrawal durable before the caller hears of it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .core.devices import CERT_PREFIX, DeviceCertificate
from .core.entry import Kind
from .core.identity import PublicIdentity, member_id, parse_member_id
from .core.invites import MAX_INVITE_USES, InviteBody, InviteLink, InviteSecret, RevokeInviteBody
from .core.log_state import LogState
from .core.membership import Policy, Role, SetRoleBody, add_device_body, add_member_body
from .core.outbox import Outbox
from .core.rekey import invite_body, keys_to_give, rekey_body
from .core.witness_policy import WitnessPolicy
from .deadline import check_timeout
from .errors import ArgumentTypeError, InvalidArgumentError, NotPermittedError, OperationTimeoutError
from .host import SpaceHost
from .persistence import Persistence
from .snapshot import content_hash, snapshot_payload

_T = TypeVar("_T")


@dataclass(eq=False)
class Action:
    """The entries one admin action queued, followed through re-issue, and why the relay refused one."""

    raws: list[bytes] = field(default_factory=list)
    refused: str | None = None

    def renamed(self, old: bytes, new: bytes | None) -> None:
        """Entry ``old`` was re-issued as ``new`` (None: dropped)."""
        if old in self.raws:
            self.raws.remove(old)
            if new is not None:
                self.raws.append(new)


class AdminActions:
    """The space's admin actions in progress, and the actions themselves (``Space`` delegates to them)."""

    def __init__(self, host: SpaceHost, box: Outbox, persistence: Persistence) -> None:
        self._host = host
        self._box = box
        self._persistence = persistence
        self._actions: list[Action] = []  # in progress (see run)

    # --- what the space reports --------------------------------------------------------------

    def renamed(self, old: bytes, new: bytes | None) -> None:
        """Our entry ``old`` was re-issued as ``new`` (None: dropped): the actions waiting for it follow."""
        for action in self._actions:
            action.renamed(old, new)

    def refused(self, raw: bytes, message: str) -> None:
        """The relay dropped our entry ``raw`` as moot (another admin's change): its action fails with ``message``."""
        for action in self._actions:
            if raw in action.raws:
                action.refused = message

    # --- the actions -------------------------------------------------------------------------

    async def add_member(
        self, public_identity: PublicIdentity | DeviceCertificate | str, role: str | Role, history: bool,
        timeout: float | None,
    ) -> None:
        state = self._require_admin("add members")
        if not isinstance(public_identity, (str, PublicIdentity, DeviceCertificate)):
            raise ArgumentTypeError(f"a member is a PublicIdentity, a DeviceCertificate or its string, "
                                    f"not {type(public_identity).__name__}")
        cert = None
        if isinstance(public_identity, DeviceCertificate):
            cert = public_identity
        elif isinstance(public_identity, str) and public_identity.strip().startswith(CERT_PREFIX):
            cert = DeviceCertificate.parse(public_identity)
        if cert is not None:
            new = cert.public
        elif isinstance(public_identity, str):
            new = PublicIdentity.parse(public_identity)
        else:
            assert isinstance(public_identity, PublicIdentity)
            new = public_identity
        person = new.sign_key if cert is None else cert.person
        if person in state.members or state.person_of(new.sign_key) is not None:
            raise NotPermittedError(f"{member_id(person)} is already a member")
        if new.sign_key in state.removed_devices:
            raise NotPermittedError(f"device {new.member_id} was removed from this space: pair a new device")
        keys = keys_to_give(self._host.verifier.epoch_keys, state.epoch, history)
        body = add_member_body(new, Role(role), keys, history, cert)

        async def steps(action: Action) -> None:
            await self.control(Kind.ADD_MEMBER, body, action)
            if not history:
                await self.snapshot(action)  # what they cannot decrypt, they start from

        await self.run("add_member", timeout, steps)

    async def add_device(self, device: DeviceCertificate | str, history: bool, timeout: float | None) -> None:
        self._host.check_writable(need_write=False)
        cert = DeviceCertificate.parse(device) if isinstance(device, str) else device
        if not isinstance(cert, DeviceCertificate):
            raise ArgumentTypeError(f"a device is named by its DeviceCertificate or its string, not "
                                    f"{type(device).__name__}")
        state = self._host.verifier.state
        me = self._host.identity.public.sign_key
        mine = state.person_of(me)
        if cert.person != mine:
            raise NotPermittedError(f"the certificate is for a device of {member_id(cert.person)}, this device "
                                    f"belongs to {member_id(mine or me)}: only a device of the same person "
                                    "may add it")
        if cert.device in state.device_owner:
            raise NotPermittedError(f"device {member_id(cert.device)} is already in this space")
        if cert.device in state.removed_devices:
            raise NotPermittedError(f"device {member_id(cert.device)} was removed from this space: pair a new device")
        body = add_device_body(cert, keys_to_give(self._host.verifier.epoch_keys, state.epoch, history), history)

        async def steps(action: Action) -> None:
            await self.control(Kind.ADD_DEVICE, body, action)
            if not history:
                await self.snapshot(action)

        await self.run("add_device", timeout, steps)

    async def remove_device(self, device: str, timeout: float | None) -> None:
        self._host.check_writable(need_write=False)
        key = parse_member_id(device) if isinstance(device, str) else device
        state = self._host.verifier.state
        owner = state.device_owner.get(key)
        if owner is None:
            raise NotPermittedError(f"{member_id(key)} is no device of a member of this space")
        if len(state.members[owner].devices) == 1:
            raise NotPermittedError(f"{member_id(key)} is the last device of {member_id(owner)}: remove the "
                                    "member instead")
        person = self._host.identity.person
        revocation = person.revoke(self._host.space_bytes, key) if person is not None and person.key == owner else None
        if revocation is None and state.role_of(self._host.identity.public.sign_key) is not Role.ADMIN:
            raise NotPermittedError(f"only an admin, or a device holding the person key of {member_id(owner)}, "
                                    "may remove this device")
        body = rekey_body(state, device=key, revocation=revocation)
        await self.run("remove_device", timeout, lambda action: self.control(Kind.REMOVE_DEVICE, body, action))

    async def remove_member(self, member: str | PublicIdentity, revoke_invites: bool, timeout: float | None) -> None:
        state = self._require_admin("remove members")
        key = self._member_key(member)
        self._keep_an_admin(state, key, None)
        revoking = [k for k, inv in state.invites.items() if inv.open] if revoke_invites else []
        entries = [(Kind.REVOKE_INVITE, RevokeInviteBody(k).encode()) for k in revoking]
        entries.append((Kind.REMOVE_MEMBER, rekey_body(state, remove=key, revoking=revoking)))
        await self.run("remove_member", timeout, lambda action: self.control_all(entries, action))

    async def set_role(self, member: str | PublicIdentity, role: str | Role, timeout: float | None) -> None:
        state = self._require_admin("change roles")
        key, new_role = self._member_key(member), Role(role)
        if state.members[key].role is new_role:
            raise NotPermittedError(f"{member_id(key)} already has role {new_role.value}")
        self._keep_an_admin(state, key, new_role)
        body = SetRoleBody(key, new_role).encode()
        await self.run("set_role", timeout, lambda action: self.control(Kind.SET_ROLE, body, action))

    async def rotate_key(self, timeout: float | None) -> None:
        body = rekey_body(self._require_admin("rotate the key"))
        await self.run("rotate_key", timeout, lambda action: self.control(Kind.ROTATE, body, action))

    async def set_policy(self, policy: Policy, timeout: float | None) -> None:
        self._require_admin("set the policy")
        body = policy.encode()
        await self.run("set_policy", timeout, lambda action: self.control(Kind.POLICY, body, action))

    async def set_witnesses(self, policy: WitnessPolicy, timeout: float | None) -> None:
        self._require_admin("set the witnesses")
        body = policy.encode_body()
        await self.run("set_witnesses", timeout, lambda action: self.control(Kind.WITNESSES, body, action))

    async def create_invite(
        self, role: str | Role, uses: int, expires_in: float | None, history: bool, timeout: float | None,
    ) -> str:
        state = self._require_admin("create invites")
        if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_INVITE_USES:
            raise InvalidArgumentError(f"an invite's uses are an int in [1, {MAX_INVITE_USES}], not {uses!r}")
        secret = InviteSecret.generate()
        expires = None if expires_in is None else int((self._host.options.clock.wall() + expires_in) * 1000)
        invite = InviteBody(secret.invite_key, secret.box_key, Role(role), uses, expires, history, ())
        body = invite_body(invite, self._host.verifier.epoch_keys, state.epoch)

        async def steps(action: Action) -> str:
            await self.control(Kind.INVITE, body, action)
            if not history:
                await self.snapshot(action)  # a newcomer without history starts from it
            # The relay in use first, then the others: the newcomer fails over as we do.
            also = tuple(url for url in self._host.urls if url != self._host.url)
            return str(InviteLink(self._host.url, self._host.space_bytes, secret, also))

        return await self.run("create_invite", timeout, steps)

    async def revoke_invite(self, invite: str, timeout: float | None) -> None:
        state = self._require_admin("revoke invites")
        if not isinstance(invite, str):
            raise ArgumentTypeError(f"an invite is named by its id or link (a str), not {type(invite).__name__}")
        key = InviteLink.parse(invite).secret.invite_key if invite.startswith("esinv") else parse_member_id(invite)
        found = state.invites.get(key)
        if found is None or not found.open:
            raise NotPermittedError(f"no open invite {invite[:20]}… in this space")
        entries = [(Kind.REVOKE_INVITE, RevokeInviteBody(key).encode()),
                   (Kind.ROTATE, rekey_body(state, revoking=[key]))]
        await self.run("revoke_invite", timeout, lambda action: self.control_all(entries, action))

    async def write_snapshot(self, timeout: float | None) -> None:
        self._host.check_writable()
        await self.run("write_snapshot", timeout, self.snapshot)

    async def snapshot(self, action: Action) -> None:
        """Post a snapshot of the document as one step of ``action``."""
        host = self._host
        await host.sync()  # our own edits in the log: the document is then exactly the verified state
        if host.unsent or host.verifier.awaiting_key or host.snapshot_gap:
            raise NotPermittedError("the document is not settled (edits in flight or entries not yet readable)")
        verifier = host.verifier
        payload = snapshot_payload(host.document.state(), content_hash(host.document.doc),
                                   verifier.state.client_ids_bound, verifier.client_owners.first)
        await self.control(Kind.SNAPSHOT, payload, action)

    # --- checks before anything is queued ----------------------------------------------------

    def _require_admin(self, action: str) -> LogState:
        self._host.check_writable()
        state = self._host.verifier.state
        role = state.role_of(self._host.identity.public.sign_key)
        if role is None or not role.can_manage:
            raise NotPermittedError(f"only an admin may {action}; your role is {role.value if role else 'none'}")
        return state

    def _member_key(self, member: str | PublicIdentity) -> bytes:
        if not isinstance(member, (str, PublicIdentity)):
            raise ArgumentTypeError(f"a member is named by a member id, a PublicIdentity or its string, "
                                    f"not {type(member).__name__}")
        key = member.sign_key if isinstance(member, PublicIdentity) else (
            PublicIdentity.parse(member).sign_key if member.startswith("esid") else parse_member_id(member))
        person = self._host.verifier.state.person_of(key)  # a device's id names its person
        if person is None:
            raise NotPermittedError(f"{member_id(key)} is not a member of this space")
        return person

    @staticmethod
    def _keep_an_admin(state: LogState, member: bytes, new_role: Role | None) -> None:
        if state.loses_last_admin(member, new_role):
            raise NotPermittedError(
                f"{member_id(member)} is the last admin of the space: make someone else admin first"
            )

    # --- queuing, waiting, withdrawing -------------------------------------------------------

    async def control(self, kind: Kind, body: bytes, action: Action | None = None) -> None:
        await self.control_all([(kind, body)], action)

    async def control_all(self, entries: list[tuple[Kind, bytes]], action: Action | None = None) -> None:
        """Queue control entries back to back and return once they are in the verified log.

        Without ``action`` (a join) it runs as an action of its own, withdrawn if cancelled.
        """
        if action is None:
            await self.run(entries[0][0].value, None, lambda own: self.control_all(entries, own))
            return
        self._host.flush_batch()
        for kind, body in entries:
            action.raws.append(self._host.queue_entry(kind, body).raw)
        await self._host.sync()
        if action.refused is not None:
            raise NotPermittedError(f"the relay refused it: {action.refused}")

    async def run(self, what: str, timeout: float | None, steps: Callable[[Action], Awaitable[_T]]) -> _T:
        """Run an admin action's ``steps`` within ``timeout`` seconds (None: as long as it takes);
        on timeout or cancellation, withdraw it if nothing of it was submitted (see ``Space``)."""
        check_timeout(timeout)
        action = Action()
        self._actions.append(action)
        limit = asyncio.timeout(timeout)
        try:
            async with limit:
                return await steps(action)
        except asyncio.CancelledError:
            self._withdraw(action)
            raise
        except TimeoutError as exc:
            if not limit.expired():
                raise
            outcome = self._withdraw(action)
            await self._persistence.persist()  # the withdrawal is on disk before the caller hears of it
            raise OperationTimeoutError(f"{what} timed out after {timeout:g} s: {outcome}") from exc
        finally:
            self._actions.remove(action)

    def _withdraw(self, action: Action) -> str:
        """Take ``action``'s queued entries out of the outbox unless one was submitted; says what happened."""
        verifier = self._host.verifier
        outcome, renames = self._box.withdraw(action.raws, verifier.state, verifier.epoch_keys)
        if renames:
            self._host.renumbered(renames)
        return outcome.value
