"""The example services run against a real relay (tests.support)."""

from tests.support import make_relay, relay

__all__ = ["make_relay", "relay"]
