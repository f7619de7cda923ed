"""Admission: turn a client's Hello into who it is, which space it wants, and whether it creates it.

Pure checks, no I/O: the session supplies the challenge nonce it sent and the clock. A hello
is only good for this relay, this connection's challenge and a few minutes, so a captured
hello cannot be replayed elsewhere or later. A create carries the genesis entry, which names
the space (its hash) and pins the relay key: the relay refuses to host a space that trusts
another relay, since every head it signed there would be rejected by the clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from encspaces.core import crypto
from encspaces.core.codes import RefusalCode
from encspaces.core.entry import Entry
from encspaces.core.identity import member_id
from encspaces.core.log_state import GENESIS_SEQ, LogState, space_id_of
from encspaces.core.membership import GenesisBody
from encspaces.core.messages import AuthStatement, Hello
from encspaces.errors import ProtocolError, RuleError, VerificationError

from .refusals import Refusal, too_large


@dataclass(frozen=True)
class Admission:
    """A hello that passed: the authenticated member, its space, where its log stands."""

    space: bytes
    member: bytes
    since_seq: int
    genesis: Entry | None  # present when the client creates the space
    # A newcomer's invite (key, proof over the auth statement); checked against the log by the room.
    invite: tuple[bytes, bytes] | None = None
    auth: bytes = b""
    fast: bool = False  # the client starts from the newest snapshot
    anchored: bool = False  # and may start at its anchor (entries before it as digests)


def check_hello(
    hello: Hello, *, relay_key: bytes, nonce: bytes, now_ms: int, max_skew_ms: int, max_entry_size: int
) -> Admission:
    """Raise a Refusal naming the first problem with ``hello``, else what it admits."""
    try:
        auth = AuthStatement.decode(hello.auth)
    except ProtocolError as exc:
        raise Refusal(RefusalCode.MALFORMED, f"hello: {exc}") from exc
    if auth.relay_key != relay_key:
        raise Refusal(RefusalCode.BAD_AUTH, f"the hello is signed for relay {member_id(auth.relay_key)}, "
                                            f"this relay is {member_id(relay_key)}")
    if auth.nonce != nonce:
        raise Refusal(RefusalCode.BAD_AUTH,
                      "the hello answers another challenge (nonce mismatch): sign this connection's nonce")
    skew = auth.time_ms - now_ms
    if abs(skew) > max_skew_ms:
        raise Refusal(RefusalCode.BAD_AUTH, f"the hello's time is {skew / 1000:+.0f} s from the relay's clock, "
                                            f"over the limit of {max_skew_ms / 1000:.0f} s: check the device's clock")
    if not crypto.verify(auth.member, crypto.CTX_AUTH, hello.auth, hello.signature):
        raise Refusal(RefusalCode.BAD_AUTH,
                      f"the hello's signature does not verify for member {member_id(auth.member)}")
    genesis = None
    if hello.genesis is not None:
        genesis = check_genesis(hello.genesis, space=auth.space, member=auth.member, relay_key=relay_key,
                                max_entry_size=max_entry_size)
    return Admission(auth.space, auth.member, hello.since_seq, genesis, hello.invite, hello.auth, hello.fast,
                     hello.anchored)


def check_genesis(raw: bytes, *, space: bytes, member: bytes, relay_key: bytes, max_entry_size: int) -> Entry:
    """The genesis entry of a create, checked as every client will check it at seq 1."""
    if len(raw) > max_entry_size:
        raise too_large(f"genesis entry of {len(raw)} bytes is over the limit of {max_entry_size}")
    found = space_id_of(raw)
    if found != space:
        raise Refusal(RefusalCode.BAD_GENESIS, f"the genesis entry hashes to space {found.hex()[:16]}…, "
                                               f"the hello names {space.hex()[:16]}…")
    try:
        entry = Entry.decode(raw)
        entry.check_signature(GENESIS_SEQ)
        LogState(space).check(entry, GENESIS_SEQ)
        pinned = GenesisBody.decode(entry.body).relay_key
    except (RuleError, VerificationError) as exc:
        raise Refusal(RefusalCode.BAD_GENESIS, str(exc)) from exc
    if entry.header.author != member:
        raise Refusal(RefusalCode.BAD_GENESIS, f"the genesis entry is authored by {entry.author_id}, "
                                               f"the hello is signed by {member_id(member)}")
    if pinned != relay_key:
        raise Refusal(RefusalCode.WRONG_RELAY, f"the space's genesis pins relay {member_id(pinned)}, "
                                               f"this relay is {member_id(relay_key)}")
    return entry
