"""The four kinds of shared object, and how each is laid out as a root of the Yjs document.

Yjs does not record a root's type in its updates: a peer that receives a root it never
opened sees an untyped branch, and opening it as the wrong type silently shows nothing. So
each object lives under a root named ``"<kind>:<name>"``. A text and a map that happen to
share a name can then never corrupt each other, and every member can tell from the document
alone which kind a name was created as, even before opening it.
"""

from __future__ import annotations

from typing import Literal, get_args

from ..errors import ArgumentTypeError, ObjectKindError

ObjectKind = Literal["text", "list", "map", "table"]
KINDS: tuple[ObjectKind, ...] = get_args(ObjectKind)


def root_name(kind: ObjectKind, name: str) -> str:
    """The document root that holds the object ``name`` of ``kind``."""
    return f"{kind}:{name}"


def parse_root_name(root: str) -> tuple[ObjectKind, str] | None:
    """``(kind, name)`` for a root created by encspaces; None for any other root."""
    kind, sep, name = root.partition(":")
    for known in KINDS:
        if sep and kind == known:
            return known, name
    return None


def check_name(name: object) -> str:
    """Names are plain strings; anything else is a programming error worth a clear message."""
    if not isinstance(name, str):
        raise ArgumentTypeError(f"a shared object's name must be a str, not {type(name).__name__}")
    return name


__all__ = ["KINDS", "ObjectKind", "ObjectKindError", "check_name", "parse_root_name", "root_name"]
