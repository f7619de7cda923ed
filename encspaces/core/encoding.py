"""Strict msgpack: the one place bytes from the wire become Python values.

Everything that arrives from a relay or a client is hostile until proven otherwise, so
decoding refuses what the protocol never produces (maps with non-string keys, ext types,
huge containers) and the small typed getters below turn a wrong type into a ProtocolError
that names the field, instead of a TypeError deep inside the caller.
"""

from __future__ import annotations

import base64
from typing import Any

import msgpack

from ..errors import ArgumentTypeError, MalformedIdError, ProtocolError
from . import crypto

DEFAULT_MAX_MESSAGE = 1 << 20  # 1 MiB


def pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes, *, max_size: int = DEFAULT_MAX_MESSAGE, what: str = "message") -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"{what}: expected binary data, found {type(data).__name__}")
    if len(data) > max_size:
        raise ProtocolError(f"{what}: {len(data)} bytes is over the limit of {max_size}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}: not valid msgpack ({exc})") from exc


def unpack_array_start(data: bytes, count: int, *, what: str = "message") -> list[Any]:
    """The first ``count`` items of a msgpack array whose end may be cut off (``data`` is its start)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, use_list=True, ext_hook=_refuse_ext,
                                max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        if unpacker.read_array_header() < count:
            raise ProtocolError(f"{what}: fewer than {count} items")
        return [unpacker.unpack() for _ in range(count)]
    except (ValueError, TypeError, msgpack.OutOfData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}: not the start of a msgpack array of {count} items ({exc})") from exc


# Lists and maps nested in one value a member writes (a shared value, a presence state): the API
# refuses deeper ones and peers drop deeper presence; readers walk any depth.
MAX_VALUE_DEPTH = 64


def deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and maps nest more than ``limit`` deep in a decoded value (walked without
    recursion: msgpack decodes ~1,000 levels from 1 KB, and Python's own comparison or repr of
    such a value raises RecursionError)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            if depth >= limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not part of the protocol")


def as_list(value: Any, what: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise ProtocolError(f"{what}: expected an array, found {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ProtocolError(f"{what}: expected {length} items, found {len(value)}")
    return value


def as_map(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what}: expected a map, found {type(value).__name__}")
    return value


def as_bytes(value: Any, what: str, size: int | None = None, max_size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise ProtocolError(f"{what}: expected bytes, found {type(value).__name__}")
    if size is not None and len(value) != size:
        raise ProtocolError(f"{what}: expected {size} bytes, found {len(value)}")
    if max_size is not None and len(value) > max_size:
        raise ProtocolError(f"{what}: {len(value)} bytes is over the limit of {max_size}")
    return value


def as_int(value: Any, what: str, minimum: int = 0, maximum: int = (1 << 63) - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{what}: expected an integer, found {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ProtocolError(f"{what}: {value} is outside [{minimum}, {maximum}]")
    return value


def as_str(value: Any, what: str, max_len: int = 256) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: expected a string, found {type(value).__name__}")
    if len(value) > max_len:
        raise ProtocolError(f"{what}: string of {len(value)} characters is over {max_len}")
    return value


def field(message: dict[str, Any], key: str, what: str) -> Any:
    try:
        return message[key]
    except KeyError:
        raise ProtocolError(f"{what}: missing field {key!r}") from None


def to_text(prefix: str, data: bytes) -> str:
    """``prefix.`` + base64url without padding: how links, pairing strings and certificates are
    written for people to copy (the prefix says what it is and which version)."""
    return f"{prefix}.{base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')}"


def from_text(text: object, prefix: str, what: str) -> bytes:
    """The bytes of ``to_text(prefix, ...)``'s form. ``what`` names it in errors ("an invite link"):
    ``ArgumentTypeError`` if ``text`` is not a str, ``MalformedIdError`` (a ValueError) for another
    prefix or invalid base64url. Checksums and signatures are the caller's to check."""
    if not isinstance(text, str):
        raise ArgumentTypeError(f"{what} is a str, not {type(text).__name__}")
    found, _, encoded = text.strip().partition(".")
    if found != prefix or not encoded:
        raise MalformedIdError(f"not {what}: expected '{prefix}.…', found {text[:20]!r}")
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (ValueError, UnicodeEncodeError) as exc:
        raise MalformedIdError(f"{what} is not valid base64url: {exc}") from exc



CHECK_BYTES = 4  # the checksum that ends a checked text form: a cut or mistyped copy fails it


def to_checked_text(prefix: str, context: bytes, body: bytes) -> str:
    """``to_text`` of ``body`` followed by a short checksum under ``context``: for strings people
    copy by hand (invite links, pairing strings), so that a copy cut short is told apart from a
    wrong one."""
    return to_text(prefix, body + crypto.hash_parts(context, body)[:CHECK_BYTES])


def from_checked_text(text: object, prefix: str, context: bytes, what: str) -> bytes:
    """The body of ``to_checked_text``'s form; ``MalformedIdError`` (a ValueError) when it is not
    ``prefix``'s form, or is empty, or its checksum does not match ("was it copied in full?")."""
    raw = from_text(text, prefix, f"{_article(what)} {what}")
    body, check = raw[:-CHECK_BYTES], raw[-CHECK_BYTES:]
    if not body or crypto.hash_parts(context, body)[:CHECK_BYTES] != check:
        raise MalformedIdError(f"{what} checksum does not match: was it copied in full?")
    return body


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"
