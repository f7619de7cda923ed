"""The relay's long-term Ed25519 key: the identity every signed head is checked against.

A space's genesis pins this public key, so losing or replacing the file orphans every space
the relay hosts: it is created once, 0600 (``encspaces.core.key_file``).
"""

from __future__ import annotations

from pathlib import Path

import nacl.signing

from encspaces.core.identity import member_id
from encspaces.core.key_file import load_or_create_signing_key as _load_or_create

KEY_FILE = "relay.key"


def load_or_create_signing_key(data_dir: Path) -> nacl.signing.SigningKey:
    """The key stored in ``data_dir/relay.key``, created on first use."""
    return _load_or_create(data_dir / KEY_FILE, "relay key")


def public_key_text(key: nacl.signing.SigningKey) -> str:
    """The public key as clients paste it: base64url, like a member id."""
    return member_id(bytes(key.verify_key))
