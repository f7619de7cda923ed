"""Opening a space for one command: connect, catch up with the relay, and fail fast when it refuses.

A command waits for the relay at most ``--timeout`` seconds. A relay that refuses the TCP
connection outright (nothing listening, unknown host) is reported at once instead: after
``PROBE_AFTER`` seconds without a session a plain TCP connection tells the two apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TextIO

from encspaces.space import Space, connect

from .errors import EXIT_UNREACHABLE, CliError
from .home import Context, SpaceRef
from .output import ProgressCallback, progress_bar, warn

PROBE_AFTER = 0.3  # seconds without a connection before checking whether the relay refuses it
CATCH_UP_THRESHOLD = 1000  # entries behind the relay before a catch-up shows a progress bar
BAR_REFRESH = 0.1  # seconds between redraws of that bar (only on a terminal)


class RelayRefusedError(Exception):
    """Nothing listens at the relay's address (or the name does not resolve): no use waiting."""


def address(url: str) -> tuple[str, int] | None:
    """The host and port a ws:// or wss:// URL names (None when it names none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port if port is not None else (443 if parts.scheme == "wss" else 80)


async def refusal(url: str) -> str | None:
    """Why a TCP connection to the relay is refused at once (nothing listening, unknown host);
    None when it opens. A slow answer keeps this waiting, like the space itself."""
    where = address(url)
    if where is None:
        return None
    try:
        _, writer = await asyncio.open_connection(*where)
    except ConnectionRefusedError:
        return f"nothing is listening at {where[0]}:{where[1]}"
    except socket.gaierror as exc:
        return f"cannot resolve {where[0]}: {exc.strerror}"
    except OSError:
        return None  # unreachable networks and the like: the space's own connection reports them
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def refusal_of_all(urls: tuple[str, ...]) -> str | None:
    """Why every one of a space's relays refuses at once (None if any of them may answer)."""
    reasons = await asyncio.gather(*(refusal(url) for url in urls))
    if any(reason is None for reason in reasons):
        return None
    return "; ".join(str(reason) for reason in reasons)


async def catch_up(space: Space, timeout: float, *, progress: TextIO | None = None) -> bool:
    """Wait until the space is live with the relay (caught up and verified); False on timeout.

    Waits on ``space.wait_connected()``. A relay that refuses the connection raises
    RelayRefusedError at once instead of after ``timeout``; the space's error, if it fails,
    is raised. On a terminal ``progress`` shows a bar while a long log is caught up.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline, probe_at = start + timeout, start + PROBE_AFTER  # a relay that answers at once is not probed
    redraw = progress is not None and progress.isatty()
    live = asyncio.ensure_future(space.wait_connected())
    probe: asyncio.Task[str | None] | None = None
    try:
        with catch_up_bar(space, progress) as update:
            while not live.done():
                now = loop.time()
                if now >= deadline:
                    return False
                if probe is None and now >= probe_at:
                    probe = asyncio.create_task(refusal_of_all(space.urls))
                if probe is not None and probe.done() and (reason := probe.result()) is not None:
                    raise RelayRefusedError(reason)
                wake = deadline
                if probe is None:
                    wake = min(wake, probe_at)
                if redraw:
                    wake = min(wake, now + BAR_REFRESH)
                awaited: set[asyncio.Future[Any]] = {live}
                if probe is not None and not probe.done():
                    awaited.add(probe)
                await asyncio.wait(awaited, timeout=max(0.0, wake - now), return_when=asyncio.FIRST_COMPLETED)
                update()
            live.result()  # the space's error, if it failed
    finally:
        tasks = [task for task in (live, probe) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return True


@contextlib.contextmanager
def catch_up_bar(space: Space, stream: TextIO | None) -> Iterator[Callable[[], None]]:
    """A callback that shows (on a terminal) how far a long catch-up is: seq of the relay's head."""
    bars: list[ProgressCallback] = []
    with contextlib.ExitStack() as stack:
        def update() -> None:
            target = space.relay_seq
            if not bars:
                if stream is None or target - space.seq < CATCH_UP_THRESHOLD:
                    return
                bars.append(stack.enter_context(progress_bar("catching up", target, stream, unit="entries")))
            bars[0](space.seq, target)

        yield update


async def connect_space(ctx: Context, ref: SpaceRef) -> Space:
    """The space, opened from this device's copy (or, for a first open, once the relay answered)."""
    identity = ctx.identity()
    try:
        return await connect(ref.relays, identity, ref.id, data_dir=ref.data_dir, timeout=ctx.timeout)
    except TimeoutError:
        raise CliError(f"the relay at {ref.relay} did not answer within {ctx.timeout:g} s and this device holds "
                       f"no copy of {ref.name!r} yet: start the relay or try again with --timeout",
                       EXIT_UNREACHABLE) from None


@contextlib.asynccontextmanager
async def opened(ctx: Context, ref: SpaceRef, *, need_relay: bool = False) -> AsyncIterator[Space]:
    """The space, caught up with the relay when it answers in time (else the local copy, said so)."""
    space = await connect_space(ctx, ref)
    try:
        try:
            online = await catch_up(space, ctx.timeout, progress=sys.stderr)
            why = f"did not answer within {ctx.timeout:g} s"
        except RelayRefusedError as exc:
            online, why = False, f"refused the connection ({exc})"
        if not online:
            if need_relay:
                raise CliError(f"cannot reach the relay at {ref.relay}: it {why}; is it running? (`make run` or "
                               "`encspaces-relay`)", EXIT_UNREACHABLE)
            warn(f"offline: the relay at {ref.relay} {why}; "
                 f"showing this device's verified copy (seq {space.seq})")
        yield space
    finally:
        await space.close()


def run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)
