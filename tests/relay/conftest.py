"""Fixtures: a real relay on 127.0.0.1, on a free port, with its data in the test's tmp dir.

Relays start as every suite's do (``tests.support.RelayHandle``); the relay's own tests talk
to the ``RelayServer`` itself (its key, rooms and store), so these fixtures hand out the server.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from relay_kit import RelayFactory

from encspaces_relay.server import RelayServer
from tests.support import Relays


@pytest.fixture
async def make_relay(tmp_path: Path) -> AsyncIterator[RelayFactory]:
    """Start relays with config overrides (``cls=`` for a subclass); all are stopped at the end."""
    relays = Relays(tmp_path)

    async def make(*, cls: type[RelayServer] = RelayServer, data_dir: Path | None = None,
                   **overrides: Any) -> RelayServer:
        server = (await relays.start(cls, data_dir, **overrides)).server
        assert server is not None
        return server

    try:
        yield make
    finally:
        await relays.stop()


@pytest.fixture
async def relay(make_relay: RelayFactory) -> RelayServer:
    return await make_relay()


# --- one line for the cluster tests a machine without PostgreSQL or NATS skips ----------------

_MISSING_SERVERS = ("PostgreSQL tests need", "NATS tests need")
_skipped_for: dict[str, int] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(_MISSING_SERVERS):
            _skipped_for[reason] = _skipped_for.get(reason, 0) + 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason, count in _skipped_for.items():
        terminalreporter.write_line(f"{count} cluster tests skipped: {reason}")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (made by the openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate (and the cryptography package is not installed)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key
