"""A relay's URL and what went wrong reaching it, said so that the user knows what to change.

A relay is reached at ``ws://host:port`` or, with TLS, ``wss://host[:port]``. The usual
mistakes each get their own message instead of "cannot reach the relay": an ``http://`` or
bare ``host:port`` URL, ``wss://`` against a relay serving plain ``ws://`` (and the reverse),
and a certificate this device does not trust. To trust a private CA or a self-signed
certificate, pass ``ssl=`` (an ``ssl.SSLContext``) to ``create_space``/``join``/``connect``, or
set ``SSL_CERT_FILE`` to its PEM file (OpenSSL reads it for Python's default context).
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import websockets.exceptions

from .errors import ConnectionFailedError, InvalidArgumentError, RelayTLSError

SCHEMES = ("ws", "wss")


def check_relay_url(url: str, tls: ssl.SSLContext | None = None) -> None:
    """InvalidArgumentError unless ``url`` is a ws:// or wss:// URL with a host (and ``tls`` fits it)."""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError as exc:
        raise InvalidArgumentError(f"the relay URL {url!r} is not a URL: {exc}") from exc
    if scheme not in SCHEMES or not host:
        hint = ""
        if scheme in ("http", "https"):
            hint = f" (instead of {scheme}://, use {'wss' if scheme == 'https' else 'ws'}://)"
        raise InvalidArgumentError(
            f"the relay URL {url!r} is not a websocket URL: use ws://host:port, or wss://host with TLS{hint}"
        )
    if tls is not None and scheme != "wss":
        raise InvalidArgumentError(f"ssl= was given for {url!r}: TLS settings apply to wss:// URLs only")


def connect_options(url: str, tls: ssl.SSLContext | None) -> dict[str, Any]:
    """The ``ssl`` argument for websockets' connect: only when one was given (it refuses one for ws://)."""
    return {} if tls is None else {"ssl": tls}


def connect_failure(url: str, exc: BaseException) -> ConnectionFailedError:
    """The error to raise when connecting to ``url`` failed with ``exc``: specific where we can tell why."""
    secure = url.lower().startswith("wss://")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RelayTLSError(
            f"the relay at {url} presented a TLS certificate this device does not trust "
            f"({exc.verify_message or exc.reason}): if it is the right relay, give its CA with SSL_CERT_FILE "
            "or ssl=, else check the URL"
        )
    if secure and isinstance(exc, ssl.SSLError | ConnectionResetError | EOFError):
        return RelayTLSError(
            f"the TLS handshake with the relay at {url} failed ({_reason(exc)}): the relay probably serves plain "
            "websockets; use a ws:// URL, or ask its operator for the wss:// address"
        )
    if not secure and isinstance(exc, websockets.exceptions.InvalidMessage):
        return ConnectionFailedError(
            f"the relay at {url} did not answer in HTTP ({_reason(exc)}): if it serves TLS, use a wss:// URL"
        )
    return ConnectionFailedError(f"cannot reach the relay at {url}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        text = str(exc.reason)
    return text or type(exc).__name__
