"""A real relay on 127.0.0.1 with file limits of the test's choosing, and spaces on it (tests.support)."""

from __future__ import annotations

from tests.support import Members, RelayFactory, RelayHandle, make_relay, members, other_members, relay

__all__ = ["Members", "Progress", "RelayFactory", "RelayHandle", "make_relay", "members", "other_members", "relay"]


class Progress:
    """Records every progress call and checks they make sense."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))

    def check(self, total: int, chunks: int) -> None:
        assert self.calls[0] == (0, total)
        assert self.calls[-1] == (total, total)
        assert len(self.calls) == chunks + 1
        dones = [done for done, _ in self.calls]
        assert dones == sorted(dones)
        assert all(t == total for _, t in self.calls)
