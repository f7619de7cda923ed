"""encspaces: end-to-end-encrypted, verifiable, real-time collaboration.

The relay that stores and fans out a space's operations is not trusted: it sees only
ciphertext, and every frame it sends is verified against its signed, hash-chained log before
anything is applied.

Everything an application uses is importable from here. Only the exceptions are imported
with the package: the rest is loaded on first use (module ``__getattr__``), so the relay and
the pure protocol modules (``encspaces.core.log_state``, ...) that import ``encspaces.*`` do not
pull in pycrdt, the websocket client or the local store. Type checkers see every name
through the ``TYPE_CHECKING`` imports below.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import (
    ArgumentTypeError,
    AttestationError,
    AuthorSeqError,
    AuthorSeqGapError,
    AuthorSignatureError,
    BadSnapshotError,
    BlobMissingError,
    BlobRefusedError,
    BodyDigestError,
    ChainError,
    CheckpointEvidenceError,
    CheckpointForkError,
    CheckpointRollbackError,
    CheckpointWithheldError,
    ConnectionFailedError,
    DataDirLockedError,
    EncspacesError,
    EntryTooLargeError,
    EpochError,
    EpochKeyMissingError,
    FileArgumentError,
    FileChangedError,
    FileError,
    FileIntegrityError,
    FileSourceNotFoundError,
    FileTooLargeError,
    ForkError,
    FrameTooLargeError,
    HandshakeError,
    HeadMovedError,
    HistoryError,
    IdentityError,
    IndexOutOfRangeError,
    InternalError,
    InvalidArgumentError,
    KeyConfirmationError,
    MalformedEntryError,
    MalformedFrameError,
    MalformedIdError,
    MalformedNoteError,
    MembershipChangeError,
    MembershipError,
    MembershipRevokedError,
    MerkleArgumentError,
    MerkleError,
    MerkleProofError,
    MissingBodiesError,
    MissingKeyError,
    MissingNodeError,
    NoteError,
    NoteSignatureError,
    NotPermittedError,
    ObjectKindError,
    OperationTimeoutError,
    ParentError,
    PermissionDeniedError,
    ProtocolError,
    QueryError,
    ReadOnlyError,
    RelayConfigError,
    RelayError,
    RelaySignatureError,
    RelayTLSError,
    ReorderError,
    ReplayError,
    ResubmitLimitError,
    RollbackError,
    RowNotFoundError,
    RuleError,
    SpaceClosedError,
    SpaceExistsError,
    SpaceIdError,
    SpaceMismatchError,
    StoreError,
    StoreUnavailableError,
    UnknownFileError,
    UnsupportedTypeError,
    UnsupportedValueError,
    VerificationError,
    WithheldEntriesError,
    WitnessBadRequestError,
    WitnessConsistencyError,
    WitnessError,
    WitnessSignatureError,
    WitnessSizeMismatchError,
    WitnessUnknownOriginError,
    WitnessUnreachableError,
)

if TYPE_CHECKING:
    from .connection_state import ConnectionChange, ConnectionState
    from .core.identity import Identity, PublicIdentity
    from .core.invites import InviteInfo
    from .core.membership import Member, Policy, Role
    from .core.membership_events import MemberChange
    from .core.rejections import RejectedEntry, RejectionKind
    from .core.reverify import Reverification
    from .core.safety import safety_code
    from .core.witness_policy import Witness, WitnessPolicy
    from .document import SharedList, SharedMap, SharedTable, SharedText
    from .files import FileRef, Progress, SpaceFiles
    from .history import HistoryEntry, SpaceView
    from .local import StoredLog, load_stored_log, reverify_local
    from .options import Clock, ManualClock, SpaceOptions
    from .presence_channel import PresenceChange, PresenceChannel
    from .shared.changes import (
        Change,
        KeyChange,
        ListChange,
        MapChange,
        NestedChange,
        TableChange,
        TextChange,
        TextRange,
    )
    from .shared.feed import ChangeStream
    from .shared.kinds import ObjectKind
    from .shared.query import OrderBy, Row, Where
    from .space import Space, connect, create_space, join, open_local
    from .streams import EventStream

__version__ = "0.1.0"  # the same as pyproject.toml's version; tests/test_package.py checks it

# The library logs under "encspaces.*" and leaves output to the application (docs/logging.md).
logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> the module it is loaded from on first use
_LAZY: dict[str, str] = {
    "Space": ".space",
    "connect": ".space",
    "create_space": ".space",
    "join": ".space",
    "open_local": ".space",
    "SpaceOptions": ".options",
    "Clock": ".options",
    "ManualClock": ".options",
    "StoredLog": ".local",
    "load_stored_log": ".local",
    "reverify_local": ".local",
    "Reverification": ".core.reverify",
    "safety_code": ".core.safety",
    "Witness": ".core.witness_policy",
    "WitnessPolicy": ".core.witness_policy",
    "ConnectionChange": ".connection_state",
    "ConnectionState": ".connection_state",
    "Identity": ".core.identity",
    "PublicIdentity": ".core.identity",
    "Member": ".core.membership",
    "Policy": ".core.membership",
    "Role": ".core.membership",
    "MemberChange": ".core.membership_events",
    "InviteInfo": ".core.invites",
    "SharedList": ".document",
    "SharedMap": ".document",
    "SharedTable": ".document",
    "SharedText": ".document",
    "Change": ".shared.changes",
    "KeyChange": ".shared.changes",
    "ListChange": ".shared.changes",
    "MapChange": ".shared.changes",
    "NestedChange": ".shared.changes",
    "TableChange": ".shared.changes",
    "TextChange": ".shared.changes",
    "TextRange": ".shared.changes",
    "ObjectKind": ".shared.kinds",
    "OrderBy": ".shared.query",
    "Row": ".shared.query",
    "Where": ".shared.query",
    "ChangeStream": ".shared.feed",
    "EventStream": ".streams",
    "PresenceChange": ".presence_channel",
    "PresenceChannel": ".presence_channel",
    "FileRef": ".files",
    "Progress": ".files",
    "SpaceFiles": ".files",
    "HistoryEntry": ".history",
    "RejectedEntry": ".core.rejections",
    "RejectionKind": ".core.rejections",
    "SpaceView": ".history",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ArgumentTypeError",
    "AttestationError",
    "AuthorSeqError",
    "AuthorSeqGapError",
    "AuthorSignatureError",
    "BadSnapshotError",
    "BlobMissingError",
    "BlobRefusedError",
    "BodyDigestError",
    "ChainError",
    "Change",
    "ChangeStream",
    "CheckpointEvidenceError",
    "CheckpointForkError",
    "CheckpointRollbackError",
    "CheckpointWithheldError",
    "Clock",
    "ConnectionChange",
    "ConnectionFailedError",
    "ConnectionState",
    "DataDirLockedError",
    "EncspacesError",
    "EntryTooLargeError",
    "EpochError",
    "EpochKeyMissingError",
    "EventStream",
    "FileArgumentError",
    "FileChangedError",
    "FileError",
    "FileIntegrityError",
    "FileRef",
    "FileSourceNotFoundError",
    "FileTooLargeError",
    "ForkError",
    "FrameTooLargeError",
    "HandshakeError",
    "HeadMovedError",
    "HistoryEntry",
    "HistoryError",
    "Identity",
    "IdentityError",
    "IndexOutOfRangeError",
    "InternalError",
    "InvalidArgumentError",
    "InviteInfo",
    "KeyChange",
    "KeyConfirmationError",
    "ListChange",
    "MalformedEntryError",
    "MalformedFrameError",
    "MalformedIdError",
    "MalformedNoteError",
    "ManualClock",
    "MapChange",
    "Member",
    "MemberChange",
    "MembershipChangeError",
    "MembershipError",
    "MembershipRevokedError",
    "MerkleArgumentError",
    "MerkleError",
    "MerkleProofError",
    "MissingBodiesError",
    "MissingKeyError",
    "MissingNodeError",
    "NestedChange",
    "NotPermittedError",
    "NoteError",
    "NoteSignatureError",
    "ObjectKind",
    "ObjectKindError",
    "OperationTimeoutError",
    "OrderBy",
    "ParentError",
    "PermissionDeniedError",
    "Policy",
    "PresenceChange",
    "PresenceChannel",
    "Progress",
    "ProtocolError",
    "PublicIdentity",
    "QueryError",
    "ReadOnlyError",
    "RejectedEntry",
    "RejectionKind",
    "RelayConfigError",
    "RelayError",
    "RelaySignatureError",
    "RelayTLSError",
    "ReorderError",
    "ReplayError",
    "ResubmitLimitError",
    "Reverification",
    "Role",
    "RollbackError",
    "Row",
    "RowNotFoundError",
    "RuleError",
    "SharedList",
    "SharedMap",
    "SharedTable",
    "SharedText",
    "Space",
    "SpaceClosedError",
    "SpaceExistsError",
    "SpaceFiles",
    "SpaceIdError",
    "SpaceMismatchError",
    "SpaceOptions",
    "SpaceView",
    "StoreError",
    "StoreUnavailableError",
    "StoredLog",
    "TableChange",
    "TextChange",
    "TextRange",
    "UnknownFileError",
    "UnsupportedTypeError",
    "UnsupportedValueError",
    "VerificationError",
    "Where",
    "WithheldEntriesError",
    "Witness",
    "WitnessBadRequestError",
    "WitnessConsistencyError",
    "WitnessError",
    "WitnessPolicy",
    "WitnessSignatureError",
    "WitnessSizeMismatchError",
    "WitnessUnknownOriginError",
    "WitnessUnreachableError",
    "__version__",
    "connect",
    "create_space",
    "errors",
    "join",
    "load_stored_log",
    "open_local",
    "reverify_local",
    "safety_code",
]
