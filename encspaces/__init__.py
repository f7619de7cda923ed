"""encspaces: end-to-end-encrypted, verifiable, real-time collaboration.

The relay that stores and fans out a space's operations is not trusted: it sees only
ciphertext, and every frame it sends is verified against its signed, hash-chained log before
anything is applied.
"""

from . import errors
from .document import (
    Change,
    KeyChange,
    ListChange,
    MapChange,
    SharedList,
    SharedMap,
    SharedTable,
    SharedText,
    TableChange,
    TextChange,
    TextRange,
)
from .identity import Identity, PublicIdentity
from .invites import InviteInfo
from .membership import Member, Policy, Role
from .membership_events import MemberChange
from .rejections import RejectedEntry
from .space import Space, connect, create_space, join

__all__ = [
    "Change",
    "Identity",
    "InviteInfo",
    "KeyChange",
    "ListChange",
    "MapChange",
    "Member",
    "MemberChange",
    "Policy",
    "PublicIdentity",
    "RejectedEntry",
    "Role",
    "SharedList",
    "SharedMap",
    "SharedTable",
    "SharedText",
    "Space",
    "TableChange",
    "TextChange",
    "TextRange",
    "connect",
    "create_space",
    "errors",
    "join",
]
