"""Building key entries, and re-issuing our unsent entries when the epoch moves under them.

When another admin's rotation (or a removal) lands before our queued entries, the relay
refuses them under the old epoch. Nothing typed may be lost, so the SDK re-issues each one
under the new epoch: data is re-encrypted, key-carrying bodies are re-sealed, and entries
that the rotation made pointless (our own rotation, a removal already done) are dropped.
"""

from __future__ import annotations

from . import crypto
from .entry import Entry, Kind, open_body
from .identity import PublicIdentity
from .invites import InviteBody
from .log_state import LogState
from .membership import AddMemberBody, RekeyBody, add_member_body, seal_grants


def keys_to_give(keys: dict[int, bytes], epoch: int, history: bool) -> dict[int, bytes]:
    """Every epoch key we hold (history) or only the current one."""
    if history:
        return dict(keys)
    return {epoch: keys[epoch]} if epoch in keys else {}


def rekey_body(state: LogState, remove: bytes | None = None) -> bytes:
    """A new epoch with a fresh key sealed to everyone who stays and every open invite."""
    key = crypto.random_key()
    epoch = state.epoch + 1
    return RekeyBody(epoch, seal_grants(state.key_recipients(without=remove), key),
                     crypto.key_commitment(state.space, epoch, key), remove).encode()


def invite_body(invite: InviteBody, keys: dict[int, bytes], epoch: int) -> bytes:
    given = keys_to_give(keys, epoch, invite.history)
    sealed = tuple((e, crypto.seal_to(invite.box_key, k)) for e, k in sorted(given.items()))
    return InviteBody(invite.invite, invite.box_key, invite.role, invite.uses, invite.expires_ms, invite.history,
                      sealed).encode()


def reissue(entry: Entry, state: LogState, keys: dict[int, bytes]) -> tuple[Kind, bytes] | None:
    """What to send instead of ``entry`` under the current epoch; None when it is no longer needed."""
    kind = entry.header.kind
    if kind is Kind.DATA:
        old = keys.get(entry.header.epoch)
        plaintext = None if old is None else open_body(entry, old)
        return None if plaintext is None else (kind, plaintext)
    if kind in (Kind.ROTATE, Kind.SNAPSHOT):
        return None  # the epoch already moved on; a snapshot is written again when due
    if kind is Kind.REMOVE_MEMBER:
        removed = RekeyBody.decode(entry.body, kind.value).member
        if removed is None or removed not in state.members:
            return None
        return kind, rekey_body(state, removed)
    if kind is Kind.ADD_MEMBER:
        add = AddMemberBody.decode(entry.body)
        if add.member in state.members:
            return None
        return kind, add_member_body(PublicIdentity(add.member, add.box_key), add.role,
                                     keys_to_give(keys, state.epoch, add.history), add.history)
    if kind is Kind.INVITE:
        return kind, invite_body(InviteBody.decode(entry.body), keys, state.epoch)
    return kind, entry.body  # set_role, policy, revoke_invite, join: no key inside
