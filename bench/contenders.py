"""Start and stop each contender's server as its own process on 127.0.0.1.

``async with start_server(name, workdir) as server:`` gives ``server.url`` (clients append a
document path for the Yjs servers) and ``server.pid`` (for CPU and memory sampling). Every
server is stopped with SIGTERM, then SIGKILL if it lingers, so no run outlives its benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from bench.common import BENCH_DIR, NODE_DIR
from encspaces_relay.process import RelayProcess

NODE_SERVER = NODE_DIR / "@y" / "websocket-server" / "src" / "server.js"


class ServerProcess:
    """A server child process that prints one line once it listens."""

    def __init__(self, args: list[str], ready: re.Pattern[str], log_path: Path, env: dict[str, str] | None = None,
                 url: str | None = None) -> None:
        self.args = args
        self.ready = ready
        self.log_path = log_path
        self.env = env
        self.url = url or ""
        self._proc: asyncio.subprocess.Process | None = None
        self._log: int | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, timeout: float = 30.0) -> None:
        self._log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=self._log, stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})}, cwd=str(BENCH_DIR.parent),
        )
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = (await self._proc.stdout.readline()).decode()
                    if not line:
                        raise RuntimeError(f"{self.args[0]} exited with {await self._proc.wait()} before listening; "
                                           f"see {self.log_path}")
                    match = self.ready.search(line)
                    if match:
                        if not self.url:
                            self.url = match.group(1)
                        break
        except BaseException:
            await self.stop()
            raise
        # Keep draining stdout so a chatty server never blocks on a full pipe.
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        with contextlib.suppress(Exception):
            while await proc.stdout.readline():
                pass

    async def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            os.close(self._log)
            self._log = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """What a benchmark needs of a running contender."""

    def __init__(self, name: str, url: str, pid: int, relay: RelayProcess | None = None) -> None:
        self.name = name
        self.url = url
        self.pid = pid
        self.relay = relay  # encspaces only


@contextlib.asynccontextmanager
async def start_server(name: str, workdir: Path) -> AsyncIterator[Server]:
    """Run contender ``name`` (null, pycrdt, node, encspaces) for the duration of the block."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}-server.log"
    listening = re.compile(r"listening on (ws://\S+)")
    if name == "encspaces":
        relay = RelayProcess(workdir / "relay", log_level="ERROR")
        await relay.start()
        try:
            yield Server(name, relay.url, relay.pid, relay)
        finally:
            await relay.stop()
        return
    if name == "null":
        proc = ServerProcess([sys.executable, "-m", "bench.servers.null_relay"], listening, log_path)
    elif name == "null-sansio":
        proc = ServerProcess([sys.executable, "-m", "bench.servers.null_sansio"], listening, log_path)
    elif name == "pycrdt":
        proc = ServerProcess([sys.executable, "-m", "bench.servers.pycrdt_server"], listening, log_path)
    elif name == "node":
        port = free_port()
        proc = ServerProcess(["node", str(NODE_SERVER)], re.compile(r"running at"), log_path,
                             env={"HOST": "127.0.0.1", "PORT": str(port)}, url=f"ws://127.0.0.1:{port}")
    else:
        raise ValueError(f"unknown contender {name!r}")
    await proc.start()
    try:
        yield Server(name, proc.url, proc.pid)
    finally:
        await proc.stop()
