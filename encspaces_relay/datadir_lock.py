"""One relay per data dir: an exclusive lock on ``DATA/relay.lock``, held while the relay runs.

Two relays writing one data dir would each sequence entries the other does not know about,
and their clients would see the log forked or rolled back. ``flock`` is released by the
kernel when the process ends, however it ends (even SIGKILL), so a stale lock file never
blocks a restart; the file itself stays, holding the pid of the last relay that took it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from encspaces.errors import DataDirLockedError

LOCK_FILE = "relay.lock"

__all__ = ["LOCK_FILE", "DataDirLock", "DataDirLockedError"]



class DataDirLock:
    """``lock = DataDirLock.acquire(data_dir)`` ... ``lock.release()``; never blocks."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        path = data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise DataDirLockedError(
                f"the data dir {data_dir} is in use by another relay{who}: two relays on one data dir would "
                "corrupt its spaces; stop the other one, or give this one another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of the lock releases it


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or "0") or None
    return None
