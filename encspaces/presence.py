"""Presence: who is here and where their cursor is, plus a gossip of each member's view of the log.

Presence is ephemeral (the relay forwards it and never stores it) but not trusted any more
than entries are: each message is encrypted under the space's epoch key and signed by its
author. It also carries the sender's verified head and the newest author_seq the relay
acknowledged to them. That turns every presence message into a cross-check of the relay:
a head that disagrees with our chain at the same seq proves a fork, and an entry a peer
says the relay sequenced that never reaches us, while we are connected, is being withheld.

Pure: the caller passes the clock (seconds, monotonic) and the verifier's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import crypto
from .encoding import as_bytes, as_int, as_list, as_map, pack, unpack
from .errors import ForkError, ProtocolError, WithheldEntriesError
from .identity import Identity, member_id
from .log_state import LogState

PRESENCE_VERSION = 1
MAX_PRESENCE_STATE = 2048  # bytes of application state, packed
PEER_TIMEOUT = 30.0  # seconds after a member's last presence message that we forget them
WITHHOLD_TIMEOUT = 10.0  # seconds a claimed entry may take to reach us while we are live
CTX_PRESENCE_SIG = b"encspaces/v1/presence-signature"


@dataclass(frozen=True)
class PresenceClaim:
    """What a sender says about the log: their verified head and their own acknowledged entries."""

    verified_seq: int
    verified_head: bytes
    author_seq: int  # the newest of the sender's entries the relay acknowledged
    bad_snapshots: tuple[int, ...] = ()  # seqs of snapshot entries the sender found bad


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
        raise ValueError(f"presence state of {len(payload)} bytes is over the limit of {MAX_PRESENCE_STATE}")
    nonce = crypto.random_nonce()
    header = pack([PRESENCE_VERSION, space, identity.public.sign_key, epoch, nonce, claim.verified_seq,
                   claim.verified_head, claim.author_seq, time_ms, list(claim.bad_snapshots[-32:])])
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
    items = as_list(unpack(header, what="presence header"), "presence header", 10)
    if as_int(items[0], "presence version") != PRESENCE_VERSION:
        raise ProtocolError(f"presence version {items[0]}, expected {PRESENCE_VERSION}")
    if as_bytes(items[1], "presence space", crypto.HASH_SIZE) != space:
        raise ProtocolError("presence for another space")
    author = as_bytes(items[2], "presence author", crypto.PUBLIC_KEY_SIZE)
    if author not in state.members:
        raise ProtocolError(f"presence from {member_id(author)}, who is not a member")
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
    claim = PresenceClaim(
        verified_seq=as_int(items[5], "presence verified seq"),
        verified_head=as_bytes(items[6], "presence verified head", crypto.HASH_SIZE),
        author_seq=as_int(items[7], "presence author_seq"),
        bad_snapshots=tuple(as_int(s, "presence bad snapshot") for s in as_list(items[9], "bad snapshots")[:32]),
    )
    return PresenceMessage(author, as_map(unpack(plaintext, what="presence state"), "presence state"), claim,
                           as_int(items[8], "presence time"))


@dataclass
class _Expectation:
    """An entry or a seq a peer told us about, and since when we are live without it."""

    since: float


@dataclass
class PresenceTracker:
    """Peers' presence states, and the cross-checks of their claims against our verified log."""

    me: bytes
    peers: dict[bytes, tuple[dict[str, Any], float]] = field(default_factory=dict)  # author -> (state, seen)
    _heads: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # seq -> (head, who said it)
    _author_seqs: dict[bytes, tuple[int, bytes, float]] = field(default_factory=dict)  # author -> (n, by, since)
    _seq_claim: tuple[int, bytes, float] | None = None  # newest seq a peer verified: (seq, by, since)

    def receive(self, message: PresenceMessage, state: LogState, now: float) -> bool:
        """Record a peer's message; raises ForkError if their head contradicts our chain.

        Returns True when the visible presence state of a peer changed.
        """
        if message.author == self.me:
            return False
        claim = message.claim
        self._check_head(claim.verified_seq, claim.verified_head, message.author, state)
        if claim.verified_seq > state.seq:
            self._heads[claim.verified_seq] = (claim.verified_head, message.author)
            if self._seq_claim is None or claim.verified_seq > self._seq_claim[0]:
                self._seq_claim = (claim.verified_seq, message.author, now)
        known = self._author_seqs.get(message.author)
        behind = claim.author_seq > state.author_seqs.get(message.author, 0)
        if behind and (known is None or claim.author_seq > known[0]):
            self._author_seqs[message.author] = (claim.author_seq, message.author, now)
        previous = self.peers.get(message.author)
        self.peers[message.author] = (message.state, now)
        return previous is None or previous[0] != message.state

    def _check_head(self, seq: int, head: bytes, who: bytes, state: LogState) -> None:
        if 0 < seq <= state.seq and state.heads[seq] != head:
            raise ForkError(
                f"member {member_id(who)} verified head {head.hex()[:16]}… at seq {seq}, we verified "
                f"{state.heads[seq].hex()[:16]}…: the relay showed us different histories"
            )

    def after_verified(self, state: LogState) -> None:
        """Check heads peers announced for seqs we have now reached; forget satisfied claims."""
        for seq in [s for s in self._heads if s <= state.seq]:
            head, who = self._heads.pop(seq)
            self._check_head(seq, head, who, state)
        for author in [a for a, (n, _, _) in self._author_seqs.items() if state.author_seqs.get(a, 0) >= n]:
            del self._author_seqs[author]
        if self._seq_claim is not None and state.seq >= self._seq_claim[0]:
            self._seq_claim = None

    def restart_clocks(self, now: float) -> None:
        """We were not live (offline, catching up): the relay gets a fresh bound from now."""
        self._author_seqs = {a: (n, by, now) for a, (n, by, _) in self._author_seqs.items()}
        if self._seq_claim is not None:
            self._seq_claim = (self._seq_claim[0], self._seq_claim[1], now)

    def check_withheld(self, state: LogState, now: float, timeout: float = WITHHOLD_TIMEOUT) -> None:
        """Raise WithheldEntriesError for what a peer saw sequenced and we, live, never received."""
        for author, (n, by, since) in self._author_seqs.items():
            if now - since > timeout:
                have = state.author_seqs.get(author, 0)
                raise WithheldEntriesError(
                    f"member {member_id(by)} says the relay acknowledged their entries up to author_seq {n}, "
                    f"but after {timeout:.0f} s live we have only up to {have}: the relay withholds them"
                )
        if self._seq_claim is not None:
            seq, by, since = self._seq_claim
            if now - since > timeout:
                raise WithheldEntriesError(
                    f"member {member_id(by)} verified the log through seq {seq}, but after {timeout:.0f} s live "
                    f"we have only seq {state.seq}: the relay withholds seqs {state.seq + 1}..{seq}"
                )

    def expire(self, now: float, timeout: float = PEER_TIMEOUT) -> list[bytes]:
        """Forget peers silent for ``timeout`` seconds; returns who was dropped."""
        gone = [author for author, (_, seen) in self.peers.items() if now - seen > timeout]
        for author in gone:
            del self.peers[author]
        return gone
