"""One process (one opener) at a time for a data dir: an exclusive ``flock`` on a lock file.

Two writers of one store each keep state the other does not see: two relays on one data dir
would sequence entries independently (their clients would see the log forked or rolled back);
two ``Space`` objects on one device's copy of a space sign entries with the same author_seq
(the relay refuses the second writer, and both overwrite each other's outbox and checkpoint).
``flock`` locks an open file description, so a second opener is refused in the same process
as in another one. The kernel releases the lock when the process ends, however it ends (even
SIGKILL): a stale lock file never blocks a restart; the file stays, holding the pid of the
last opener. No asyncio and nothing of the SDK here: the relay and the witness use it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import EncspacesError

__all__ = ["FileLock"]


class FileLock:
    """``lock = FileLock.acquire(path, busy)`` ... ``lock.release()``; never blocks."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, busy: Callable[[str], EncspacesError]) -> FileLock:
        """Take the lock on ``path`` (created 0600), or raise ``busy(" (pid N)")`` naming the holder."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise busy(f" (pid {holder})" if holder else "") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the lock releases it


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or "0") or None
    return None
