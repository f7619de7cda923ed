"""``encspaces-relay backup``: a consistent copy of a data dir, also while the relay runs.

The copy holds the database (SQLite's online backup API: one read transaction, so the copy
is the log exactly as some commit left it, never half a group commit), the file chunks
(``blobs/``) and the relay's private key (``relay.key``, which signs every head clients
verify: the backup is as secret as the data dir). The database is copied first and the
chunks after: a client stores a file's chunks before the entry that names them, so every
chunk an entry in the copy names is in the copy too (chunks of later entries may be as well).

Restoring is copying the backup into an empty data dir and starting a relay on it. Clients
that saw entries after the backup's head then detect a rollback (RollbackError) against
the relay: see docs/operations.md, "Backups and restore".
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from encspaces.core.private_file import ensure_private_file, make_private_dir

from .blobs import BLOBS_DIR
from .keys import KEY_FILE
from .store import DB_FILE

_TMP_PREFIX = ".tmp-"  # a blob being written (encspaces_relay/blobs.py): never complete, never copied


@dataclass(frozen=True)
class BackupResult:
    spaces: int
    entries: int
    blobs: int
    blob_bytes: int


def backup(data_dir: Path, out: Path) -> BackupResult:
    """Copy ``data_dir`` into the new directory ``out``; ValueError if ``out`` exists and is not empty."""
    source = data_dir / DB_FILE
    if not source.is_file():
        raise ValueError(f"no relay database in {data_dir}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists: back up into a new or empty directory")
    make_private_dir(out)
    target = out / DB_FILE
    ensure_private_file(target)
    with _connect(source) as src, _connect(target) as dst:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst)
        spaces = int(dst.execute("SELECT count(*) FROM spaces").fetchone()[0])
        entries = int(dst.execute("SELECT count(*) FROM entries").fetchone()[0])
        checked = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if checked != "ok":
            raise ValueError(f"the copy of {source} fails SQLite's integrity check: {checked}")
    blobs, blob_bytes = _copy_blobs(data_dir / BLOBS_DIR, out / BLOBS_DIR)
    key = data_dir / KEY_FILE
    if key.exists():
        ensure_private_file(out / KEY_FILE)
        shutil.copyfile(key, out / KEY_FILE)
    _fsync_tree(out)
    return BackupResult(spaces, entries, blobs, blob_bytes)


class _connect:
    """``sqlite3.connect`` that closes at the end of the ``with`` (sqlite3's own only commits)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, timeout=30)

    def __enter__(self) -> sqlite3.Connection:
        return self._db

    def __exit__(self, *exc: object) -> None:
        self._db.close()


def _copy_blobs(root: Path, out: Path) -> tuple[int, int]:
    count = total = 0
    if not root.is_dir():
        return 0, 0
    make_private_dir(out)
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        make_private_dir(out / folder.name)
        for blob in sorted(folder.iterdir()):
            if blob.name.startswith(_TMP_PREFIX) or not blob.is_file():
                continue
            try:
                shutil.copyfile(blob, out / folder.name / blob.name)
            except FileNotFoundError:
                continue  # never happens today (blobs are not deleted); harmless if it does
            count += 1
            total += blob.stat().st_size
    return count, total


def _fsync_tree(root: Path) -> None:
    """The backup is on disk when the command says it is done."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
