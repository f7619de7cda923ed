"""Files that hold secrets: created 0600 from the first byte, written in full, then moved in place.

Setting the mode after writing would leave a window in which another user could read the
key; writing in place would leave a half-written key after a crash.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` and any missing parent 0700 (readable by this user only).

    Folders that already exist keep their mode: the user may have chosen it (a data dir in a
    shared place), and the files inside are private anyway.
    """
    missing = []
    for path in (folder, *folder.parents):
        if path.is_dir():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if not path.is_dir():
                raise


def ensure_private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if missing; an existing file is made 0600.

    For files another library creates, such as SQLite databases: SQLite creates a new
    database 0644, and its -wal and -shm files with the database's mode, so a database
    file that exists 0600 before SQLite opens it keeps all three private.
    """
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):  # left 0644 by an earlier version
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(side, 0o600)


def write_private_temp(target: Path, data: bytes) -> Path:
    """Write ``data`` to a fresh 0600 file beside ``target`` and fsync it; returns its path."""
    make_private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_private(target: Path, data: bytes) -> None:
    """Atomically replace ``target`` with a 0600 file holding ``data``."""
    os.replace(write_private_temp(target, data), target)
    fsync_dir(target.parent)
