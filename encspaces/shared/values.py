"""Plain JSON-like Python values in, plain Python values out.

Applications should not need to know pycrdt's types. Values going in are checked up front,
because pycrdt panics (a BaseException that escapes ordinary error handling) on some of them
and silently changes others. Yjs stores every number as a 64-bit float, so an int comes back
from pycrdt as ``1.0``; reading normalises integral floats back to ints, and integers that a
float cannot hold exactly are refused, since otherwise the writer would keep an exact value
that every other member sees rounded and the copies would disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pycrdt

from ..errors import UnsupportedTypeError, UnsupportedValueError

MAX_SAFE_INT = 2**53 - 1  # the largest integer a float64 (and so every Yjs peer) holds exactly


def check_str(value: str, where: str = "value") -> str:
    """Refuse strings UTF-8 cannot encode (lone surrogates), on which pycrdt panics."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsupportedValueError(
            f"{where}: the string contains a lone surrogate and is not valid Unicode text"
        ) from None
    return value


def utf8_len(value: str) -> int:
    """Yrs counts text positions in UTF-8 bytes; the API counts Python characters."""
    return len(value) if value.isascii() else len(value.encode("utf-8"))


def check_plain(value: Any, where: str = "value") -> Any:
    """Return ``value`` as stored plain data (tuples become lists), or raise UnsupportedTypeError (a TypeError)
    or UnsupportedValueError (a ValueError).

    Accepted: None, bool, int within ±2**53-1, finite float, str, and lists, tuples and
    dicts with str keys made of these.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_str(value, where)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise UnsupportedValueError(
                f"{where}: the integer {value} is too large; Yjs numbers are exact only up to 2**53-1"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsupportedValueError(f"{where}: {value} is not a finite number")
        return value
    if isinstance(value, (list, tuple)):
        return [check_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsupportedTypeError(f"{where}: dict keys must be str, not {type(key).__name__}")
            out[check_str(key, where)] = check_plain(item, f"{where}[{key!r}]")
        return out
    raise UnsupportedTypeError(f"{where}: {type(value).__name__} is not a JSON-like value")


def to_shared(value: Any) -> Any:
    """Checked plain data as pycrdt content: dicts and lists become nested, mergeable Map/Array."""
    if isinstance(value, dict):
        return pycrdt.Map({key: to_shared(item) for key, item in value.items()})
    if isinstance(value, list):
        return pycrdt.Array([to_shared(item) for item in value])
    return value


def to_plain(value: Any) -> Any:
    """What pycrdt hands back, as plain Python: nested types converted, integral floats as ints."""
    if isinstance(value, pycrdt.Text):
        return str(value)
    if isinstance(value, pycrdt.Map):  # keys sorted: Yjs map order differs between members
        return {key: to_plain(value[key]) for key in sorted(value.keys())}
    if isinstance(value, pycrdt.Array):
        return [to_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INT:
        return int(value)
    if isinstance(value, dict):
        return {key: to_plain(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [to_plain(item) for item in value]
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def same(a: Any, b: Any) -> bool:
    """Equality that does not confuse True with 1 (Python's ``==`` does), used to skip no-op writes."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return bool(a == b) and (a is None) == (b is None)


__all__ = ["MAX_SAFE_INT", "check_plain", "check_str", "same", "to_plain", "to_shared", "utf8_len"]
