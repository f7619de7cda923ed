"""Presence: who is here and where their cursor is, plus a gossip of each member's view of the log.

Presence is ephemeral (the relay forwards it and never stores it) but not trusted any more
than entries are: each message is encrypted under the space's epoch key and signed by its
author. It also carries the newest head the *relay* signed for the sender (from a frame or
an acknowledgement). That turns every presence message into a cross-check of the relay that
a lying member cannot abuse, since only the relay can sign heads: a signed head that
disagrees with our chain at its seq proves a fork, and one for a seq that, while we are
connected, never reaches us proves the relay is withholding it.

Pure: the caller passes the clock (seconds, monotonic) and the verifier's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ForkError, InvalidArgumentError, ProtocolError, RelaySignatureError, WithheldEntriesError
from . import crypto
from .encoding import as_bytes, as_int, as_list, as_map, pack, unpack
from .head import SignedHead
from .identity import Identity, member_id
from .log_state import LogState

PRESENCE_VERSION = 1
MAX_PRESENCE_STATE = 2048  # bytes of application state, packed
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

    @property
    def member_id(self) -> str:
        return member_id(self.author)


def seal_presence(
    identity: Identity, space: bytes, epoch: int, key: bytes, state: dict[str, Any], claim: PresenceClaim,
    time_ms: int,
) -> bytes:
    """Encrypt and sign a presence message; returns the bytes to send."""
    payload = pack(state)
    if len(payload) > MAX_PRESENCE_STATE:
        raise InvalidArgumentError(f"presence state of {len(payload)} bytes is over the limit of {MAX_PRESENCE_STATE}")
    nonce = crypto.random_nonce()
    head = claim.head.encode() if claim.head is not None else None
    header = pack([PRESENCE_VERSION, space, identity.public.sign_key, epoch, nonce, head, time_ms,
                   list(claim.bad_snapshots[-32:])])
    body = crypto.aead_seal(key, nonce, payload, header)
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
    items = as_list(unpack(header, what="presence header"), "presence header", 8)
    if as_int(items[0], "presence version") != PRESENCE_VERSION:
        raise ProtocolError(f"presence version {items[0]}, expected {PRESENCE_VERSION}")
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
    head = None
    if items[5] is not None:
        head = SignedHead.decode(items[5])
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
        bad_snapshots=tuple(as_int(s, "presence bad snapshot") for s in as_list(items[7], "bad snapshots")[:32]),
    )
    return PresenceMessage(author, as_map(unpack(plaintext, what="presence state"), "presence state"), claim,
                           as_int(items[6], "presence time"))


@dataclass
class PresenceTracker:
    """Peers' presence states, and the cross-checks of the heads they carry against our log."""

    me: bytes
    peers: dict[bytes, tuple[dict[str, Any], float]] = field(default_factory=dict)  # author -> (state, seen)
    # Relay-signed heads beyond our verified seq: seq -> (head hash, who showed it, since when).
    _ahead: dict[int, tuple[bytes, bytes, float]] = field(default_factory=dict)

    def receive(self, message: PresenceMessage, state: LogState, now: float) -> bool:
        """Record a peer's message; raises ForkError if the head they carry contradicts our chain.

        Returns True when the visible presence state of a peer changed.
        """
        if message.author == self.me:
            return False
        head = message.claim.head
        if head is not None:
            self._check_head(head.seq, head.head, message.author, state)
            if head.seq > state.seq and head.seq not in self._ahead:
                self._ahead[head.seq] = (head.head, message.author, now)
        previous = self.peers.get(message.author)
        self.peers[message.author] = (message.state, now)
        return previous is None or previous[0] != message.state

    def _check_head(self, seq: int, head: bytes, who: bytes, state: LogState) -> None:
        if 0 < seq <= state.seq and state.heads[seq] != head:
            raise ForkError(
                f"the relay signed head {head.hex()[:16]}… at seq {seq} for member {member_id(who)}, and "
                f"{state.heads[seq].hex()[:16]}… for us: the relay showed us different histories"
            )

    def after_verified(self, state: LogState) -> None:
        """Check the heads peers showed us for seqs we have now reached."""
        for seq in [s for s in self._ahead if s <= state.seq]:
            head, who, _ = self._ahead.pop(seq)
            self._check_head(seq, head, who, state)

    def restart_clocks(self, now: float) -> None:
        """We were not live (offline, catching up): the relay gets a fresh bound from now."""
        self._ahead = {seq: (head, who, now) for seq, (head, who, _) in self._ahead.items()}

    def check_withheld(self, state: LogState, now: float, timeout: float = WITHHOLD_TIMEOUT) -> None:
        """Raise WithheldEntriesError for a seq the relay signed for a peer that, live, we never received."""
        for seq, (_, who, since) in sorted(self._ahead.items()):
            if now - since > timeout:
                raise WithheldEntriesError(
                    f"the relay signed the log through seq {seq} for member {member_id(who)}, but after "
                    f"{timeout:.0f} s live we have only seq {state.seq}: it withholds seqs {state.seq + 1}..{seq}"
                )

    def expire(self, now: float, timeout: float = PEER_TIMEOUT) -> list[bytes]:
        """Forget peers silent for ``timeout`` seconds; returns who was dropped."""
        gone = [author for author, (_, seen) in self.peers.items() if now - seen > timeout]
        for author in gone:
            del self.peers[author]
        return gone
