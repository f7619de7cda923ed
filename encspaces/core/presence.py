"""Presence: who is here and where their cursor is, plus a gossip of each member's view of the log.

Presence is ephemeral (the relay forwards it and never stores it) but not trusted any more
than entries are: each message is encrypted under the space's epoch key and signed by its
author. It also carries the newest head the *relay* signed for the sender (from a frame or
an acknowledgement). That turns every presence message into a cross-check of the relay that
a lying member cannot abuse, since only the relay can sign heads: a signed head that
disagrees with our chain at its seq proves a fork, and one for a seq that, while we are
connected, never reaches us proves the relay is withholding it.

The relay must neither read that cross-check (it would learn which members compare what, and
could drop exactly the messages that would expose it) nor replay an old one (a member's view
going back, a stale head instead of a fresh one): since version 2 everything but the routing
header (version, space, author, epoch, nonce) is sealed under the epoch key, including the head
claim, and the sealed part carries a per-sender counter that only goes up, and the epoch again.
A receiver drops (and counts) a message whose counter is not above the last it accepted from
that sender.

Pure: the caller passes the clock (seconds, monotonic) and the verifier's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ForkError, InvalidArgumentError, ProtocolError, RelaySignatureError, WithholdingError
from . import crypto
from .encoding import MAX_VALUE_DEPTH, as_bytes, as_int, as_list, as_map, deeper_than, pack, unpack
from .evidence import Evidence, EvidenceKind, HeadStatement, Role, fork_proof, head_wire
from .head import SignedHead
from .identity import Identity, member_id
from .log_state import LogState

PRESENCE_VERSION = 2  # 2: the head claim sealed, with a per-sender counter (1: the claim in clear)
MAX_PRESENCE_STATE = 2048  # bytes of application state, packed
MAX_PRESENCE_DEPTH = MAX_VALUE_DEPTH  # lists and maps nested in it, as in a shared value
PEER_TIMEOUT = 30.0  # seconds after a member's last presence message that we forget them
WITHHOLD_TIMEOUT = 10.0  # seconds a claimed entry may take to reach us while we are live
CTX_PRESENCE_SIG = b"encspaces/v1/presence-signature"


@dataclass(frozen=True)
class PresenceClaim:
    """What a sender can prove about the log: the newest head the relay signed for them."""

    head: SignedHead | None  # None before the sender saw any signed head
    # Kept on the wire for compatibility, sent empty and ignored on receipt: a bad snapshot is
    # now shown by signed attestation entries (encspaces.core.attestation), never by presence.
    bad_snapshots: tuple[int, ...] = ()


@dataclass(frozen=True)
class PresenceMessage:
    author: bytes
    state: dict[str, Any]
    claim: PresenceClaim
    time_ms: int
    counter: int = 0  # per sender, strictly increasing: a replay repeats or lowers it

    @property
    def member_id(self) -> str:
        return member_id(self.author)


def seal_presence(
    identity: Identity, space: bytes, epoch: int, key: bytes, state: dict[str, Any], claim: PresenceClaim,
    time_ms: int, counter: int | None = None,
) -> bytes:
    """Encrypt and sign a presence message; returns the bytes to send.

    ``counter`` must be above every counter this sender used before (None: ``time_ms``, which
    only suits a sender that sends at most one message a millisecond and whose clock never goes back).
    """
    payload = pack(state)
    if len(payload) > MAX_PRESENCE_STATE:
        raise InvalidArgumentError(f"presence state of {len(payload)} bytes is over the limit of {MAX_PRESENCE_STATE}")
    nonce = crypto.random_nonce()
    head = claim.head.encode() if claim.head is not None else None
    header = pack([PRESENCE_VERSION, space, identity.public.sign_key, epoch, nonce])
    sealed = pack([time_ms if counter is None else counter, epoch, head, time_ms, list(claim.bad_snapshots[-32:]),
                   payload])
    body = crypto.aead_seal(key, nonce, sealed, header)
    signature = identity.sign(CTX_PRESENCE_SIG, header + body)
    return pack([header, body, signature])


def open_presence(data: bytes, space: bytes, state: LogState, keys: dict[int, bytes]) -> PresenceMessage:
    """Verify and decrypt a presence message; raises ProtocolError on anything wrong.

    A bad presence message is dropped, not treated as relay misbehaviour: the relay may
    drop presence at will, and a member's client may be buggy.
    """
    header, body, signature = as_list(unpack(data, max_size=4 * MAX_PRESENCE_STATE, what="presence"), "presence", 3)
    header = as_bytes(header, "presence header", max_size=512)
    body = as_bytes(body, "presence body", max_size=2 * MAX_PRESENCE_STATE)
    signature = as_bytes(signature, "presence signature", crypto.SIGNATURE_SIZE)
    items = as_list(unpack(header, what="presence header"), "presence header")
    if not items or as_int(items[0], "presence version") != PRESENCE_VERSION:
        raise ProtocolError(f"presence version {items[0] if items else None}, expected {PRESENCE_VERSION}")
    as_list(items, "presence header", 5)
    if as_bytes(items[1], "presence space", crypto.HASH_SIZE) != space:
        raise ProtocolError("presence for another space")
    author = as_bytes(items[2], "presence author", crypto.PUBLIC_KEY_SIZE)
    if author not in state.device_owner:
        raise ProtocolError(f"presence from {member_id(author)}, who is no current device of a member")
    if not crypto.verify(author, CTX_PRESENCE_SIG, header + body, signature):
        raise ProtocolError(f"presence from {member_id(author)}: signature does not verify")
    epoch = as_int(items[3], "presence epoch", minimum=1)
    key = keys.get(epoch)
    if key is None:
        raise ProtocolError(f"presence under epoch {epoch}, for which we hold no key")
    nonce = as_bytes(items[4], "presence nonce", crypto.NONCE_SIZE)
    plaintext = crypto.aead_open(key, nonce, body, header)
    if plaintext is None:
        raise ProtocolError(f"presence from {member_id(author)} does not open")
    sealed = as_list(unpack(plaintext, what="presence sealed part"), "presence sealed part", 6)
    counter = as_int(sealed[0], "presence counter")
    if as_int(sealed[1], "presence sealed epoch", minimum=1) != epoch:
        raise ProtocolError(f"presence from {member_id(author)}: sealed under epoch {epoch} for epoch {sealed[1]}")
    head = None
    if sealed[2] is not None:
        head = SignedHead.decode(sealed[2])
        relay = state.relay_key
        if relay is None:
            raise ProtocolError("presence before we know the relay's key")
        try:
            head.check(relay, space)
        except RelaySignatureError as exc:
            raise ProtocolError(
                f"presence from {member_id(author)} carries a head the relay did not sign: {exc}"
            ) from exc
    claim = PresenceClaim(
        head=head,
        bad_snapshots=tuple(as_int(s, "presence bad snapshot") for s in as_list(sealed[4], "bad snapshots")[:32]),
    )
    state_bytes = as_bytes(sealed[5], "presence state", max_size=MAX_PRESENCE_STATE)
    app_state = as_map(unpack(state_bytes, what="presence state"), "presence state")
    if deeper_than(app_state, MAX_PRESENCE_DEPTH):
        # Another client's, ~1,000 levels in 1 KB: comparing it with the last one would raise.
        raise ProtocolError(f"presence from {member_id(author)}: state nested more than {MAX_PRESENCE_DEPTH} deep")
    return PresenceMessage(author, app_state, claim, as_int(sealed[3], "presence time"), counter)


@dataclass
class PresenceTracker:
    """Peers' presence states, and the cross-checks of the heads they carry against our log."""

    me: bytes
    peers: dict[bytes, tuple[dict[str, Any], float]] = field(default_factory=dict)  # author -> (state, seen)
    # The newest relay-signed head each peer showed us (only goes forward, as counters do).
    heads: dict[bytes, SignedHead] = field(default_factory=dict)
    # The highest counter accepted per sender, for this tracker's life (not forgotten on expiry,
    # so an old message cannot bring a departed member back).
    counters: dict[bytes, int] = field(default_factory=dict)
    replays_dropped: int = 0  # messages whose counter was not above the sender's last
    # Relay-signed heads beyond our verified seq: seq -> (head, who showed it, since when).
    _ahead: dict[int, tuple[SignedHead, bytes, float]] = field(default_factory=dict)

    def fresh(self, message: PresenceMessage) -> bool:
        """False (and counted) for a replay: a counter not above the last one accepted from its sender."""
        last = self.counters.get(message.author)
        if last is not None and message.counter <= last:
            self.replays_dropped += 1
            return False
        self.counters[message.author] = message.counter
        return True

    def receive(self, message: PresenceMessage, state: LogState, now: float,
                verified: SignedHead | None = None) -> bool:
        """Record a peer's message; raises ForkError if the head they carry contradicts our chain
        (``verified``: the newest head we verified, our side of the evidence).

        Returns True when the visible presence state of a peer changed.
        """
        if message.author == self.me:
            return False
        head = message.claim.head
        if head is not None:
            self._check_head(head, message.author, state, verified)
            if head.seq > state.seq and head.seq not in self._ahead:
                self._ahead[head.seq] = (head, message.author, now)
            known = self.heads.get(message.author)
            if known is None or head.seq >= known.seq:
                self.heads[message.author] = head
        previous = self.peers.get(message.author)
        self.peers[message.author] = (message.state, now)
        return previous is None or previous[0] != message.state

    def _check_head(self, signed: SignedHead, who: bytes, state: LogState, verified: SignedHead | None) -> None:
        seq = signed.seq
        if 0 < seq <= state.seq and state.heads[seq] != signed.head:
            evidence, proof = fork_proof(signed, Role.PRESENCE, state.relay_key, state.heads[seq], verified)
            raise ForkError(
                f"the relay signed head {signed.head.hex()[:16]}… at seq {seq} for member {member_id(who)}, and "
                f"{state.heads[seq].hex()[:16]}… for us: the relay showed us different histories",
                evidence=evidence, proof=proof,
            )

    def after_verified(self, state: LogState, verified: SignedHead | None = None) -> None:
        """Check the heads peers showed us for seqs we have now reached."""
        for seq in [s for s in self._ahead if s <= state.seq]:
            head, who, _ = self._ahead.pop(seq)
            self._check_head(head, who, state, verified)

    def restart_clocks(self, now: float) -> None:
        """We were not live (offline, catching up): the relay gets a fresh bound from now."""
        self._ahead = {seq: (head, who, now) for seq, (head, who, _) in self._ahead.items()}

    def check_withheld(self, state: LogState, now: float, timeout: float = WITHHOLD_TIMEOUT,
                       verified: SignedHead | None = None) -> None:
        """Raise WithholdingError (a WithheldEntriesError) for a seq the relay signed for a peer that,
        live, we never received; with the peer's signed head and ours (``verified``) as evidence."""
        for seq, (head, who, since) in sorted(self._ahead.items()):
            if now - since > timeout:
                statements = [HeadStatement(Role.PRESENCE, head)]
                if verified is not None and verified.seq < seq:
                    statements.append(HeadStatement(Role.VERIFIED, verified))
                raise WithholdingError(
                    f"the relay signed the log through seq {seq} for member {member_id(who)}, but after "
                    f"{timeout:.0f} s live we have only seq {state.seq}: it withholds seqs {state.seq + 1}..{seq}",
                    seq=seq, verified=state.seq, evidence=tuple(head_wire(s.head) for s in statements),
                    proof=Evidence(EvidenceKind.WITHHOLDING, head.space, state.relay_key, tuple(statements),
                                   note=f"shown in presence by {member_id(who)}; {timeout:g} s live without it"),
                )

    def expire(self, now: float, timeout: float = PEER_TIMEOUT, state: LogState | None = None) -> list[bytes]:
        """Forget peers silent for ``timeout`` seconds, and (given ``state``) peers that are no
        longer a device of a member (removed since their last message: their messages are
        dropped from then on, so they would otherwise show as present until the timeout);
        returns who was dropped."""
        gone = [author for author, (_, seen) in self.peers.items()
                if now - seen > timeout or (state is not None and author not in state.device_owner)]
        for author in gone:
            del self.peers[author]
        return gone
