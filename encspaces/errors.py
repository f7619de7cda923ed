"""One exception hierarchy for the whole project.

Relay misbehaviour must never be confused with a local bug or a network hiccup, so every
rule of the log that can be broken has its own class, and every message names what was
wrong: the seq, the author, what was expected and what was found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core.evidence import Evidence


class EncspacesError(Exception):
    """Root of every error raised by encspaces."""


# --- input that is not even well-formed ------------------------------------------------------


class ProtocolError(EncspacesError):
    """Bytes that do not parse as the message or entry they claim to be."""


class FrameTooLargeError(ProtocolError):
    """A message over the configured size limit."""


# --- identities and local files ----------------------------------------------------------------


class IdentityError(EncspacesError):
    """An identity file or public identity string that cannot be used."""


class StoreError(EncspacesError):
    """The local store is missing, corrupt, or belongs to another space or identity."""


class StoreInUseError(StoreError):
    """This device's copy of the space is already open (another ``Space``, here or in another process)."""


# --- talking to a relay ------------------------------------------------------------------------


class ConnectionFailedError(EncspacesError):
    """The relay could not be reached or the connection dropped for good."""


class HandshakeError(EncspacesError):
    """The relay refused us or answered the handshake with something unexpected."""


class RelayError(EncspacesError):
    """The relay answered with an error frame; ``code`` is its machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"relay refused: {code}: {message}")
        self.code = code
        self.relay_message = message


class SpaceClosedError(EncspacesError):
    """The space was closed by the application."""


class OperationTimeoutError(EncspacesError, TimeoutError):
    """A call's ``timeout=`` ran out before it completed; what it did so far is said in the message."""


# --- what an application passes in -------------------------------------------------------------
# Each also derives from the builtin that code written against plain Python expects, so
# ``except KeyError`` and ``except ValueError`` keep working.


class InvalidArgumentError(EncspacesError, ValueError):
    """An argument the call cannot take: an unknown role, a negative count, a malformed id."""


class UnsupportedValueError(InvalidArgumentError):
    """A value a shared object cannot carry so that every member reads it back the same."""


class RowNotFoundError(EncspacesError, KeyError):
    """No row with that id in the table."""


class ObjectKindError(EncspacesError, TypeError):
    """A shared object's name is already used by an object of another kind.

    Also raised when a nested item is opened as a map but holds a list (or anything else).
    """


class QueryError(EncspacesError, ValueError):
    """A table query whose filter, ordering or limit is malformed; the message says where."""


# --- arguments of the public API (issue 16): the rest of what a call can refuse ---------------
# Like the classes above, each is also the builtin plain Python raises for the same mistake.


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of a type the call cannot take: an index that is not an int, a name that is not a str."""


class UnsupportedTypeError(UnsupportedValueError, ArgumentTypeError):
    """A value of a type no shared object holds (a set, an object, bytes, a non-str dict key): not JSON-like."""


class IndexOutOfRangeError(InvalidArgumentError, IndexError):
    """A list or text position outside the object as it is now (negative list indices count from the end)."""


class MissingKeyError(EncspacesError, KeyError):
    """No such key in a shared map."""


class MalformedIdError(IdentityError, InvalidArgumentError):
    """A member id, public identity, space id or invite link that does not parse (mistyped or cut short)."""


# --- the log's rules: entries an honest relay would never sequence -----------------------------


class RuleError(EncspacesError):
    """An entry breaks a rule of the log.

    The relay raises these when it refuses a submission; a client receiving such an entry
    from the relay raises the same class, because it is also a ``VerificationError``
    through the subclasses below.
    """

    author_seq: int | None = None  # set by the relay to name the refused entry of a submission


class VerificationError(EncspacesError):
    """A frame from the relay failed verification: the relay misbehaved.

    Nothing from the offending frame has been applied, and the space stays failed.
    """


class RelaySignatureError(VerificationError):
    """A signed head whose relay signature does not verify, or that names another space."""


class ChainError(VerificationError):
    """Entries that do not continue our verified chain up to the head that claims to cover them."""


class RollbackError(VerificationError):
    """The relay serves a log shorter than one it already signed to us.

    ``evidence`` holds the relay's two signed statements in full, in wire form (msgpack
    ``[signed_bytes, signature]``): the head this device verified, and the shorter one.
    ``proof`` is the self-contained evidence file (``encspaces.core.evidence``), completed by
    the SDK from the local store when the space fails (None when there is nothing to prove with).
    """

    def __init__(self, message: str, *, evidence: tuple[bytes, ...] = (), proof: Evidence | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence
        self.proof = proof


class ForkError(VerificationError):
    """The relay signed two different histories: a hash at a seq we verified differs.

    ``evidence`` holds the relay's two signed statements in full (wire form): the head that
    contradicts our chain, and the newest head this device verified; ``proof`` as for
    ``RollbackError`` (its chain link from the seq of the fork to that verified head is added
    from the local store).
    """

    def __init__(self, message: str, *, evidence: tuple[bytes, ...] = (), proof: Evidence | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence
        self.proof = proof


class MalformedFrameError(VerificationError, ProtocolError):
    """The relay sent a frame that does not parse: it is not speaking the protocol."""


class SpaceIdError(VerificationError):
    """The genesis entry does not hash to the space id, or pins another relay key."""


class MalformedEntryError(VerificationError, RuleError):
    """An entry that does not decode, or whose fields have the wrong types or sizes."""


class AuthorSignatureError(VerificationError, RuleError):
    """The author's signature over the entry header does not verify."""


class BodyDigestError(VerificationError, RuleError):
    """The entry body (ciphertext) is not the one the author signed."""


class MembershipError(VerificationError, RuleError):
    """The author is not a member of the space at that position of the log."""


class PermissionDeniedError(VerificationError, RuleError):
    """The author is a member but their role does not allow this kind of entry."""


class MembershipChangeError(VerificationError, RuleError):
    """A membership entry that is inconsistent with the membership state (adding a member twice)."""


class AuthorSeqError(VerificationError, RuleError):
    """An author's entries are not numbered 1, 2, 3, ... in log order."""


class ReplayError(AuthorSeqError):
    """An author_seq at or below one already in the log: the entry is replayed."""


class ReorderError(AuthorSeqError):
    """Entries of one author delivered out of their author_seq order."""


class AuthorSeqGapError(AuthorSeqError):
    """An author_seq skips ahead: an entry of that author was dropped."""


class ParentError(VerificationError, RuleError):
    """The parent (seq, hash) of an entry is not an earlier head of this log."""


class EpochError(VerificationError, RuleError):
    """An entry under an epoch other than the log's current one."""


class SpaceMismatchError(VerificationError, RuleError):
    """An entry that names another space."""


class MissingBodiesError(VerificationError):
    """The relay sent entries without their bodies (or as digests alone) where nothing it sent covers them."""


class AnchorStateError(VerificationError):
    """The log state the relay sent a new device for an anchor is not the log's.

    Either it differs from what the control entries (each checked from genesis) decide, or its
    digest is not the one its own anchors or the members who attested the snapshot state.
    """


class WithheldEntriesError(VerificationError):
    """Entries we know exist (from a peer) that the relay does not deliver."""


class WithholdingError(WithheldEntriesError):
    """The relay signed a head past what it delivered to us (in an ack or a welcome) and did not
    deliver up to it within the deadline (``SpaceOptions.withholding_deadline`` seconds connected
    without progress): it withholds the log, or keeps us "catching up" for ever.

    ``seq`` is the signed head's seq, ``verified`` ours; ``evidence`` the relay's signed head
    past ours and the newest head we verified, in wire form; ``proof`` as for ``RollbackError``.
    """

    def __init__(self, message: str, *, seq: int, verified: int, evidence: tuple[bytes, ...] = (),
                 proof: Evidence | None = None) -> None:
        super().__init__(message)
        self.seq = seq
        self.verified = verified
        self.evidence = evidence
        self.proof = proof


class SubmissionWithheldError(WithheldEntriesError):
    """The relay neither sequenced nor refused our entries: the oldest one this device handed to
    its live connection was still not in the verified log after ``SpaceOptions.withholding_deadline``
    seconds live, and again after the device reconnected and sent it anew. The relay swallows
    our edits (or acknowledges them under a head that is not past our log).

    Not provable to a third party (the relay signed nothing about the entries), so no
    ``evidence``. ``author_seq`` names our oldest entry it holds back, ``verified`` our verified
    seq. The entries stay in the stored outbox and are sent again when the space is next opened.
    """

    def __init__(self, message: str, *, author_seq: int, verified: int) -> None:
        super().__init__(message)
        self.author_seq = author_seq
        self.verified = verified


class EvidenceError(EncspacesError):
    """An evidence file (``encspaces.core.evidence``) that does not prove what it claims: malformed,
    of an unknown version or kind, a signature that does not verify, or statements that do not
    contradict each other. The message says which statement and why."""


# --- encrypted files (encspaces/files.py) -----------------------------------------------------


class FileError(EncspacesError):
    """Root of the errors of ``space.files``."""


class FileArgumentError(FileError, InvalidArgumentError):
    """A file name or content type that ``space.files`` cannot take (empty, too long, with NUL)."""


class UnknownFileError(FileError, LookupError):
    """No file of that name is listed in the space."""


class FileTooLargeError(FileError):
    """A file over what one manifest can describe (``files.MAX_CHUNKS`` chunks)."""


class FileChangedError(FileError):
    """A file on disk changed while it was being uploaded; nothing was listed."""


class FileIntegrityError(FileError):
    """A chunk or manifest that does not check out: the file is not written.

    A chunk whose bytes do not hash to the manifest's hash (swapped, truncated, altered) was
    served wrong by the relay; a chunk that hashes right but does not decrypt under the
    manifest's key and position, or a manifest that does not parse, is its author's fault.
    """


class BlobMissingError(FileError):
    """The relay answers that it holds no chunk under a hash the manifest names."""


class BlobRefusedError(FileError, RelayError):
    """The relay refused a chunk request; ``code`` is an ``encspaces.core.codes.BlobCode`` (``quota``...)."""


# --- files: a source path that does not exist (CLI and usability) ------------------------------


class FileSourceNotFoundError(FileError, FileNotFoundError):
    """``files.put`` was given a path where no file is; ``filename`` is that path."""


class BadSnapshotError(EncspacesError):
    """A false statement about the document at a snapshot's base: a member's fault, the liar named.

    ``author`` is the member blamed: the snapshot's author, or (``attester``) a member whose
    attestation states a false content. ``evidence`` holds the signed entries (exact bytes)
    that show it: the snapshot and the attestations that contradict each other.
    """

    def __init__(self, seq: int, author: bytes, reason: str, *, attester: bool = False,
                 evidence: tuple[bytes, ...] = ()) -> None:
        from .core.identity import member_id

        what = f"the attestation by {member_id(author)} of the snapshot at seq {seq} is false" if attester \
            else f"the snapshot at seq {seq} by {member_id(author)} is bad"
        super().__init__(f"{what}: {reason}")
        self.seq = seq
        self.author = member_id(author)
        self.attester = attester
        self.evidence = evidence


# --- snapshot attestations (encspaces/core/attestation.py) -----------------------------------------


class AttestationError(VerificationError, RuleError):
    """An attestation entry that breaks a rule: no such snapshot, its own author, or a second one."""


class AttestationConflictError(AttestationError):
    """A second attestation of one snapshot by one person: two of its devices each queued one
    before seeing the other's. An honest race: the relay answers it as a ``conflict`` and the
    device drops its attestation (in a relay's frame it is still a verification failure)."""


# --- several devices of one person (encspaces/core/devices.py) -------------------------------------


class DeviceCertificateError(VerificationError, RuleError):
    """A device certificate that does not decode, is not signed by the person it names, or does not
    match the entry that carries it (another device key or box key): forged or mangled."""


class DeviceNotPermittedError(VerificationError, RuleError):
    """A device added or removed by someone else's device: only a device of the same person (or, for
    a removal, an admin) may, and a sibling's removal needs the person's revocation signature."""


class DeviceRemovedError(VerificationError, RuleError):
    """A device that was removed from the space: its certificate replayed, or an entry it authored after."""


class RemovedPersonError(VerificationError, RuleError):
    """A device certificate of a person who was removed from the space: refused until an admin adds them again."""


class DeviceKeyInUseError(EncspacesError):
    """This device's key is used on another machine too (a copied identity file): the log holds an entry
    by this device that this device did not write. Give each machine its own device key
    (``encspaces device pair`` there, ``encspaces device add`` here) and stop using the copy."""


class HistoryError(EncspacesError):
    """A version that cannot be shown: beyond the verified head, or its keys or bodies are gone."""


class ReadOnlyError(EncspacesError):
    """An edit on a view of the past."""


class EntryTooLargeError(EncspacesError, ValueError):
    """An entry over the size a relay accepts: one edit, snapshot or membership change too big."""


class ForeignClientIdError(EncspacesError):
    """A local transaction added items under a Yjs client id other than this session's (an
    integration imported another document's update through ``Space.doc``). Every member would
    reject an entry holding them, so nothing of the batch is sent and the space stops."""


class NotPermittedError(EncspacesError):
    """Refused before anything was sent: the role does not allow it, or it would break a rule
    (removing the last admin, adding a member twice)."""


class MembershipRevokedError(EncspacesError):
    """This device's member, or this device, was removed from the space: nothing new can be read or written.

    ``space`` is the space's id, ``device`` this device's member id and ``seq`` the seq of the
    entry that removed it. A space fails with it as soon as it verifies that entry; ``connect``
    raises it (and opens nothing) when the device's own copy already holds the removal, and
    ``encspaces.open_local`` still reads what the device had.
    """

    def __init__(self, message: str, *, space: str | None = None, device: str | None = None,
                 seq: int | None = None) -> None:
        super().__init__(message)
        self.space = space
        self.device = device
        self.seq = seq


# --- a space's lifecycle: background work and keys (encspaces/space.py, encspaces/supervision.py) ---


class InternalError(EncspacesError):
    """An unexpected exception in a space's background work; the space failed with it.

    The message names the task and the original exception, which is chained as ``__cause__``.
    """


class EpochKeyMissingError(EncspacesError):
    """This device is a member but holds no key for the space's current epoch.

    It can neither read nor write new entries, so the space fails instead of accepting edits
    it could never send.
    """


# --- crash safety, keys and the removal window (write pipeline, key confirmation) ----------------


class ResubmitLimitError(RelayError):
    """The relay refused our entries without closing (``code``: stale_epoch, gap) too many times in a
    row while nothing it delivered changed the epoch or our entries: it is stalling the space."""


class KeyConfirmationError(EncspacesError):
    """An epoch key sealed to this device that does not match the epoch's public commitment (or does
    not open): the admin who sealed it gave members different keys. A member's fault, not the relay's.

    This device cannot read that epoch; other members go on. ``evidence`` is the signed entry.
    """

    def __init__(self, seq: int, author: bytes, epoch: int, problem: str, evidence: bytes) -> None:
        from .core.identity import member_id

        super().__init__(f"the {member_id(author)} entry at seq {seq} gave this device a bad key for epoch "
                         f"{epoch}: {problem}")
        self.seq = seq
        self.author = member_id(author)
        self.epoch = epoch
        self.evidence = evidence


# --- operating a relay and reaching it (encspaces_relay/settings.py, datadir_lock.py; encspaces/relay_url.py) ---


class RelayConfigError(InvalidArgumentError):
    """A relay config file or environment variable that cannot be used; the message names it."""


class DataDirLockedError(EncspacesError):
    """Another relay already runs on this data dir (two would corrupt each other's spaces)."""


class RelayTLSError(ConnectionFailedError):
    """TLS with the relay failed: its certificate is not trusted, or it does not speak TLS at all."""


class RelayBusyError(ConnectionFailedError):
    """The relay answered HTTP 503 before the websocket opened: too many connections opening from
    this address or in all (its ``max_opening_*`` limits), or it is shutting down. It is running;
    try again later (a space's background reconnects do, with backoff)."""


# --- the witnessed log: Merkle proofs, signed notes, witnesses (encspaces/core/merkle.py, note.py; witness) ---


class MerkleError(VerificationError):
    """A Merkle tree hash, proof or size that cannot be what it claims."""


class MerkleProofError(MerkleError):
    """An inclusion or consistency proof that does not verify (RFC 9162 §2.1.3.2, §2.1.4.2)."""


class MerkleArgumentError(MerkleError, InvalidArgumentError):
    """A leaf index or tree size out of range for the tree asked (index >= size, size > tree)."""


class MissingNodeError(MerkleError, KeyError):
    """The node store lacks a complete-subtree hash the tree needs: the store is damaged."""


class NoteError(VerificationError):
    """A signed note (C2SP signed-note) that cannot be used."""


class MalformedNoteError(NoteError, ProtocolError):
    """Bytes that are not a well-formed signed note, checkpoint or cosignature."""


class NoteSignatureError(NoteError):
    """No known key signed the note, or a known key's signature on it fails to verify."""


class WitnessError(EncspacesError):
    """A witness refused a checkpoint; ``status`` is the HTTP status of C2SP tlog-witness."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)


class WitnessBadRequestError(WitnessError, ProtocolError):
    """A malformed add-checkpoint request, or an old size above the checkpoint size (400)."""

    status = 400


class WitnessSignatureError(WitnessError, NoteSignatureError):
    """No trusted log signature on the checkpoint, or a trusted key's signature fails (403)."""

    status = 403


class WitnessUnknownOriginError(WitnessError, LookupError):
    """The witness serves no log with this origin (404)."""

    status = 404


class WitnessSizeMismatchError(WitnessError):
    """The old size is not the size this witness last cosigned; ``latest_size`` is (409)."""

    status = 409

    def __init__(self, message: str, latest_size: int) -> None:
        super().__init__(message)
        self.latest_size = latest_size


class WitnessConsistencyError(WitnessError, MerkleError):
    """The checkpoint is not consistent with the one last cosigned: bad proof, empty-tree root,
    or another root at the same size (422). A validly signed one is kept as evidence."""

    status = 422



# --- client witness tracking (encspaces/core/witnessing.py) ------------------------------------


class CheckpointEvidenceError(VerificationError):
    """The relay's signed statements contradict each other or the log it delivered.

    ``evidence`` holds the signed statements in full, exact bytes as received: a checkpoint note
    (with its relay signature and any cosignatures) and the relay's other statement (a second
    checkpoint note, or its signed head in wire form ``msgpack [signed_bytes, signature]``), so a
    third party can check the claim without trusting this device. ``size`` is the tree size (=
    seq) the contradiction is at. ``proof`` is the evidence file (``encspaces.core.evidence``:
    checkpoint statements, and for a fork the log's leaves, filled in from the local store when
    the space fails), as for ``RollbackError``.
    """

    def __init__(self, message: str, *, size: int, evidence: tuple[bytes, ...] = (),
                 proof: Evidence | None = None) -> None:
        super().__init__(message)
        self.size = size
        self.evidence = evidence
        self.proof = proof


class CheckpointForkError(CheckpointEvidenceError, ForkError):
    """A relay-signed checkpoint whose root is not the root of the log we verified at its size
    (or two relay-signed checkpoints of one size with two roots): the relay forked the log."""


class CheckpointRollbackError(CheckpointEvidenceError, RollbackError):
    """The relay serves a log shorter than a checkpoint it signed (and witnesses may have cosigned):
    it went back to an older state, e.g. restored from a backup taken before a removal."""


class CheckpointWithheldError(CheckpointEvidenceError, WithholdingError):
    """The relay signed a checkpoint past what it delivered (or did not prove a checkpoint
    consistent with our log) and did not make up for it before the deadline.

    A ``WithholdingError`` too: ``seq`` is the checkpoint's size, ``verified`` ours.
    """

    def __init__(self, message: str, *, size: int, verified: int = 0, evidence: tuple[bytes, ...] = (),
                 proof: Evidence | None = None) -> None:
        WithholdingError.__init__(self, message, seq=size, verified=verified, evidence=evidence, proof=proof)
        self.size = size



class WitnessUnreachableError(ConnectionFailedError):
    """A witness did not answer the GET of its checkpoint (down, timeout, bad response): it delays
    ``witnessed_seq``, never editing. ``url`` names the witness."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"witness {url}: {reason}")
        self.url = url


# --- relay storage: several relays on one database (encspaces_relay/storage.py, encspaces_relay/pg_store.py) ----------


class HeadMovedError(StoreError):
    """A commit extended a space's head that is no longer the newest: another relay of the cluster
    committed to the space first. Nothing of the commit was stored; the relay reloads and retries."""

    def __init__(self, space: bytes, expected: int, found: int) -> None:
        from .core.identity import member_id

        super().__init__(f"space {member_id(space)[:12]}: this commit extends seq {expected}, "
                         f"but the store's head is at seq {found}: another relay committed first")
        self.space = space
        self.expected = expected
        self.found = found


class SpaceExistsError(StoreError):
    """A space was created that the store already holds (another relay created it first)."""


class StoreUnavailableError(StoreError):
    """The relay's database cannot be reached or failed mid-transaction: nothing was acknowledged."""
