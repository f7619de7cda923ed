"""Forgetting a key for good: blank every sealed copy of it in this device's own store.

Deleting an epoch key is not enough while the store still holds the entries that delivered
it, sealed to this member's long-term X25519 key: whoever took the device (store and
identity file) could open them again. So the local copies of those entries get their sealed
keys for forgotten epochs blanked. Their digest (header, body hash, signature) is unchanged,
so the chain still verifies; only the body no longer matches its hash, which the local store
marks (``Entry.redacted``). The relay's copies are untouched: they are sealed to this
member's key, which the relay does not hold.
"""

from __future__ import annotations

import dataclasses

from .entry import Entry, Kind
from .invites import InviteBody
from .membership import AddDeviceBody, AddMemberBody, GenesisBody, RekeyBody


def redact(entry: Entry, forgotten: set[int]) -> bytes | None:
    """The local form of ``entry`` without sealed keys of ``forgotten`` epochs; None if it holds none."""
    kind = entry.header.kind
    if not forgotten or kind.is_encrypted:
        return None
    body: bytes | None = None
    if kind is Kind.GENESIS:
        genesis = GenesisBody.decode(entry.body)
        if 1 in forgotten and genesis.sealed_key:
            body = dataclasses.replace(genesis, sealed_key=b"").encode()
    elif kind is Kind.ADD_MEMBER:
        add = AddMemberBody.decode(entry.body)
        keys = tuple((e, b"" if e in forgotten else k) for e, k in add.sealed_keys)
        if keys != add.sealed_keys:
            body = dataclasses.replace(add, sealed_keys=keys).encode()
    elif kind is Kind.ADD_DEVICE:
        device = AddDeviceBody.decode(entry.body)
        keys = tuple((e, b"" if e in forgotten else k) for e, k in device.sealed_keys)
        if keys != device.sealed_keys:
            body = dataclasses.replace(device, sealed_keys=keys).encode()
    elif kind.starts_epoch:
        rekey = RekeyBody.decode(entry.body, kind.value)
        if rekey.epoch in forgotten and any(sealed for _, sealed in rekey.grants):
            body = dataclasses.replace(rekey, grants=tuple((r, b"") for r, _ in rekey.grants)).encode()
    elif kind is Kind.INVITE:
        invite = InviteBody.decode(entry.body)
        keys = tuple((e, b"" if e in forgotten else k) for e, k in invite.sealed_keys)
        if keys != invite.sealed_keys:
            body = InviteBody(invite.invite, invite.box_key, invite.role, invite.uses, invite.expires_ms,
                              invite.history, keys).encode()
    return None if body is None else entry.redact(body)
