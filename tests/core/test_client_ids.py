"""Client ids derived from their writers' keys, and the first-writer rule behind the derivation."""

from __future__ import annotations

import pycrdt

from encspaces.core.client_ids import NONCE_SIZE, ClientOwners, data_plaintext, derive_client_id, split_plaintext


def test_a_client_id_belongs_to_the_first_author_under_it() -> None:
    """Two authors sharing a client id (a brute-force search found one): the second is refused."""
    owners = ClientOwners()
    first, second = b"\x01" * 32, b"\x02" * 32
    assert owners.claim(42, first) is None
    assert owners.claim(42, first) is None
    reason = owners.claim(42, second)
    assert reason is not None and "42 was first written under by another device" in reason
    assert owners.claim(43, second) is None


def test_derivation_depends_on_key_and_nonce_and_fits_yrs() -> None:
    key, nonce = b"\x07" * 32, b"\x01" * NONCE_SIZE
    ids = {derive_client_id(key, nonce), derive_client_id(b"\x08" * 32, nonce),
           derive_client_id(key, b"\x02" * NONCE_SIZE)}
    assert len(ids) == 3
    assert derive_client_id(key, nonce) == derive_client_id(key, nonce)
    for client in ids:
        assert 0 <= client < 1 << 53
        pycrdt.Doc(client_id=client)  # Yrs takes it


def test_a_plaintext_is_the_nonce_then_the_update() -> None:
    nonce = b"\x05" * NONCE_SIZE
    assert split_plaintext(data_plaintext(nonce, b"\x00\x00")) == (nonce, b"\x00\x00")
    assert split_plaintext(nonce) is None
    assert split_plaintext(b"") is None
