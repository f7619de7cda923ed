"""Files that hold secrets: created 0600 from the first byte, written in full, then moved in place.

Setting the mode after writing would leave a window in which another user could read the
key; writing in place would leave a half-written key after a crash.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private_temp(target: Path, data: bytes) -> Path:
    """Write ``data`` to a fresh 0600 file beside ``target`` and fsync it; returns its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
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
