"""Asking a witness directly for its newest checkpoint of a space (HTTP over asyncio streams).

``GET <witness url>/<hex SHA-256 of the origin>/checkpoint`` is the tlog-witness monitoring path:
the witness answers with the newest checkpoint it cosigned for that log (the relay's signature it
verified and its own cosignature), or 404 if it never cosigned one. Clients ask the witnesses
themselves, not through the relay, so a relay that shows members different logs cannot also filter
what they learn from the witnesses.

A small HTTP/1.1 client instead of a dependency: one GET, ``Connection: close``, a bounded body
(a checkpoint note is at most ``MAX_NOTE_SIZE`` bytes), ``http`` and ``https`` (with the system's
trust store or a given SSL context). Nothing here verifies the note: the caller feeds it to
:class:`encspaces.core.witnessing.WitnessTracker`, which does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl as ssl_module
from urllib.parse import urlsplit

from .core.note import MAX_NOTE_SIZE
from .errors import InvalidArgumentError, WitnessUnreachableError

DEFAULT_TIMEOUT = 10.0
_MAX_HEADER_LINE = 8 * 1024
_MAX_HEADERS = 64


def checkpoint_path(origin: str) -> str:
    """``/<hex SHA-256 of the origin>/checkpoint``."""
    return f"/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint"


def _target(url: str) -> tuple[str, int, bool, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(f"a witness URL is http(s)://host[:port][/prefix], not {url!r}")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise InvalidArgumentError(f"witness URL {url!r}: bad port") from None
    return parts.hostname, port, tls, parts.path.rstrip("/")


async def fetch_checkpoint(
    url: str, origin: str, *, timeout: float = DEFAULT_TIMEOUT, ssl: ssl_module.SSLContext | None = None
) -> bytes | None:
    """The witness's newest cosigned checkpoint note for ``origin`` (exact bytes), or None if it
    has none (404). Raises WitnessUnreachableError for anything else: refused connection,
    timeout, another status, a malformed or oversized response."""
    host, port, tls, prefix = _target(url)
    try:
        async with asyncio.timeout(timeout):
            return await _get(host, port, tls, prefix + checkpoint_path(origin), ssl)
    except TimeoutError:
        raise WitnessUnreachableError(url, f"no answer within {timeout:g} s") from None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise WitnessUnreachableError(url, f"{type(exc).__name__}: {exc}") from None


async def _get(host: str, port: int, tls: bool, path: str, ssl: ssl_module.SSLContext | None) -> bytes | None:
    context: ssl_module.SSLContext | None = None
    if tls:
        context = ssl or ssl_module.create_default_context()
    reader, writer = await asyncio.open_connection(host, port, ssl=context, limit=_MAX_HEADER_LINE)
    try:
        host_header = host if port == (443 if tls else 80) else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]:{port}"
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nAccept: text/plain\r\n"
            f"User-Agent: encspaces\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        status, headers = await _read_head(reader)
        body = await _read_body(reader, headers)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl_module.SSLError):
            await writer.wait_closed()
    if status == 404:
        return None
    if status != 200:
        raise ValueError(f"HTTP status {status}: {body[:200].decode('utf-8', 'replace').strip()!r}")
    return body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = await reader.readuntil(b"\r\n")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        raw = await reader.readuntil(b"\r\n")
        if raw == b"\r\n":
            return int(parts[1]), headers
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise ValueError(f"malformed header line {raw[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    raise ValueError(f"more than {_MAX_HEADERS} header lines")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                return bytes(body)
            if len(body) + size > MAX_NOTE_SIZE:
                raise ValueError(f"response body over {MAX_NOTE_SIZE} bytes")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ValueError(f"bad Content-Length {length[:20]!r}")
        n = int(length)
        if n > MAX_NOTE_SIZE:
            raise ValueError(f"response body of {n} bytes, over {MAX_NOTE_SIZE}")
        return await reader.readexactly(n)
    data = await reader.read(MAX_NOTE_SIZE + 1)
    while data and len(data) <= MAX_NOTE_SIZE:
        more = await reader.read(MAX_NOTE_SIZE + 1 - len(data))
        if not more:
            break
        data += more
    if len(data) > MAX_NOTE_SIZE:
        raise ValueError(f"response body over {MAX_NOTE_SIZE} bytes")
    return data


__all__ = ["DEFAULT_TIMEOUT", "checkpoint_path", "fetch_checkpoint"]
