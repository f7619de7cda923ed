"""Building key entries, and re-issuing our unsent entries when the epoch moves under them.

When another admin's rotation (or a removal) lands before our queued entries, the relay
refuses them under the old epoch. Nothing typed may be lost, so the SDK re-issues each one
under the new epoch: data is re-encrypted, key-carrying bodies are re-sealed, and entries
that the rotation made pointless (our own rotation, a removal already done) are dropped.

A rekey queued behind revocations of our own is built for the state after them: the new key
goes to no invite that an earlier entry of ours revokes (``revoking``), since the log's rules
(``LogState.key_recipients``) judge it once those revocations are in.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from . import crypto
from .entry import Entry, Kind, open_body
from .identity import PublicIdentity
from .invites import InviteBody, RevokeInviteBody
from .log_state import LogState
from .membership import AddDeviceBody, AddMemberBody, RekeyBody, add_device_body, add_member_body, seal_grants


def keys_to_give(keys: dict[int, bytes], epoch: int, history: bool) -> dict[int, bytes]:
    """Every epoch key we hold (history) or only the current one."""
    if history:
        return dict(keys)
    return {epoch: keys[epoch]} if epoch in keys else {}


def rekey_body(state: LogState, remove: bytes | None = None, revoking: Collection[bytes] = (), *,
               device: bytes | None = None, revocation: bytes | None = None) -> bytes:
    """A new epoch with a fresh key sealed to every device that stays and every open invite.

    ``revoking``: invites that entries queued before this one revoke; they get no key.
    ``device``: the device a remove_device entry removes (with the person's ``revocation``, or None).
    """
    key = crypto.random_key()
    recipients = state.key_recipients(without=remove, without_device=device)
    for invite in revoking:
        recipients.pop(invite, None)
    epoch = state.epoch + 1
    commit = crypto.key_commitment(state.space, epoch, key)
    return RekeyBody(epoch, seal_grants(recipients, key), commit, remove, device, revocation).encode()


def invite_body(invite: InviteBody, keys: dict[int, bytes], epoch: int) -> bytes:
    given = keys_to_give(keys, epoch, invite.history)
    sealed = tuple((e, crypto.seal_to(invite.box_key, k)) for e, k in sorted(given.items()))
    return InviteBody(invite.invite, invite.box_key, invite.role, invite.uses, invite.expires_ms, invite.history,
                      sealed).encode()


def reissue(
    entry: Entry, state: LogState, keys: dict[int, bytes], revoking: Collection[bytes] = ()
) -> tuple[Kind, bytes] | None:
    """What to send instead of ``entry`` under the current epoch; None when it is no longer needed.

    ``revoking``: invites revoked by entries re-issued ahead of this one (see ``reissue_all``).
    """
    kind = entry.header.kind
    if kind is Kind.DATA:
        old = keys.get(entry.header.epoch)
        plaintext = None if old is None else open_body(entry, old)
        return None if plaintext is None else (kind, plaintext)
    if kind is Kind.SNAPSHOT:
        return None  # a snapshot is written again when due
    if kind is Kind.ROTATE:
        # Pointless once the epoch moved on, unless it must follow a revocation re-issued ahead of
        # it (that invite holds every key up to now) or the epoch did not move (an entry before it
        # was withdrawn or refused): then a fresh key for the recipients as they are now.
        if entry.header.epoch != state.epoch and not revoking:
            return None
        return kind, rekey_body(state, revoking=revoking)
    if kind is Kind.REMOVE_MEMBER:
        removed = RekeyBody.decode(entry.body, kind.value).member
        if removed is None or removed not in state.members:
            return None
        return kind, rekey_body(state, removed, revoking)
    if kind is Kind.REMOVE_DEVICE:
        body = RekeyBody.decode(entry.body, kind.value)
        if body.device is None or body.device not in state.device_owner:
            return None
        return kind, rekey_body(state, revoking=revoking, device=body.device, revocation=body.revocation)
    if kind is Kind.ADD_MEMBER:
        add = AddMemberBody.decode(entry.body)
        if add.member in state.members:
            return None
        return kind, add_member_body(PublicIdentity(add.device, add.box_key), add.role,
                                     keys_to_give(keys, state.epoch, add.history), add.history, add.cert)
    if kind is Kind.ADD_DEVICE:
        device = AddDeviceBody.decode(entry.body)
        if device.cert.device in state.device_owner:
            return None
        return kind, add_device_body(device.cert, keys_to_give(keys, state.epoch, device.history), device.history)
    if kind is Kind.INVITE:
        return kind, invite_body(InviteBody.decode(entry.body), keys, state.epoch)
    return kind, entry.body  # set_role, policy, revoke_invite, join: no key inside


def reissue_all(
    entries: Sequence[Entry], state: LogState, keys: dict[int, bytes]
) -> list[tuple[Entry, tuple[Kind, bytes] | None]]:
    """``reissue`` for a run of our entries in order: each rekey is built for the state after the
    revocations re-issued ahead of it."""
    revoking: set[bytes] = set()
    out: list[tuple[Entry, tuple[Kind, bytes] | None]] = []
    for entry in entries:
        again = reissue(entry, state, keys, revoking)
        if again is not None and again[0] is Kind.REVOKE_INVITE:
            revoking.add(RevokeInviteBody.decode(again[1]).invite)
        out.append((entry, again))
    return out
