"""A relay's URL and what went wrong reaching it, said so that the user knows what to change.

A relay is reached at ``ws://host:port`` or, with TLS, ``wss://host[:port]``. The usual
mistakes each get their own message instead of "cannot reach the relay": an ``http://`` or
bare ``host:port`` URL, ``wss://`` against a relay serving plain ``ws://`` (and the reverse),
and a certificate this device does not trust. To trust a private CA or a self-signed
certificate, pass ``ssl=`` (an ``ssl.SSLContext``) to ``create_space``/``join``/``connect``, or
set ``SSL_CERT_FILE`` to its PEM file (OpenSSL reads it for Python's default context).

A cluster of relays (docs/cluster.md) is given as several URLs: every call that takes a relay
takes one URL or a list of them, and the space fails over from one to the next.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import websockets.exceptions

from .errors import ArgumentTypeError, ConnectionFailedError, InvalidArgumentError, RelayBusyError, RelayTLSError

SCHEMES = ("ws", "wss")
MAX_RELAYS = 16  # the most URLs one space fails over between (as an invite link carries at most)

RelayUrls = str | Sequence[str]
"""One relay's URL, or the URLs of a cluster's relays in the order to try them."""


def relay_urls(urls: RelayUrls, tls: ssl.SSLContext | None = None) -> tuple[str, ...]:
    """``urls`` as a tuple of checked URLs, in order and without repeats (a str is one URL).

    InvalidArgumentError for an empty list, more than ``MAX_RELAYS`` or a URL that is not one
    (``check_relay_url``); ArgumentTypeError for anything but a str or a sequence of str.
    """
    if isinstance(urls, str):
        check_relay_url(urls, tls)
        return (urls,)
    if not isinstance(urls, Sequence) or not all(isinstance(url, str) for url in urls):
        raise ArgumentTypeError(f"relay URLs are a str or a list of str, not {urls!r:.80}")
    unique = tuple(dict.fromkeys(urls))
    if not 1 <= len(unique) <= MAX_RELAYS:
        raise InvalidArgumentError(f"give 1 to {MAX_RELAYS} relay URLs, not {len(unique)}")
    for url in unique:
        check_relay_url(url, tls)
    return unique


def check_relay_url(url: str, tls: ssl.SSLContext | None = None) -> None:
    """InvalidArgumentError unless ``url`` is a ws:// or wss:// URL with a host (and ``tls`` fits it)."""
    if isinstance(url, str) and any(c.isspace() or c == "," for c in url):
        raise InvalidArgumentError(f"the relay URL {url!r} contains a space or a comma: give several relays as a list")
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
    busy = HTTPStatus.SERVICE_UNAVAILABLE
    if isinstance(exc, websockets.exceptions.InvalidStatus) and exc.response.status_code == busy:
        answer = exc.response.body.decode("utf-8", "replace").strip()[:200] if exc.response.body else ""
        return RelayBusyError(
            f"the relay at {url} is busy (HTTP 503{': ' + answer if answer else ''}): it is at its limit of "
            "connections opening, or shutting down; try again later"
        )
    if not secure and isinstance(exc, websockets.exceptions.InvalidMessage):
        return ConnectionFailedError(
            f"the relay at {url} did not answer in HTTP ({_reason(exc)}): if it serves TLS, use a wss:// URL"
        )
    return ConnectionFailedError(f"cannot reach the relay at {url}: {_reason(exc)}")


def none_reachable(failures: Sequence[ConnectionFailedError]) -> ConnectionFailedError:
    """The error when every one of several relays failed (each in ``failures``, in order)."""
    if len(failures) == 1:
        return failures[0]
    cls = type(failures[0]) if len({type(f) for f in failures}) == 1 else ConnectionFailedError
    return cls(f"none of the {len(failures)} relays could be reached: " + "; ".join(str(f) for f in failures))


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        text = str(exc.reason)
    return text or type(exc).__name__
