"""The SDK's direct GET of a witness's checkpoint (encspaces/witness_client.py), against the real
``encspaces-witness`` daemon and against servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import nacl.signing
import pytest

from encspaces.core import merkle, note
from encspaces.core.identity import member_id
from encspaces.core.witnessing import QuorumRule, WitnessTracker, entry_leaf_hash
from encspaces.errors import InvalidArgumentError, WitnessUnreachableError
from encspaces.witness_client import checkpoint_path, fetch_checkpoint
from encspaces_witness.process import WitnessProcess
from tests.witness_daemon import submit

RELAY = nacl.signing.SigningKey(b"\x07" * 32)
SPACE = hashlib.sha256(b"witness client").digest()
ORIGIN = note.space_origin(SPACE)


def test_the_path_is_the_hex_sha256_of_the_origin() -> None:
    assert checkpoint_path(ORIGIN) == "/" + hashlib.sha256(ORIGIN.encode()).hexdigest() + "/checkpoint"


async def test_fetches_what_the_real_witness_cosigned_and_the_tracker_counts_it(tmp_path: Path) -> None:
    tree = merkle.MerkleTree()
    digests = [hashlib.sha256(bytes([i])).digest() for i in range(9)]
    tree.extend_hashes(entry_leaf_hash(d) for d in digests)
    signer = note.Ed25519Signer(ORIGIN, RELAY)
    async with WitnessProcess(tmp_path, [member_id(bytes(RELAY.verify_key))]) as witness:
        assert await fetch_checkpoint(witness.url, ORIGIN) is None  # never cosigned: 404
        signed = note.SignedCheckpoint.sign(note.Checkpoint(ORIGIN, 9, tree.root(9)), signer)
        await submit(witness.url, tree, 0, signed)
        data = await fetch_checkpoint(witness.url + "/", ORIGIN)
    assert data is not None
    served = note.SignedCheckpoint.parse(data)
    assert served.checkpoint == signed.checkpoint
    verifier = note.parse_vkey(witness.vkey)
    policy = [QuorumRule(1, ((verifier.name, verifier.public_key),), 1)]
    tracker = WitnessTracker(SPACE, bytes(RELAY.verify_key), policy, lambda: 0.0)
    for seq, d in enumerate(digests, 1):
        tracker.append(seq, d)
    tracker.add_checkpoint(data)
    assert tracker.witnessed_seq == 9


async def test_a_witness_that_is_down_is_unreachable(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(WitnessUnreachableError, match=f"witness http://127.0.0.1:{port}: ") as err:
        await fetch_checkpoint(f"http://127.0.0.1:{port}", ORIGIN)
    assert err.value.url == f"http://127.0.0.1:{port}"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def answering(response: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        writer.close()

    return handle


async def test_a_witness_that_never_answers_times_out() -> None:
    stop = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stop.wait()
        writer.close()

    async with serving(silent) as url:
        with pytest.raises(WitnessUnreachableError, match=r"no answer within 0\.2 s"):
            await fetch_checkpoint(url, ORIGIN, timeout=0.2)
        stop.set()


@pytest.mark.parametrize(("response", "reason"), [
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops\n", "HTTP status 500"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n", "over 65536"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "IncompleteReadError"),
    (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "malformed header line"),
])
async def test_a_response_that_is_not_a_checkpoint_is_refused(response: bytes, reason: str) -> None:
    async with serving(answering(response)) as url:
        with pytest.raises(WitnessUnreachableError, match=reason):
            await fetch_checkpoint(url, ORIGIN)


async def test_chunked_and_unframed_bodies_are_read_whole() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    async with serving(answering(chunked)) as url:
        assert await fetch_checkpoint(url, ORIGIN) == b"hello world"
    unframed = b"HTTP/1.0 200 OK\r\n\r\nuntil close"
    async with serving(answering(unframed)) as url:
        assert await fetch_checkpoint(url, ORIGIN) == b"until close"


async def test_the_request_names_the_path_and_host() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    async with serving(record) as url:
        assert await fetch_checkpoint(url + "/prefix", ORIGIN) is None
    port = url.rsplit(":", 1)[1]
    assert seen[0].startswith(f"GET /prefix{checkpoint_path(ORIGIN)} HTTP/1.1\r\n".encode())
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in seen[0]


@pytest.mark.parametrize("url", ["ftp://w.example", "w.example:80", "http://", "http://h:notaport"])
async def test_a_url_that_is_not_http_is_an_argument_error(url: str) -> None:
    with pytest.raises(InvalidArgumentError):
        await fetch_checkpoint(url, ORIGIN)
