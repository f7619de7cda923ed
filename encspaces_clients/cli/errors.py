"""Exit codes, and every failure as one line that says what went wrong and what to do."""

from __future__ import annotations

from encspaces.core.codes import RefusalCode
from encspaces.errors import (
    ConnectionFailedError,
    EncspacesError,
    ForkError,
    HandshakeError,
    RelayBusyError,
    RelayError,
    RelayTLSError,
    RollbackError,
    StoreError,
    StoreInUseError,
    VerificationError,
    WithholdingError,
)

# --- exit codes: what scripts can rely on ------------------------------------------------------

EXIT_OK = 0
EXIT_ERROR = 1  # anything else: bad input, unknown space, refused by the relay, ...
EXIT_USAGE = 2  # the command line itself is wrong (argparse)
EXIT_VERIFICATION = 3  # the relay (or the local store) failed verification: do not trust it
EXIT_UNREACHABLE = 4  # the relay could not be reached (the local copy may still be fine)
EXIT_UNAVAILABLE = 5  # the feature is not available in this version (or installation) of encspaces
EXIT_INTERRUPTED = 130  # Ctrl+C

EXIT_CODES_HELP = """exit codes:
  0  success
  1  error (bad input, unknown space, refused by the relay, ...)
  2  usage error
  3  verification failed: the relay (or this device's store) cannot be trusted
  4  the relay could not be reached
  5  not available in this version of encspaces (or not installed: the editor needs encspaces[editor])
"""


class CliError(Exception):
    """A failure the command reports as one line, with the exit code it maps to."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def explain(exc: BaseException) -> tuple[str, int]:
    """One line for an error (what went wrong and what to do) and the exit code it maps to."""
    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, (ForkError, RollbackError, WithholdingError)):
        return (f"verification failed: {type(exc).__name__}: {exc}. The relay's own signed statements show "
                "it (two histories, a shorter log, or a head it never delivered); nothing of it was applied. "
                "This device recorded the proof: `encspaces evidence SPACE --out FILE` exports it for the "
                "relay's operator, or anyone, to check", EXIT_VERIFICATION)
    if isinstance(exc, VerificationError):
        return (f"verification failed: {type(exc).__name__}: {exc}. The relay served something this device "
                "refuses to trust; nothing of it was applied. Compare `encspaces safety-code` with another "
                "member and tell the relay's operator", EXIT_VERIFICATION)
    if isinstance(exc, RelayTLSError | RelayBusyError):
        return str(exc), EXIT_UNREACHABLE  # it answered: "is it running?" would mislead
    if isinstance(exc, ConnectionFailedError):
        return f"{exc}: is the relay running? (`make run` or `encspaces-relay`)", EXIT_UNREACHABLE
    if isinstance(exc, RelayError):
        if exc.code == RefusalCode.NOT_A_MEMBER:
            return f"{exc}: this device is not a member (ask an admin to add or invite you)", EXIT_ERROR
        return str(exc), EXIT_ERROR
    if isinstance(exc, HandshakeError):
        return f"the relay refused the connection: {exc}", EXIT_ERROR
    if isinstance(exc, StoreInUseError):
        return (f"{exc}. Another encspaces command or the editor has this space open; nothing is wrong "
                "with the local copy", EXIT_ERROR)
    if isinstance(exc, StoreError):
        return f"{exc}: the local copy is damaged; move the space's data folder away to fetch it again", EXIT_ERROR
    if isinstance(exc, EncspacesError):
        return str(exc), EXIT_ERROR
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), EXIT_ERROR
    return f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", EXIT_ERROR
