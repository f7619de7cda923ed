"""The example services run against a real relay (tests.support)."""

from tests.support import relay

__all__ = ["relay"]
