"""The relay's long-term Ed25519 key: the identity every signed head is checked against.

A space's genesis pins this public key, so losing or replacing the file orphans every space
the relay hosts. The key is therefore created exactly once (an existing file is never
overwritten, even by two relays starting at the same moment) and written 0600 and fsynced
before it is used to sign anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing

from encspaces.core.identity import member_id
from encspaces.core.private_file import fsync_dir, write_private_temp
from encspaces.errors import IdentityError

KEY_FILE = "relay.key"
SEED_SIZE = 32


def load_or_create_signing_key(data_dir: Path) -> nacl.signing.SigningKey:
    """The key stored in ``data_dir/relay.key``, created on first use."""
    path = data_dir / KEY_FILE
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    seed = os.urandom(SEED_SIZE)
    tmp = write_private_temp(path, seed)
    try:
        # link, not replace: if another process created the key meanwhile, keep theirs.
        os.link(tmp, path)
    except FileExistsError:
        return _load(path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(data_dir)
    return nacl.signing.SigningKey(seed)


def _load(path: Path) -> nacl.signing.SigningKey:
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise IdentityError(f"cannot read the relay key {path}: {exc.strerror}") from exc
    if len(seed) != SEED_SIZE:
        raise IdentityError(f"relay key {path} holds {len(seed)} bytes, expected a {SEED_SIZE}-byte seed")
    return nacl.signing.SigningKey(seed)


def public_key_text(key: nacl.signing.SigningKey) -> str:
    """The public key as clients paste it: base64url, like a member id."""
    return member_id(bytes(key.verify_key))
