"""A daemon's long-term Ed25519 key in a file of its data dir: the relay's, a witness's.

Whoever checks that daemon's signatures pins the public key (a space's genesis pins the
relay's, a space's witness policy a witness's), so losing or replacing the file orphans
everything signed with it. The key is therefore created exactly once (an existing file is
never overwritten, even by two processes starting at the same moment), written 0600 and
fsynced before anything is signed with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing

from ..errors import IdentityError
from .private_file import fsync_dir, make_private_dir, write_private_temp

SEED_SIZE = 32


def load_or_create_signing_key(path: Path, what: str) -> nacl.signing.SigningKey:
    """The key whose 32-byte seed is in ``path``, created on first use; ``what`` names it in errors."""
    try:
        return _load(path, what)
    except FileNotFoundError:
        pass
    make_private_dir(path.parent)
    tmp = write_private_temp(path, os.urandom(SEED_SIZE))
    try:
        os.link(tmp, path)  # link, not replace: if another process created the key meanwhile, keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return _load(path, what)


def _load(path: Path, what: str) -> nacl.signing.SigningKey:
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise IdentityError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    if len(seed) != SEED_SIZE:
        raise IdentityError(f"{what} {path} holds {len(seed)} bytes, expected a {SEED_SIZE}-byte seed")
    return nacl.signing.SigningKey(seed)
