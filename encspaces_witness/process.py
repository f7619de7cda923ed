"""Run ``encspaces-witness`` as a child process: for ``make run``, ``make demo`` and tests.

The daemon prints its verifier key and then its URL on the first two lines of stdout; this
reads them, so a caller can write the witness into a space's policy
(``encspaces.Witness.from_vkey(witness.vkey, witness.url)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


class WitnessProcess:
    """``async with WitnessProcess(data_dir, [relay_key]) as w: w.vkey, w.url``."""

    def __init__(self, data_dir: str | os.PathLike[str], log_keys: Sequence[str], *, host: str = "127.0.0.1",
                 port: int = 0, name: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.log_keys = list(log_keys)
        self.host = host
        self.port = port
        self.name = name
        self.vkey = ""
        self.url = ""
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the witness is not running")
        return self._proc.pid

    async def start(self, timeout: float = 30.0) -> str:
        """Start it and return its URL once it listens; a restart keeps the port."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = ["--host", self.host, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        for key in self.log_keys:
            args.append(f"--log-key={key}")  # a key text may start with '-': not an option
        if self.name:
            args += ["--name", self.name]
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "encspaces_witness", *args, stdout=asyncio.subprocess.PIPE)
        assert self._proc.stdout is not None
        try:
            lines: list[str] = []
            while len(lines) < 2:
                line = (await asyncio.wait_for(self._proc.stdout.readline(), timeout)).decode().strip()
                if not line:
                    raise RuntimeError(f"the witness exited with {await self._proc.wait()} before listening")
                lines.append(line)
        except BaseException:
            self._proc.kill()
            await self._proc.wait()
            raise
        self.vkey, self.url = lines
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it exited and was not reaped yet
                proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            return await proc.wait()

    async def __aenter__(self) -> WitnessProcess:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
