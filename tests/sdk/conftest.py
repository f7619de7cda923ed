"""Real relays on 127.0.0.1 for SDK tests, honest or lying, and members on them (tests.support)."""

from __future__ import annotations

from tests.support import RelayHandle, make_members, make_relay, relay, settle, space_for_a_child, start_child, wait_for

__all__ = ["RelayHandle", "make_members", "make_relay", "relay", "settle", "space_for_a_child", "start_child",
           "wait_for"]
