"""``timeout=`` for the SDK's waiting calls: seconds, None for no limit.

Expiry raises ``OperationTimeoutError`` (also a builtin ``TimeoutError``) whose message says
what was being waited for, computed when the time ran out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .errors import InvalidArgumentError, OperationTimeoutError


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout >= 0:
        raise InvalidArgumentError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")


@asynccontextmanager
async def deadline(timeout: float | None, what: Callable[[], str]) -> AsyncIterator[None]:
    """Bound the block by ``timeout`` seconds; ``what()`` describes what it waited for."""
    check_timeout(timeout)
    try:
        async with asyncio.timeout(timeout) as scope:
            yield
    except TimeoutError as exc:
        if scope.expired():
            raise OperationTimeoutError(f"{what()}: not done after the timeout of {timeout:g} s") from exc
        raise


__all__ = ["check_timeout", "deadline"]
