"""Operating a relay: close codes, health and metrics, plain HTTP, TLS, and the errors clients get."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path

import pytest
from relay_kit import WAIT, RawClient, RelayFactory, SpaceBuilder, join, url_of, wait_until

from encspaces import create_space
from encspaces.core.identity import Identity
from encspaces.errors import ConnectionFailedError, InvalidArgumentError, RelayError, RelayTLSError
from encspaces_clients.cli.errors import explain
from encspaces_relay.datadir_lock import DataDirLockedError
from encspaces_relay.server import RelayServer

# --- close codes ------------------------------------------------------------------------------


async def test_a_space_closing_is_a_normal_closure_at_the_relay(
    relay: RelayServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="encspaces_relay.session")
    space = await create_space(url_of(relay), Identity.generate(), data_dir=tmp_path / "alice")
    await space.close()

    def closes() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "close_code", None) is not None]

    await wait_until(lambda: len(closes()) == 2, "both connections (challenge, session) logged their close")
    assert [r.__dict__["close_code"] for r in closes()] == [1000, 1000]  # not 1011, the internal error
    assert all(r.levelno == logging.INFO and "closed normally" in r.getMessage() for r in closes())


async def test_close_codes_a_client_sees(make_relay: RelayFactory) -> None:
    relay = await make_relay()
    client = await RawClient.open(url_of(relay))
    await client.send("a text frame")
    await client.expect_refusal("malformed")
    assert client.ws.close_code == 1008  # policy violation: the client broke the protocol

    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    await relay.stop()
    await alice.client.expect_closed()
    assert alice.client.ws.close_code == 1001  # going away: reconnect later


# --- GET / on the relay port, health and metrics ----------------------------------------------


async def _http_get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of a plain HTTP GET to 127.0.0.1:port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(WAIT):
        data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name} in:\n{text}")


async def test_plain_http_on_the_relay_port_says_what_it_is(relay: RelayServer) -> None:
    assert relay.port is not None
    status, kind, body = await _http_get(relay.port, "/")
    assert status == 200 and kind.startswith("text/plain")
    assert "encspaces relay" in body and "ws://" in body


async def test_metrics_are_off_by_default(relay: RelayServer) -> None:
    assert relay.metrics_port is None


async def test_health_and_metrics_of_a_working_relay(make_relay: RelayFactory) -> None:
    relay = await make_relay(metrics_port=0)
    port = relay.metrics_port
    assert port is not None and port != relay.port
    status, kind, body = await _http_get(port, "/healthz")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body) == {"status": "ok", "spaces": 0, "spaces_loaded": 0, "connections": 0}

    space = SpaceBuilder(relay.public_key)
    alice = await join(url_of(relay), space, space.creator, create=True)
    for _ in range(3):
        await alice.submit([space.data(space.creator) for _ in range(5)])
    stranger = await RawClient.open(url_of(relay))
    await stranger.send(b"\x00not msgpack")
    await stranger.expect_refusal("malformed")

    status, kind, text = await _http_get(port, "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    assert _metric(text, "encspaces_relay_entries_sequenced_total") == 15  # the genesis is created, not sequenced
    assert _metric(text, "encspaces_relay_commit_seconds_count") == 3
    assert _metric(text, "encspaces_relay_connections") == 1  # alice; the stranger is gone
    assert _metric(text, "encspaces_relay_opening_connections") == 0
    assert _metric(text, "encspaces_relay_spaces_loaded") == 1
    assert _metric(text, "encspaces_relay_subscribers") == 1
    assert _metric(text, "encspaces_relay_commit_queue_depth") == 0
    assert _metric(text, "encspaces_relay_fanout_buffered_bytes") >= 0
    assert _metric(text, "encspaces_relay_blob_bytes") == 0
    assert 'encspaces_relay_refusals_total{code="malformed"} 1.0' in text
    status, _, body = await _http_get(port, "/nothing")
    assert status == 404
    await alice.close()


async def test_health_is_503_when_the_store_does_not_answer(make_relay: RelayFactory) -> None:
    relay = await make_relay(metrics_port=0)
    assert relay.metrics_port is not None
    await relay.store._reader.close()  # the store breaks under the running relay
    status, _, body = await _http_get(relay.metrics_port, "/healthz")
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "unavailable" and "the store does not answer" in answer["reason"]


# --- one relay per data dir (in one process too; tests/relay/test_relay_ops_process.py: two) ---


async def test_a_second_relay_on_the_same_data_dir_is_refused(make_relay: RelayFactory, tmp_path: Path) -> None:
    first = await make_relay(data_dir=tmp_path / "data")
    with pytest.raises(DataDirLockedError, match=r"in use by another relay \(pid \d+\)"):
        await make_relay(data_dir=tmp_path / "data")
    await first.stop()
    again = await make_relay(data_dir=tmp_path / "data")  # released at stop
    assert again.public_key == first.public_key


# --- the errors a client gets ----------------------------------------------------------------


async def test_create_space_reports_a_refusal_at_once(make_relay: RelayFactory, tmp_path: Path) -> None:
    relay = await make_relay(max_connections=1)
    holder = await RawClient.open(url_of(relay))
    with pytest.raises(RelayError) as refused:
        await create_space(url_of(relay), Identity.generate(), data_dir=tmp_path / "alice")
    assert refused.value.code == "busy"
    assert "limit of 1 connections" in refused.value.relay_message
    await holder.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765", "https://relay.example", "127.0.0.1:8765", "relay.example"])
async def test_a_url_that_is_not_a_websocket_url_says_so(url: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"not a websocket URL: use ws://host:port, or wss://host"):
        await create_space(url, Identity.generate(), data_dir=tmp_path / "alice")
    message, _ = explain(InvalidArgumentError("x"))
    assert "is the relay running" not in message


async def test_wss_against_a_plain_relay_says_so(relay: RelayServer, tmp_path: Path) -> None:
    url = f"wss://127.0.0.1:{relay.port}"
    with pytest.raises(RelayTLSError, match="the relay probably serves plain websockets; use a ws:// URL") as failed:
        await create_space(url, Identity.generate(), data_dir=tmp_path / "alice")
    message, code = explain(failed.value)
    assert "is the relay running" not in message and code == 4


# --- TLS ------------------------------------------------------------------------------------


async def test_tls_relay_serves_a_client_that_trusts_its_certificate(
    make_relay: RelayFactory, certificate: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    relay = await make_relay(tls_cert=cert, tls_key=key)
    url = f"wss://127.0.0.1:{relay.port}"
    identity = Identity.generate()

    with pytest.raises(RelayTLSError, match="certificate this device does not trust") as untrusted:
        await create_space(url, identity, data_dir=tmp_path / "untrusted")
    assert "is the relay running" not in explain(untrusted.value)[0]

    trusting = ssl.create_default_context(cafile=str(cert))
    space = await create_space(url, identity, data_dir=tmp_path / "alice", ssl=trusting)
    space.text("notes").insert(0, "over TLS")
    await space.sync()  # sent, sequenced, verified: the whole path runs over TLS
    assert space.seq >= 2
    await space.close()

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the system's way, without ssl=
    again = await create_space(url, identity, data_dir=tmp_path / "bob")
    await again.close()

    with pytest.raises(ConnectionFailedError, match=r"did not answer in HTTP.*use a wss:// URL"):
        await create_space(f"ws://127.0.0.1:{relay.port}", identity, data_dir=tmp_path / "plain")
    with pytest.raises(InvalidArgumentError, match="wss:// URLs only"):
        await create_space(f"ws://127.0.0.1:{relay.port}", identity, data_dir=tmp_path / "plain", ssl=trusting)


async def test_tls_needs_a_usable_certificate(make_relay: RelayFactory, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(ValueError, match="cannot use the TLS certificate"):
        await make_relay(tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem")
    with pytest.raises(ValueError, match="both a certificate"):
        await make_relay(tls_cert=tmp_path / "cert.pem")
