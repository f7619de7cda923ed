"""Plain JSON-like Python values in, plain Python values out.

Applications should not need to know pycrdt's types. Values going in are checked up front,
because pycrdt panics (a BaseException that escapes ordinary error handling) on some of them
and silently changes others. The rule: every value a call accepts reads back equal, on this
device and every other, through snapshots and the local store; anything else is refused at
the call with ``UnsupportedValueError`` naming where in the value it is and why.

Yjs stores every number as a 64-bit float, so an int comes back from pycrdt as ``1.0``;
reading turns integral floats within ±(2**53-1) back into ints (so ``5.0`` reads as ``5``,
which compares equal; ``-0.0``, which Yjs encodes as the integer 0, is stored as ``0.0``),
keeps every other float as it is (``1e20``, ``5e-324``), and integers
that a float cannot hold exactly are refused, since otherwise the writer would keep an exact
value that every other member sees rounded and the copies would disagree.

Reading must also survive whatever another member wrote, including content this API never
writes (embeds, XML, sub-documents, values nested thousands deep): ``to_plain`` and
``canonical`` walk values without recursion and never raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pycrdt

from ..core.encoding import MAX_VALUE_DEPTH
from ..errors import UnsupportedTypeError, UnsupportedValueError

MAX_SAFE_INT = 2**53 - 1  # the largest integer a float64 (and so every Yjs peer) holds exactly
MAX_DEPTH = MAX_VALUE_DEPTH  # nesting of lists and dicts in one value: deeper is refused (readers walk any depth)


def check_str(value: str, where: str = "value") -> str:
    """Refuse strings UTF-8 cannot encode (lone surrogates), on which pycrdt panics."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsupportedValueError(
            f"{where}: the string contains a lone surrogate and is not valid Unicode text") from None
    return value


def utf8_len(value: str) -> int:
    """Yrs counts text positions in UTF-8 bytes; the API counts Python characters."""
    return len(value) if value.isascii() else len(value.encode("utf-8"))


def check_plain(value: Any, where: str = "value", depth: int = 0) -> Any:
    """Return ``value`` as stored plain data (tuples become lists), or raise ``UnsupportedValueError``.

    Accepted: None, bool, int within ±(2**53-1), finite float, str without lone surrogates,
    and lists, tuples and dicts with str keys made of these, nested at most ``MAX_DEPTH`` deep.
    A value of an unsupported type raises ``UnsupportedTypeError`` (also a TypeError).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return check_str(value, where)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise UnsupportedValueError(
                f"{where}: the integer {value} is too large; Yjs numbers are exact only up to 2**53-1 "
                "(store it as a string)")
        return int(value)  # an int subclass (an IntEnum) is stored as its value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsupportedValueError(f"{where}: {value} is not a finite number")
        return float(value) + 0.0  # -0.0 becomes 0.0: Yjs encodes it as the integer 0 anyway
    if isinstance(value, (list, tuple, Mapping)) and depth >= MAX_DEPTH:
        raise UnsupportedValueError(f"{where}: nested more than {MAX_DEPTH} lists and dicts deep")
    if isinstance(value, (list, tuple)):
        return [check_plain(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsupportedTypeError(f"{where}: dict keys must be str, not {type(key).__name__} ({key!r})")
            out[check_str(key, f"{where} key {key!r}")] = check_plain(item, f"{where}[{key!r}]", depth + 1)
        return out
    raise UnsupportedTypeError(f"{where}: {type(value).__name__} is not a JSON-like value")


def to_shared(value: Any) -> Any:
    """Checked plain data as pycrdt content: dicts and lists become nested, mergeable Map/Array."""
    if isinstance(value, dict):
        return pycrdt.Map({key: to_shared(item) for key, item in value.items()})
    if isinstance(value, list):
        return pycrdt.Array([to_shared(item) for item in value])
    return value


# --- reading: iterative walks that take anything pycrdt hands back ------------------------------

_Put = Callable[[Any], None]


def _number(value: float) -> float | int:
    """Integral floats within the safe range read as ints (-0.0 as 0); every other float as it is."""
    if value.is_integer() and abs(value) <= MAX_SAFE_INT:
        return int(value)
    return value


def _children(value: Any, canonical: bool) -> tuple[str, list[tuple[str, Any]]] | None:
    """How to walk ``value``: a tag and its (key, child) pairs ("m" a map, "l" a list), or None for a leaf."""
    if isinstance(value, pycrdt.Map):
        return "m", [(key, value[key]) for key in sorted(value.keys())]
    if isinstance(value, dict):
        return "m", [(str(key), value[key]) for key in sorted(value, key=str)]
    if isinstance(value, pycrdt.Array | list | tuple):
        return "l", [("", item) for item in value]
    if not canonical:
        return None
    # Content this API never writes, but another Yjs client can: described, never dropped.
    if isinstance(value, pycrdt.Text):
        return "text", [("", [chunk, attrs or {}]) for chunk, attrs in value.diff()]
    if isinstance(value, pycrdt.XmlText):
        runs = [[chunk, attrs or {}] for chunk, attrs in value.diff()]
        return "xmltext", [("runs", runs), ("attributes", _attributes(value))]
    if isinstance(value, pycrdt.XmlElement):
        attributes = _attributes(value)
        return "xml", [("tag", value.tag), ("attributes", attributes), ("children", list(value.children))]
    if isinstance(value, pycrdt.XmlFragment):
        return "xmlfragment", [("children", list(value.children))]
    return None


def _attributes(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in list(value.attributes)}


def _leaf(value: Any, canonical: bool) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, int):
        # Beyond the safe range a number reads as a float, however it was encoded (Yjs writes some
        # integral floats as integers): the same value reads the same wherever it is stored.
        if abs(value) > MAX_SAFE_INT and -(2**1023) < value < 2**1023 and float(value) == value:
            return float(value)
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, pycrdt.Text):
        return str(value)  # (a text nested in a map or list: only another Yjs client writes one)
    return None  # XML, sub-documents: nothing this API can show


def to_plain(value: Any) -> Any:
    """What pycrdt hands back, as plain Python: nested types converted, dict keys sorted
    (Yjs map order differs between members), integral floats within ±(2**53-1) as ints.
    Content this API cannot write (XML, sub-documents) reads as None. Never raises, and does
    not recurse: a value nested 100,000 deep by another member must not raise."""
    if isinstance(value, pycrdt.Text):
        return str(value)
    out: list[Any] = []
    stack: list[tuple[Any, _Put]] = [(value, out.append)]
    while stack:
        item, put = stack.pop()
        shape = _children(item, canonical=False)
        if shape is None:
            put(_leaf(item, canonical=False))
            continue
        tag, children = shape
        if tag == "m":
            built: dict[str, Any] = {}
            for key, child in children:
                built[key] = None  # keys in sorted order now; values filled in as they are walked
                stack.append((child, _setter(built, key)))
            put(built)
        else:
            items: list[Any] = [None] * len(children)
            for i, (_, child) in enumerate(children):
                stack.append((child, _setter(items, i)))
            put(items)
    return out[0]


def _setter(target: Any, key: Any) -> _Put:
    def put(value: Any) -> None:
        target[key] = value

    return put


def canonical(value: Any) -> list[list[Any]]:
    """What a content hash packs for a value: a flat, typed, pre-order token list.

    It shows what ``to_plain`` shows, and describes content the API cannot write instead of
    dropping it. Flat, so that msgpack (which refuses deep nesting) packs any depth; typed
    (``["m", n]`` a map of n keys, ``["k", key]``, ``["l", n]`` a list, ``["v", x]`` a value), so
    that no two different values give the same tokens. Deterministic and total.
    """
    tokens: list[list[Any]] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Key):
            tokens.append(["k", item.key])
            continue
        shape = _children(item, canonical=True)
        if shape is None:
            tokens.append(_leaf_token(item))
            continue
        tag, children = shape
        tokens.append([tag, len(children)])
        for key, child in reversed(children):
            stack.append(child)
            if tag != "l":
                stack.append(_Key(key))
    return tokens


class _Key:
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


def _leaf_token(value: Any) -> list[Any]:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return ["i", str(value)]  # beyond what msgpack packs (only a local prelim value could be)
    if isinstance(value, pycrdt.Doc):
        return ["doc", str(value.guid)]
    leaf = _leaf(value, canonical=True)
    if leaf is None and value is not None:
        return ["?", type(value).__name__]
    return ["v", leaf]


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


__all__ = [
    "MAX_DEPTH", "MAX_SAFE_INT", "canonical", "check_plain", "check_str", "same", "to_plain", "to_shared",
    "utf8_len",
]
