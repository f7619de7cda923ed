"""The relay's HTTP client for witnesses (encspaces_relay/witness_client.py), against canned answers:
what it makes of a 200, a 409, an error status, a chunked body, and something that is not HTTP."""

from __future__ import annotations

import asyncio

import nacl.signing
import pytest

from encspaces.core import note
from encspaces_relay.witness_client import WitnessAddressError, WitnessUnreachableError, add_checkpoint

SIGNER = note.Ed25519Signer(note.space_origin(bytes(32)), nacl.signing.SigningKey.generate())
CHECKPOINT = note.SignedCheckpoint.sign(note.Checkpoint(SIGNER.name, 5, bytes(32)), SIGNER)
COSIGNER = note.CosignatureSigner("w.example", nacl.signing.SigningKey.generate())
LINE = CHECKPOINT.cosign(COSIGNER, 1_700_000_000).line().encode()




async def _serve(answer: bytes, seen: list[bytes]) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
        length = int(lengths[0])
        seen.append(head + await reader.readexactly(length))
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/prefix"


def _http(status: str, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers] if any(h.lower().startswith("transfer-encoding") for h in headers) \
        else [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(("answer", "status", "cosigned", "latest", "reason"), [
    (_http("200 OK", LINE), 200, True, None, ""),
    (_http("200 OK", b"%x\r\n" % len(LINE) + LINE + b"\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), 200, True,
     None, ""),
    (_http("409 Conflict", b"3\n", "Content-Type: text/x.tlog.size"), 409, False, 3, ""),
    (_http("422 Unprocessable Entity", b"not consistent with size 3\n"), 422, False, None,
     "not consistent with size 3"),
    (_http("200 OK", b"no signature here\n"), 502, False, None, "a 200 without valid signature lines"),
])
async def test_answers(answer: bytes, status: int, cosigned: bool, latest: int | None, reason: str) -> None:
    seen: list[bytes] = []
    server, url = await _serve(answer, seen)
    try:
        result = await add_checkpoint(url, 3, [bytes(32)], CHECKPOINT, timeout=10, allow_private=True)
    finally:
        server.close()
    assert (result.status, result.latest_size) == (status, latest)
    assert reason in result.reason
    if cosigned:
        [sig] = result.signatures
        assert COSIGNER.verifier().verify(CHECKPOINT.note.text.encode(), sig.signature)
    request = seen[0]
    assert request.startswith(b"POST /prefix/add-checkpoint HTTP/1.1\r\n")
    assert request.split(b"\r\n\r\n", 1)[1] == b"old 3\n" + b"A" * 43 + b"=\n\n" + CHECKPOINT.encode()


async def test_not_http_and_nobody_listening_are_unreachable() -> None:
    server, url = await _serve(b"SSH-2.0-OpenSSH\r\n", [])
    try:
        with pytest.raises(WitnessUnreachableError, match="not HTTP"):
            await add_checkpoint(url, 0, [], CHECKPOINT, timeout=10, allow_private=True)
    finally:
        server.close()
        await server.wait_closed()
    with pytest.raises(WitnessUnreachableError):
        await add_checkpoint(url, 0, [], CHECKPOINT, timeout=10, allow_private=True)  # the port is closed now


@pytest.mark.parametrize("url", ["http://127.0.0.1:8766", "http://localhost:8766", "http://10.1.2.3",
                                 "http://169.254.169.254/latest", "http://[::1]:8766", "https://192.168.0.1"])
async def test_a_private_address_is_not_contacted_unless_allowed(url: str) -> None:
    # Witness URLs are chosen by a space's admin: without the operator's leave, the relay does
    # not POST into its own network (the loopback, the cloud metadata address, the LAN).
    seen: list[bytes] = []
    server, _ = await _serve(_http("200 OK", LINE), seen)
    try:
        with pytest.raises(WitnessAddressError, match="private, loopback or reserved"):
            await add_checkpoint(url, 0, [], CHECKPOINT, timeout=10)
    finally:
        server.close()
    assert seen == []
