"""Which witnesses a space trusts, and how many of them must cosign a checkpoint (pure).

The policy is part of the log, not of any device's settings: genesis names it (optional keys
``"witnesses"`` and ``"quorum"``) and an admin's ``witnesses`` control entry replaces it. So
every member, and the relay that submits checkpoints, read the same witnesses from the same
verified bytes; a relay cannot point a member at witnesses of its own choosing.

A witness is a name (the key name of its cosignature lines, C2SP signed-note rules), its
Ed25519 public key (cosignature type 0x04) and the URL of its tlog-witness HTTP interface.
The URL is only where to reach it: the key and the name are what a cosignature is checked
against, so a wrong URL delays witnessing and cannot make a forged cosignature count.

Wire form (msgpack): ``{"witnesses": [[name, key, url], ...], "quorum": k}``; the empty policy
is ``{"witnesses": [], "quorum": 0}`` and, in genesis, the absence of both keys (old spaces
decode unchanged).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ArgumentTypeError, InvalidArgumentError, MalformedNoteError, ProtocolError
from .encoding import as_bytes, as_int, as_list, as_map, as_str, field, pack, unpack
from .note import CosignatureVerifier, NoteSignature, parse_vkey

MAX_WITNESSES = 16
MAX_URL = 512
MAX_NAME = 256
KEY_SIZE = 32
BODY_VERSION = 1  # of the ``witnesses`` control body (membership.BODY_VERSION, not imported: no cycle)
_SCHEMES = ("http://", "https://")


@dataclass(frozen=True)
class Witness:
    """One witness: cosignature key name, Ed25519 public key, and where to reach it over HTTP."""

    name: str
    key: bytes
    url: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.url, str):
            raise ArgumentTypeError("a witness's name and url are str")
        if not isinstance(self.key, bytes):
            raise ArgumentTypeError(f"a witness's key is bytes, not {type(self.key).__name__}")
        if len(self.key) != KEY_SIZE:
            raise InvalidArgumentError(f"witness {self.name!r}: an Ed25519 key has {KEY_SIZE} bytes, "
                                       f"found {len(self.key)}")
        if len(self.name.encode()) > MAX_NAME:
            raise InvalidArgumentError(f"witness name of {len(self.name.encode())} bytes, over {MAX_NAME}")
        try:
            CosignatureVerifier(self.name, self.key)  # the name must be a valid note key name
        except MalformedNoteError as exc:
            raise InvalidArgumentError(f"witness name: {exc}") from None
        if len(self.url) > MAX_URL or not self.url.startswith(_SCHEMES) or any(c.isspace() for c in self.url):
            raise InvalidArgumentError(f"witness {self.name}: url {self.url[:80]!r} is not an http(s) URL "
                                       f"of at most {MAX_URL} characters without spaces")

    @classmethod
    def from_vkey(cls, vkey: str, url: str) -> Witness:
        """The witness a verifier key names (as ``encspaces-witness`` prints it), reached at ``url``."""
        try:
            verifier = parse_vkey(vkey.strip())
        except MalformedNoteError as exc:
            raise InvalidArgumentError(f"witness key: {exc}") from None
        if not isinstance(verifier, CosignatureVerifier):
            raise InvalidArgumentError(f"witness key {verifier.name}: a witness key has signature type 0x04 "
                                       "(a cosignature key), not 0x01")
        return cls(verifier.name, verifier.public_key, url.rstrip("/"))

    def verifier(self) -> CosignatureVerifier:
        """What checks this witness's cosignature lines."""
        return CosignatureVerifier(self.name, self.key)

    @property
    def vkey(self) -> str:
        """The C2SP verifier key string ``name+hex(key ID)+base64(0x04 || key)``."""
        return self.verifier().vkey()

    def encode(self) -> list[Any]:
        return [self.name, self.key, self.url]


@dataclass(frozen=True)
class WitnessPolicy:
    """The witnesses of a space and the quorum: a checkpoint is witnessed once ``quorum`` of
    them cosigned it. ``WitnessPolicy.NONE`` (no witnesses, quorum 0) is a space without any."""

    witnesses: tuple[Witness, ...] = ()
    quorum: int = 0

    NONE: ClassVar[WitnessPolicy]

    def __post_init__(self) -> None:
        if not isinstance(self.witnesses, tuple):
            object.__setattr__(self, "witnesses", tuple(self.witnesses))
        if not all(isinstance(w, Witness) for w in self.witnesses):
            raise ArgumentTypeError("a witness policy holds Witness objects")
        if not isinstance(self.quorum, int) or isinstance(self.quorum, bool):
            raise ArgumentTypeError(f"a quorum is an int, not {type(self.quorum).__name__}")
        n = len(self.witnesses)
        if n > MAX_WITNESSES:
            raise InvalidArgumentError(f"{n} witnesses, at most {MAX_WITNESSES}")
        if n == 0 and self.quorum != 0:
            raise InvalidArgumentError(f"a quorum of {self.quorum} without witnesses: the quorum is 0")
        if n and not 1 <= self.quorum <= n:
            raise InvalidArgumentError(f"a quorum of {self.quorum} with {n} witnesses: it must be 1 to {n}")
        if len({w.name for w in self.witnesses}) != n:
            raise InvalidArgumentError("two witnesses share a name")
        if len({w.key for w in self.witnesses}) != n:
            raise InvalidArgumentError("two witnesses share a key")

    @classmethod
    def of(cls, witnesses: Iterable[Witness] | None, quorum: int | None) -> WitnessPolicy:
        """The policy an API caller means: no witnesses is NONE; the quorum defaults to a majority."""
        listed = tuple(witnesses or ())
        if not listed:
            if quorum:
                raise InvalidArgumentError(f"a quorum of {quorum} without witnesses")
            return cls.NONE
        return cls(listed, len(listed) // 2 + 1 if quorum is None else quorum)

    @property
    def enabled(self) -> bool:
        """Whether the space has witnesses at all."""
        return bool(self.witnesses)

    def verifiers(self) -> list[CosignatureVerifier]:
        return [w.verifier() for w in self.witnesses]

    def by_name(self, name: str) -> Witness | None:
        for w in self.witnesses:
            if w.name == name:
                return w
        return None

    def cosigners(self, verified: Sequence[tuple[object, NoteSignature]]) -> set[str]:
        """The names of this policy's witnesses among verified (verifier, signature) pairs
        (``note.verify_note``'s result): what counts toward the quorum."""
        keys = {(w.name, w.verifier().key_id) for w in self.witnesses}
        return {sig.name for _, sig in verified if (sig.name, sig.key_id) in keys}

    def met_by(self, names: Iterable[str]) -> bool:
        """Whether cosignatures by ``names`` reach the quorum (never for the empty policy)."""
        mine = {w.name for w in self.witnesses}
        return self.enabled and len(mine & set(names)) >= self.quorum

    def encode(self) -> dict[str, Any]:
        """The msgpack-able form ``{"witnesses": [[name, key, url], ...], "quorum": k}``."""
        return {"witnesses": [w.encode() for w in self.witnesses], "quorum": self.quorum}

    @classmethod
    def decode(cls, value: Mapping[str, Any]) -> WitnessPolicy:
        """The inverse of ``encode`` from decoded msgpack; raises ProtocolError naming the field."""
        items = as_list(field(dict(value), "witnesses", "witness policy"), "witness policy witnesses")
        if len(items) > MAX_WITNESSES:
            raise ProtocolError(f"witness policy: {len(items)} witnesses, at most {MAX_WITNESSES}")
        quorum = as_int(field(dict(value), "quorum", "witness policy"), "witness policy quorum")
        witnesses = []
        for item in items:
            name, key, url = as_list(item, "witness", 3)
            try:
                witnesses.append(Witness(as_str(name, "witness name", MAX_NAME),
                                         as_bytes(key, "witness key", KEY_SIZE),
                                         as_str(url, "witness url", MAX_URL)))
            except InvalidArgumentError as exc:
                raise ProtocolError(f"witness policy: {exc}") from None
        try:
            return cls(tuple(witnesses), quorum)
        except InvalidArgumentError as exc:
            raise ProtocolError(f"witness policy: {exc}") from None

    def encode_body(self) -> bytes:
        """The body of a ``witnesses`` control entry: ``{"v": 1, "witnesses": [...], "quorum": k}``."""
        return pack({"v": BODY_VERSION, **self.encode()})

    @classmethod
    def decode_body(cls, data: bytes) -> WitnessPolicy:
        """The policy a ``witnesses`` control entry sets; raises ProtocolError."""
        m = as_map(unpack(data, max_size=64 * 1024, what="witnesses body"), "witnesses body")
        version = as_int(field(m, "v", "witnesses body"), "witnesses body version")
        if version != BODY_VERSION:
            raise ProtocolError(f"witnesses body: version {version}, expected {BODY_VERSION}")
        return cls.decode(m)

    def describe(self) -> str:
        if not self.enabled:
            return "no witnesses"
        return f"{self.quorum} of {len(self.witnesses)} witnesses ({', '.join(w.name for w in self.witnesses)})"


WitnessPolicy.NONE = WitnessPolicy((), 0)


def policy_at(history: Sequence[tuple[int, WitnessPolicy]], size: int) -> WitnessPolicy:
    """The policy governing a checkpoint of ``size``: the newest set by an entry at seq <= size
    (``history`` is (from_seq, policy) in order; before any, NONE)."""
    found = WitnessPolicy.NONE
    for from_seq, policy in history:
        if from_seq > size:
            break
        found = policy
    return found
