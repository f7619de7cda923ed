"""Shared objects: the collaborative texts, lists, maps and tables a space is made of.

Each is a thin, typed wrapper over a pycrdt (Yjs) type that takes and returns plain Python
values, checks its arguments before touching the document, and calls the space's guard
before every edit so a failed space or a read-only member can never change local state.
``encspaces.document.Document`` creates them and turns their changes into typed events.
"""

from .array import SharedList
from .changes import Change, KeyChange, ListChange, MapChange, NestedChange, TableChange, TextChange, TextRange
from .feed import ChangeStream
from .kinds import ObjectKind, ObjectKindError
from .mapping import SharedMap
from .query import Row
from .table import SharedTable
from .text import SharedText
from .values import MAX_DEPTH

__all__ = [
    "MAX_DEPTH",
    "Change",
    "ChangeStream",
    "KeyChange",
    "ListChange",
    "MapChange",
    "NestedChange",
    "ObjectKind",
    "ObjectKindError",
    "Row",
    "SharedList",
    "SharedMap",
    "SharedTable",
    "SharedText",
    "TableChange",
    "TextChange",
    "TextRange",
]
