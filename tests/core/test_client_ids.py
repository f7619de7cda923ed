"""Client ids derived from their writers' keys, and the first-writer rule behind the derivation."""

from __future__ import annotations

import pycrdt
import pytest

from encspaces.core.client_ids import (
    NONCE_SIZE,
    ClientOwners,
    data_plaintext,
    decode_owners,
    derive_client_id,
    encode_owners,
    split_plaintext,
)
from encspaces.core.encoding import pack, unpack
from encspaces.errors import ProtocolError


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


def test_a_first_writer_map_round_trips_grouped_by_writer() -> None:
    a, b = b"\x01" * 32, b"\x02" * 32
    first = {5: b, 3: a, 9: a, 2**53 - 1: b}
    encoded = encode_owners(first)
    assert encoded == [[a, [3, 9]], [b, [5, 2**53 - 1]]]
    assert decode_owners(unpack(pack(encoded)), "owners") == first
    assert decode_owners([], "owners") == {}


@pytest.mark.parametrize("bad", [
    [[b"\x01" * 32, [3]], [b"\x02" * 32, [3]]],  # one id under two writers
    [[b"\x01" * 32, [3, 3]]],  # twice
    [[b"\x01" * 31, [3]]],  # not a key
    [[b"\x01" * 32, [2**53]]],  # past what Yrs takes
    [[b"\x01" * 32, 3]],
    "owners",
])
def test_a_malformed_first_writer_map_is_refused(bad: object) -> None:
    with pytest.raises(ProtocolError):
        decode_owners(bad, "owners")
