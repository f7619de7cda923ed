"""TLS behind a reverse proxy: the nginx and Caddy configurations of deploy/, run for real.

Each test fills in the template that docs/operations.md quotes (deploy/nginx.conf,
deploy/Caddyfile) with a reserved port (``reserve_port``: no other process can take it between
its choice and the proxy's bind), a self-signed certificate and the relay's port, starts the
proxy as a foreground child process in its own process group, and runs SDK members through
``wss://127.0.0.1:<port>``. The proxy is stopped at the end however the test ends, and its port
is checked to be closed. Without the proxy's binary a test skips with one line naming it; under
CI (``CI=true``) it fails instead (.ci/run installs nginx and Caddy on a fresh machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NoReturn

import pytest
from relay_kit import WAIT, RelayFactory

from encspaces import Space, connect, create_space
from encspaces.core.identity import Identity
from encspaces.errors import RelayError
from encspaces_relay.server import RelayServer

ROOT = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = ROOT / "deploy" / "nginx.conf"
CADDY_TEMPLATE = ROOT / "deploy" / "Caddyfile"
OPERATIONS = ROOT / "docs" / "operations.md"


def _missing(what: str) -> NoReturn:
    message = f"reverse proxy test needs {what}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: not skipped; .ci/run installs it)")
    pytest.skip(message)


def _binary(name: str, package: str) -> str:
    # nginx is in /usr/sbin, which is not on a normal user's PATH on Debian.
    path = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if path is None:
        _missing(f"the {name} command (Debian: apt-get install {package})")
    return path


def fill(template: str, replacements: dict[str, str]) -> str:
    """``template`` with each key replaced; each must occur exactly once (else the template moved on)."""
    for old, new in replacements.items():
        assert template.count(old) == 1, f"the template no longer has {old!r} exactly once: update this test"
        template = template.replace(old, new)
    return template


def reserve_port() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1 and not listening: hold it while a proxy uses the port.

    A port picked by binding port 0 and closing the probe could be taken by anyone (another
    test's relay, an outgoing connection's ephemeral port) before the proxy bound it. Held
    like this, with SO_REUSEADDR, the port is in use to everyone else (a bind without
    SO_REUSEADDR fails, port 0 and ephemeral ports skip it), while nginx and Caddy, which set
    SO_REUSEADDR on their listeners (as Linux requires of both sockets), can still listen on it.
    """
    holder = socket.socket()
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
    except BaseException:
        holder.close()
        raise
    return holder


def test_a_reserved_port_is_kept_from_others_and_open_to_a_proxy() -> None:
    """What makes the proxies' ports race-free (with the old pick-and-release helper, the first
    bind below succeeded: the port was anyone's until the proxy bound it)."""
    with reserve_port() as holder:
        port = holder.getsockname()[1]
        with socket.socket() as other, pytest.raises(OSError) as taken:
            other.bind(("127.0.0.1", port))
        assert taken.value.errno == errno.EADDRINUSE
        with socket.socket() as proxy:  # as nginx and Caddy (Go) open their listeners
            proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            proxy.bind(("127.0.0.1", port))
            proxy.listen()


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Proxy:
    """A reverse proxy as a foreground child process, in a process group of its own."""

    def __init__(self, argv: list[str], holder: socket.socket, log: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.holder = holder  # reserve_port's socket: the port stays ours until the proxy stopped
        self.port: int = holder.getsockname()[1]
        self.log = log
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=self.env,
                start_new_session=True,  # its workers share its group: one id stops them all
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not await _accepts(self.port):
            if self.proc.returncode is not None:
                pytest.fail(f"{self.argv[0]} exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if loop.time() > deadline:
                pytest.fail(f"{self.argv[0]} did not listen on 127.0.0.1:{self.port} within {WAIT} s:\n"
                            f"{self.log.read_text()}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM (both proxies' fast shutdown); SIGKILL to the whole group if it does not end."""
        proc = self.proc
        if proc is None:
            self.holder.close()
            return
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(WAIT):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the leader is not reaped yet: the group is ours
                await proc.wait()
        try:
            assert not await _accepts(self.port), f"127.0.0.1:{self.port} still accepts after the proxy stopped"
        finally:
            self.holder.close()


class Proxies:
    """The test's proxies and their reserved ports: every proxy is stopped and every port released
    at the end of the test, passed or failed (a port reserved for a proxy that never started too)."""

    def __init__(self) -> None:
        self.started: list[Proxy] = []
        self.holders: list[socket.socket] = []

    def reserve(self) -> socket.socket:
        holder = reserve_port()
        self.holders.append(holder)
        return holder

    async def __call__(self, argv: list[str], holder: socket.socket, log: Path,
                       env: dict[str, str] | None = None) -> Proxy:
        proxy = Proxy(argv, holder, log, env)
        self.started.append(proxy)
        await proxy.start()
        return proxy

    async def stop(self) -> None:
        try:
            for proxy in self.started:
                await proxy.stop()
        finally:
            for holder in self.holders:
                holder.close()


ProxyStarter = Proxies


@pytest.fixture
async def proxies() -> AsyncIterator[Proxies]:
    """Start proxies; every one is stopped at the end of the test, passed or failed."""
    started = Proxies()
    try:
        yield started
    finally:
        await started.stop()


async def start_nginx(proxies: ProxyStarter, tmp_path: Path, cert: Path, key: Path, relay: RelayServer) -> Proxy:
    """nginx, unprivileged and in the foreground, serving deploy/nginx.conf filled in for this test."""
    nginx = _binary("nginx", "nginx")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    holder = proxies.reserve()
    port = holder.getsockname()[1]
    site = fill(NGINX_TEMPLATE.read_text(), {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/etc/letsencrypt/live/relay.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/relay.example.org/privkey.pem": str(key),
        "server_name relay.example.org;": "server_name localhost;",
        "proxy_pass http://127.0.0.1:8765;": f"proxy_pass http://127.0.0.1:{relay.port};",
    })
    (prefix / "encspaces-relay.conf").write_text(site)
    # The main file is what a distribution's /etc/nginx/nginx.conf provides: here every path it
    # writes is in the prefix (the compiled-in temp paths are under /var/lib/nginx).
    temp_paths = "".join(f"    {kind}_temp_path {prefix}/{kind}_temp;\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(
        "worker_processes 1;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"    access_log {prefix}/access.log;\n"
        f"{temp_paths}"
        f"    include {prefix}/encspaces-relay.conf;\n"
        "}\n"
    )
    argv = [nginx, "-e", "stderr", "-c", str(prefix / "nginx.conf"), "-p", str(prefix),
            "-g", f"daemon off; pid {prefix}/nginx.pid; error_log stderr;"]
    return await proxies(argv, holder, tmp_path / "nginx.log")


async def start_caddy(proxies: ProxyStarter, tmp_path: Path, cert: Path, key: Path, relay: RelayServer) -> Proxy:
    """Caddy in the foreground, serving deploy/Caddyfile filled in for this test."""
    caddy = _binary("caddy", "caddy")
    home = tmp_path / "caddy"
    home.mkdir()
    holder = proxies.reserve()
    port = holder.getsockname()[1]
    site = fill(CADDY_TEMPLATE.read_text(), {
        "relay.example.org {": f"https://127.0.0.1:{port} {{\n    tls {cert} {key}",
        "reverse_proxy 127.0.0.1:8765": f"reverse_proxy 127.0.0.1:{relay.port}",
    })
    # Global options for a test: no admin endpoint (a fixed port), no redirect listener on :80.
    (home / "Caddyfile").write_text("{\n    admin off\n    auto_https disable_redirects\n}\n\n" + site)
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config")}
    argv = [caddy, "run", "--config", str(home / "Caddyfile"), "--adapter", "caddyfile"]
    return await proxies(argv, holder, tmp_path / "caddy.log", env)


async def collaborate(
    url: str, trusting: ssl.SSLContext, tmp_path: Path, spaces: contextlib.AsyncExitStack
) -> tuple[Space, Space]:
    """Alice creates a space and adds Bob; both edit; both end with the same text (``spaces`` closes them)."""
    alice_id, bob_id = Identity.generate(), Identity.generate()
    alice = await create_space(url, alice_id, data_dir=tmp_path / "alice", ssl=trusting)
    spaces.push_async_callback(alice.close)
    await alice.add_member(bob_id.public)
    bob = await connect(url, bob_id, alice.id, data_dir=tmp_path / "bob", ssl=trusting)
    spaces.push_async_callback(bob.close)
    alice.text("notes").insert(0, "alice ")
    bob.text("notes").insert(0, "bob ")
    for space in (alice, bob):
        await space.sync()
    newest = max(alice.seq, bob.seq)
    for space in (alice, bob):
        await space.wait_for_seq(newest)
    assert str(alice.text("notes")) == str(bob.text("notes"))
    assert sorted(str(alice.text("notes")).split()) == ["alice", "bob"]
    return alice, bob


def opened_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The remote address of every connection the relay logged ("conn#N: open from HOST:PORT")."""
    return [str(r.__dict__["address"]) for r in caplog.records if "address" in r.__dict__]


@pytest.mark.parametrize("start_proxy", [start_nginx, start_caddy], ids=["nginx", "caddy"])
async def test_members_collaborate_through_the_documented_proxy(
    start_proxy: Callable[..., Awaitable[Proxy]], proxies: ProxyStarter, make_relay: RelayFactory,
    certificate: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="encspaces_relay.session")
    cert, key = certificate
    relay = await make_relay()  # plain ws on 127.0.0.1: the proxy does TLS
    proxy = await start_proxy(proxies, tmp_path, cert, key, relay)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with contextlib.AsyncExitStack() as spaces:
        await collaborate(f"wss://127.0.0.1:{proxy.port}", trusting, tmp_path, spaces)

        # The relay does not read X-Forwarded-For: it sees the proxy's address, so every client
        # behind the proxy counts as one address, 127.0.0.1, which is exempt from the
        # per-address limits by default (docs/operations.md).
        assert opened_from(caplog) and all(a.startswith("127.0.0.1:") for a in opened_from(caplog))
        assert relay.connections.of("127.0.0.1") >= 2  # Alice's and Bob's live sessions
        assert "127.0.0.1" in relay.config.exempt_addresses


async def test_nginx_logs_each_client_and_the_relay_counts_them_as_one_address(
    proxies: ProxyStarter, make_relay: RelayFactory, certificate: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    cert, key = certificate
    # Without the loopback exemption, the per-address limits apply to the proxy's address:
    # one create per window for every client behind it together.
    relay = await make_relay(exempt_addresses=frozenset(), max_creates_per_address=1)
    proxy = await start_nginx(proxies, tmp_path, cert, key, relay)
    url, trusting = f"wss://127.0.0.1:{proxy.port}", ssl.create_default_context(cafile=str(cert))

    alice = await create_space(url, Identity.generate(), data_dir=tmp_path / "alice", ssl=trusting)
    with pytest.raises(RelayError) as refused:
        await create_space(url, Identity.generate(), data_dir=tmp_path / "bob", ssl=trusting)
    assert refused.value.code == "rate_limited"
    await alice.close()

    await proxy.stop()  # nginx writes a websocket's access-log line when it ends
    upgrades = [line for line in (tmp_path / "nginx" / "access.log").read_text().splitlines()
                if re.search(r'"GET / HTTP/1\.1" 101 ', line)]
    assert upgrades and all(line.startswith("127.0.0.1 ") for line in upgrades)  # the clients' addresses


def test_the_documented_configurations_are_the_tested_ones() -> None:
    """docs/operations.md quotes deploy/nginx.conf and deploy/Caddyfile verbatim."""
    docs = OPERATIONS.read_text()
    for template, fence in ((NGINX_TEMPLATE, "nginx"), (CADDY_TEMPLATE, "caddyfile")):
        assert f"```{fence}\n{template.read_text()}```" in docs, f"{template.name} is not quoted as is"
