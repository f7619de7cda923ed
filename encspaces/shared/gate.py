"""What every edit passes before it touches the document: permission, then size.

One local edit (or one ``transaction()``) becomes one Yjs update and so one entry, and an
entry over the relay's limit can reach nobody. Yjs cannot roll an edit back, so an edit too
large must be refused before the document changes, or this device would hold content no one
else ever gets. The size of the update is not known before the edit, so each edit is charged
a conservative estimate (``value_size``: an upper bound on how Yjs encodes it); within a
transaction the charges add up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..core.encoding import DEFAULT_MAX_MESSAGE
from ..errors import EntryTooLargeError
from .values import utf8_len

# The largest update one edit may produce: the relay's frame limit less room for the entry's
# header, signature, nonce and tag (about 300 bytes, measured) and the submit framing.
MAX_EDIT_BYTES = DEFAULT_MAX_MESSAGE - 4096
ITEM_BYTES = 64  # upper bound of one Yjs item's framing: info, two origin ids, parent, length
DELETE_BYTES = 32  # a delete-set range; deletes are charged this much per call
CALL_BYTES = 1024  # per call: format marks Yjs adds around an insert, delete set, state header


def value_size(value: Any, key: str = "") -> int:
    """An upper bound on the encoded size of a checked plain value stored as one item under ``key``."""
    size = ITEM_BYTES + 5 + utf8_len(key)
    if isinstance(value, str):
        return size + 5 + utf8_len(value)
    if isinstance(value, Mapping):
        return size + sum(value_size(item, k) for k, item in value.items())
    if isinstance(value, list):
        return size + sum(value_size(item) for item in value)
    return size + 9  # None, bool, a number: at most a tag and a float64


class Gate:
    """Called before every edit of one object: the space's permission check; ``charge`` the size."""

    def __init__(self, allow: Callable[[], None], budget: EditBudget, root: str) -> None:
        self.allow = allow  # (what calling the gate does: a keystroke's path calls it directly)
        self.budget = budget
        self._root_bytes = utf8_len(root)  # items with no neighbour name their root

    def __call__(self) -> None:
        self.allow()

    def charge(self, size: int, items: int = 1) -> None:
        """Refuse with EntryTooLargeError, before anything changes, an edit that cannot fit an entry.

        Outside a transaction an edit that fits leaves the budget as it is: the budget is only
        asked when it has something to do (a keystroke's path, one call less)."""
        total = size + items * self._root_bytes + CALL_BYTES
        budget = self.budget
        if budget.depth or total > budget.limit:
            budget.charge(total)


class EditBudget:
    """The running estimate of the update the open transaction (if any) will produce."""

    def __init__(self, limit: int = MAX_EDIT_BYTES) -> None:
        self.limit = limit
        self.depth = 0  # open transaction() blocks
        self.used = 0

    def charge(self, size: int) -> None:
        total = self.used + size if self.depth else size
        if total > self.limit:
            where = "this transaction would grow to" if self.depth else "this edit would make"
            raise EntryTooLargeError(
                f"{where} an update of up to {total} bytes; one entry carries at most {self.limit}: "
                "split it into smaller edits (or store large content as a file: space.files)")
        if self.depth:
            self.used = total

    def begin(self) -> None:
        self.depth += 1

    def end(self) -> None:
        self.depth -= 1
        if not self.depth:
            self.used = 0


__all__ = ["CALL_BYTES", "DELETE_BYTES", "ITEM_BYTES", "MAX_EDIT_BYTES", "EditBudget", "Gate", "value_size"]
