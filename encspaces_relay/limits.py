"""What the relay lets anonymous clients do: how many connections, and who creates how many spaces.

Anyone can open a websocket to a relay and generate a key, so these limits are about cost,
not identity: each check is a dict lookup, and a refusal costs one small Error frame. Pure
bookkeeping, no I/O: the server asks and records; the clock is passed in.
"""

from __future__ import annotations

import collections
from pathlib import Path

from encspaces.core.codes import RefusalCode
from encspaces.core.identity import PublicIdentity, member_id, parse_member_id
from encspaces.errors import EncspacesError

from .config import CreatePolicy, RelayConfig
from .refusals import Refusal


class ConnectionCounter:
    """Open connections in all and per remote address, against the config's caps."""

    def __init__(self, config: RelayConfig) -> None:
        self._total_cap = config.max_connections
        self._address_cap = config.max_connections_per_address
        self._exempt = config.exempt_addresses
        self.total = 0
        self._per_address: dict[str, int] = {}

    def open(self, address: str) -> None:
        """Count a new connection, or raise the Refusal (code ``busy``) that turns it away."""
        if self._total_cap and self.total >= self._total_cap:
            raise Refusal(RefusalCode.BUSY,
                          f"the relay is at its limit of {self._total_cap} connections: try again later")
        count = self._per_address.get(address, 0)
        if self._address_cap and address not in self._exempt and count >= self._address_cap:
            raise Refusal(RefusalCode.BUSY, f"{address} already has {count} connections open, the limit per address: "
                                            "close some or try again later")
        self.total += 1
        self._per_address[address] = count + 1

    def close(self, address: str) -> None:
        self.total -= 1
        count = self._per_address[address] - 1
        if count:
            self._per_address[address] = count
        else:
            del self._per_address[address]

    def of(self, address: str) -> int:
        return self._per_address.get(address, 0)


class OpeningCounter(ConnectionCounter):
    """TCP connections between accept and the end of the websocket opening handshake.

    The same bookkeeping as ConnectionCounter with the caps ``max_opening_connections`` and
    ``max_opening_per_address``: a socket that never finishes its HTTP upgrade (slowloris) is
    not yet a connection of the relay, yet it holds a file descriptor until ``open_timeout``.
    """

    def __init__(self, config: RelayConfig) -> None:
        super().__init__(config)
        self._total_cap = config.max_opening_connections
        self._address_cap = config.max_opening_per_address

    def admit(self, address: str) -> bool:
        """Count a socket just accepted from ``address``; False (not counted) if over a cap."""
        try:
            self.open(address)
        except Refusal:
            return False
        return True


class CreateGate:
    """Who may create a space (the operator's policy) and how many per address in a time window."""

    def __init__(self, config: RelayConfig) -> None:
        self._policy = config.create_policy
        self._allowed = load_allowlist(config.create_allowlist) if config.create_allowlist else frozenset()
        self._cap = config.max_creates_per_address
        self._window = config.create_window
        self._exempt = config.exempt_addresses
        self._recent: dict[str, collections.deque[float]] = {}

    def check(self, member: bytes, address: str, now: float) -> None:
        """Raise the Refusal for a create by ``member`` from ``address`` at ``now`` (monotonic seconds)."""
        if self._policy is CreatePolicy.CLOSED:
            raise Refusal(RefusalCode.CREATE_FORBIDDEN, "this relay does not create new spaces: ask its operator")
        if self._policy is CreatePolicy.LISTED and member not in self._allowed:
            raise Refusal(RefusalCode.CREATE_FORBIDDEN, f"{member_id(member)} may not create spaces on this relay: "
                                                        "ask its operator to list this member id")
        if not self._cap or address in self._exempt:
            return
        recent = self._recent_at(address, now)
        if len(recent) >= self._cap:
            wait = recent[0] + self._window - now
            raise Refusal(RefusalCode.RATE_LIMITED,
                          f"{address} created {len(recent)} spaces in the last {self._window:g} s, "
                          f"the limit: try again in {wait:.0f} s")

    def created(self, address: str, now: float) -> None:
        """Record a create from ``address``, right after ``check`` allowed it (so before it is stored)."""
        if self._cap and address not in self._exempt:
            self._recent_at(address, now).append(now)

    def prune(self, now: float) -> None:
        """Forget addresses with no create in the window (the server calls it now and then)."""
        for address in list(self._recent):
            if not self._recent_at(address, now):
                del self._recent[address]

    def _recent_at(self, address: str, now: float) -> collections.deque[float]:
        recent = self._recent.setdefault(address, collections.deque())
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        return recent


def load_allowlist(path: Path) -> frozenset[bytes]:
    """The signing keys named in ``path``: one member id or public identity a line, '#' comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the create allowlist {path}: {exc.strerror}") from exc
    keys = set()
    for number, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            keys.add(PublicIdentity.parse(item).sign_key if "." in item else parse_member_id(item))
        except EncspacesError as exc:
            raise ValueError(f"{path}, line {number}: not a member id or public identity: {exc}") from exc
    return frozenset(keys)
