"""One relay per data dir: an exclusive lock on ``DATA/relay.lock``, held while the relay runs
(``encspaces.core.file_lock`` says why and how)."""

from __future__ import annotations

from pathlib import Path

from encspaces.core.file_lock import FileLock
from encspaces.errors import DataDirLockedError

LOCK_FILE = "relay.lock"

__all__ = ["LOCK_FILE", "DataDirLockedError", "lock_data_dir"]


def lock_data_dir(data_dir: Path) -> FileLock:
    """The relay's lock on ``data_dir``; ``DataDirLockedError`` naming the holder if another relay has it."""
    def busy(who: str) -> DataDirLockedError:
        return DataDirLockedError(
            f"the data dir {data_dir} is in use by another relay{who}: two relays on one data dir would "
            "corrupt its spaces; stop the other one, or give this one another --data-dir")
    return FileLock.acquire(data_dir / LOCK_FILE, busy)
