"""The relay's side of C2SP tlog-witness: POST a checkpoint to a witness, read its answer.

A small HTTP/1.1 client over asyncio streams (one request per connection, ``Connection:
close``), because the relay's dependencies have no HTTP client and it needs exactly one
request shape. ``http://`` and ``https://`` (the system's trust store). Every call is bounded
by a timeout; the caller (encspaces_relay/checkpoints.py) runs it off the edit path.

Witness URLs come from spaces' logs, which any space's admin writes: without care the relay
would POST wherever they point, its own network included (the loopback, the cloud metadata
address, the operator's internal services). So a witness is reached only at a public address
unless the operator allows private ones (``--allow-private-witnesses``, what ``make run`` and
the tests use): the name is resolved here, every address checked, and the connection made to
the checked address (a second lookup cannot swap in another).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from encspaces.core import note
from encspaces.errors import MalformedNoteError

MAX_RESPONSE = 64 * 1024


class WitnessUnreachableError(Exception):
    """No answer from a witness (refused, reset, timed out, not HTTP): try again later."""


@dataclass(frozen=True)
class AddResult:
    """What a witness answered: 200 with cosignature lines, 409 with the size it last cosigned,
    or another status with its one-line reason."""

    status: int
    signatures: tuple[note.NoteSignature, ...] = ()
    latest_size: int | None = None
    reason: str = ""


class WitnessAddressError(WitnessUnreachableError):
    """The witness's name resolves to no address the relay may connect to."""


async def _address(host: str, port: int, allow_private: bool) -> str:
    """The first address of ``host`` the relay may reach (public ones unless ``allow_private``)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WitnessUnreachableError(f"cannot resolve {host}: {exc}") from None
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if allow_private or ipaddress.ip_address(address.split("%")[0]).is_global:
            return address
    raise WitnessAddressError(f"{host} resolves only to private, loopback or reserved addresses, which this relay "
                              "does not contact (an operator may allow them: --allow-private-witnesses)")


async def post(
    url: str, path: str, body: bytes, content_type: str, timeout: float, *, allow_private: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """One POST; (status, lower-cased headers, body). Raises WitnessUnreachableError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WitnessUnreachableError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = ssl.create_default_context() if parts.scheme == "https" else None
    target = parts.path.rstrip("/") + path
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    request = (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\nUser-Agent: encspaces-relay\r\n\r\n").encode()
    try:
        async with asyncio.timeout(timeout):
            address = await _address(parts.hostname, port, allow_private)
            reader, writer = await asyncio.open_connection(
                address, port, ssl=context, server_hostname=parts.hostname if context else None)
            try:
                writer.write(request + body)
                await writer.drain()
                data = await reader.read(MAX_RESPONSE + 8192)
                while chunk := await reader.read(65536):
                    data += chunk
                    if len(data) > MAX_RESPONSE + 8192:
                        raise WitnessUnreachableError("the witness's answer is too large")
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError:
        raise WitnessUnreachableError(f"no answer within {timeout:g} s") from None
    except (OSError, ssl.SSLError, EOFError) as exc:
        raise WitnessUnreachableError(f"{type(exc).__name__}: {exc}") from None
    return _parse_response(data)


def _parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise WitnessUnreachableError("the answer is not HTTP (no end of headers)")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
        raise WitnessUnreachableError(f"the answer is not HTTP: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    elif "content-length" in headers:
        try:
            body = body[: int(headers["content-length"])]
        except ValueError:
            raise WitnessUnreachableError("the answer's Content-Length is not a number") from None
    return int(status_line[1]), headers, body


def _unchunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, sep, rest = data.partition(b"\r\n")
        if not sep:
            raise WitnessUnreachableError("a chunked answer ends early")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise WitnessUnreachableError("a chunked answer has a bad chunk size") from None
        if size == 0:
            return out
        out += rest[:size]
        data = rest[size + 2 :]


async def add_checkpoint(
    url: str, old_size: int, proof: Sequence[bytes], checkpoint: note.SignedCheckpoint, timeout: float, *,
    allow_private: bool = False,
) -> AddResult:
    """POST /add-checkpoint; the witness's answer, parsed. Raises WitnessUnreachableError."""
    # old <size>, the proof's hashes one base64 line each, a blank line, the signed checkpoint.
    lines = [f"old {old_size}".encode(), *(base64.b64encode(h) for h in proof)]
    body = b"\n".join(lines) + b"\n\n" + checkpoint.encode()
    status, _, answer = await post(url, "/add-checkpoint", body, "text/plain", timeout, allow_private=allow_private)
    if status == 200:
        try:
            return AddResult(status, tuple(note.parse_signature_lines(answer)))
        except MalformedNoteError as exc:
            return AddResult(502, reason=f"a 200 without valid signature lines: {exc}")
    if status == 409:
        text = answer.decode("ascii", "replace").strip()
        if text.isdigit():
            return AddResult(status, latest_size=int(text))
        return AddResult(status, reason=f"a 409 without a size: {text[:60]!r}")
    return AddResult(status, reason=answer.decode("utf-8", "replace").strip()[:300])
