"""Run the relay daemon as a child process: for the demo, the benchmarks and crash tests.

Crash safety can only be shown on a real process killed with SIGKILL, and the benchmarks
must measure a relay that does not share the load generator's core and event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from types import TracebackType

_LISTENING = re.compile(r"listening on (wss?://\S+)")


class RelayProcess:
    """``async with RelayProcess(data_dir) as relay: relay.url`` starts and stops a daemon."""

    def __init__(self, data_dir: str | os.PathLike[str], *, port: int = 0, extra_args: list[str] | None = None,
                 log_level: str = "WARNING") -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.extra_args = extra_args or []
        self.log_level = log_level
        self.url = ""
        self.public_key = ""
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the relay is not running")
        return self._proc.pid

    async def start(self, timeout: float = 30.0) -> str:
        """Start the daemon and return its URL once it listens. A restart keeps the same port."""
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "encspaces_relay", "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--log-level", self.log_level, *self.extra_args,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        try:
            while True:
                line = (await asyncio.wait_for(self._proc.stdout.readline(), timeout)).decode()
                if not line:
                    raise RuntimeError(f"the relay exited with {await self._proc.wait()} before listening")
                if line.startswith("relay public key:"):
                    self.public_key = line.split(":", 1)[1].strip()
                match = _LISTENING.search(line)
                if match:
                    self.url = match.group(1)
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return self.url
        except BaseException:
            self._proc.kill()
            await self._proc.wait()
            raise

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        return await self._signal(signal.SIGTERM, timeout)

    async def kill(self) -> int:
        """SIGKILL: no chance to flush anything that was not already durable."""
        return await self._signal(signal.SIGKILL, 30.0)

    async def _signal(self, signum: int, timeout: float) -> int:
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.returncode is None:
            proc.send_signal(signum)
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            return await proc.wait()

    async def __aenter__(self) -> RelayProcess:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
