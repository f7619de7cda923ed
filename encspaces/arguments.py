"""Checks of the public API's plain arguments, so a wrong one is an ``EncspacesError`` at the call.

Without them a seq passed as a str fails deep inside a comparison or an SQL binding with a
bare TypeError, far from the mistake.
"""

from __future__ import annotations

from .errors import ArgumentTypeError


def int_argument(value: object, what: str) -> int:
    """``value`` if it is an int (a bool is not), else ``ArgumentTypeError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{what} is an int, not {type(value).__name__}")
    return value


__all__ = ["int_argument"]
