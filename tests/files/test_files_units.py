"""The pieces of files without a relay: messages, manifests, the key scheme, the blob store, the CLI."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from encspaces.core import crypto
from encspaces.core.codes import BlobCode
from encspaces.core.encoding import pack
from encspaces.core.log_state import LogState
from encspaces.core.messages import (
    BlobAck,
    BlobData,
    BlobGet,
    BlobMissing,
    BlobPut,
    BlobRefused,
    decode_message,
)
from encspaces.errors import ProtocolError
from encspaces.files import (
    CHUNK_SIZE,
    MAX_CHUNKS,
    FileRef,
    chunk_count,
    convergence_secret,
    file_id_of,
    file_key_of,
    open_chunk,
    seal_chunk,
)
from encspaces_relay.__main__ import parse_args
from encspaces_relay.blobs import BlobStore
from encspaces_relay.config import RelayConfig


def test_blob_messages_round_trip() -> None:
    digest = crypto.blob_hash(b"data")
    for message in (BlobPut(1, digest, b"data"), BlobAck(2, digest), BlobGet(3, digest),
                    BlobData(4, digest, b"data"), BlobMissing(5, digest), BlobRefused(6, digest, "quota", "full")):
        assert decode_message(message.encode()) == message


@pytest.mark.parametrize("bad", [
    {"t": "blob_get", "id": 1, "hash": b"short"},
    {"t": "blob_get", "id": -1, "hash": bytes(32)},
    {"t": "blob_get", "id": 1 << 32, "hash": bytes(32)},
    {"t": "blob_put", "id": 1, "hash": bytes(32)},
    {"t": "blob_put", "id": 1, "hash": bytes(32), "data": "text"},
    {"t": "blob_refused", "id": 1, "hash": bytes(32), "code": 5, "message": ""},
])
def test_malformed_blob_messages(bad: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        decode_message(pack(bad))


def _ref(data: bytes, secret: bytes = bytes(32), chunk_size: int = 1000) -> tuple[FileRef, list[bytes]]:
    h = crypto.stream_hasher(crypto.CTX_FILE_CONTENT)
    h.update(data)
    key = file_key_of(secret, h.digest(), len(data), chunk_size)
    fid = file_id_of(key)
    count = chunk_count(len(data), chunk_size)
    blobs = [seal_chunk(key, fid, i, count, data[i * chunk_size:(i + 1) * chunk_size]) for i in range(count)]
    ref = FileRef(name="f", size=len(data), content_type="x/y", file_id=fid, key=key, chunk_size=chunk_size,
                  chunks=tuple(crypto.blob_hash(b) for b in blobs), time_ms=1)
    return ref, blobs


def test_convergent_keys() -> None:
    data = os.urandom(3500)
    a, blobs_a = _ref(data)
    b, blobs_b = _ref(data)
    assert a == b and blobs_a == blobs_b  # same content, same secret: same blobs
    assert _ref(data, secret=b"\x01" * 32)[0].key != a.key  # another space or epoch: another key
    assert _ref(data, chunk_size=500)[0].key != a.key  # another cut: another key (no nonce reuse)
    changed = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
    c, blobs_c = _ref(changed)
    assert c.key != a.key and blobs_c[0] != blobs_a[0]
    # Nonces are derived from each chunk's content too, so even under one key a different chunk
    # at the same index gets another nonce.
    key, fid = a.key, a.file_id
    assert seal_chunk(key, fid, 1, 4, b"a" * 10)[:24] != seal_chunk(key, fid, 1, 4, b"b" * 10)[:24]
    assert b"".join(open_chunk(a, i, blob) for i, blob in enumerate(blobs_a)) == data
    assert convergence_secret(b"s" * 32, 1, b"k" * 32) != convergence_secret(b"s" * 32, 2, b"k" * 32)


def test_manifest_round_trip_and_checks() -> None:
    ref, _ = _ref(os.urandom(2500))
    assert FileRef.decode(ref.encode()) == ref
    assert "key=" not in repr(ref) and repr(ref.key) not in repr(ref)
    bad_id = FileRef(**{**ref.__dict__, "file_id": bytes(32)})
    with pytest.raises(ProtocolError, match="file id"):
        FileRef.decode(bad_id.encode())
    short = FileRef(**{**ref.__dict__, "chunks": ref.chunks[:-1]})
    with pytest.raises(ProtocolError, match="chunk hashes"):
        FileRef.decode(short.encode())
    with pytest.raises(ProtocolError):
        FileRef.decode(b"\xc1")
    assert chunk_count(0, CHUNK_SIZE) == 1 and chunk_count(CHUNK_SIZE, CHUNK_SIZE) == 1
    assert chunk_count(CHUNK_SIZE + 1, CHUNK_SIZE) == 2
    assert MAX_CHUNKS * crypto.HASH_SIZE <= 256 << 10


async def test_blob_store_limits_dedup_and_leftovers(tmp_path: Path) -> None:
    space = bytes(32)
    folder = tmp_path / space.hex()
    folder.mkdir()
    (folder / ".tmp-leftover-1234").write_bytes(b"x" * 50)  # a crash mid-write
    store = BlobStore(tmp_path, max_blob_size=10_000, quota=15_000)
    blob = b"b" * 8000
    digest = crypto.blob_hash(blob)
    assert await store.put(space, BlobPut(1, digest, blob)) == BlobAck(1, digest)
    assert not (folder / ".tmp-leftover-1234").exists()
    assert await store.put(space, BlobPut(2, digest, blob)) == BlobAck(2, digest)  # stored once
    assert await store.usage(space) == 8000
    refused = await store.put(space, BlobPut(3, crypto.blob_hash(b"c" * 8000), b"c" * 8000))
    assert isinstance(refused, BlobRefused) and refused.code == "quota"
    refused = await store.put(space, BlobPut(4, crypto.blob_hash(b"c" * 10_001), b"c" * 10_001))
    assert isinstance(refused, BlobRefused) and refused.code == "too_large"
    refused = await store.put(space, BlobPut(5, digest, b"c" * 8000))
    assert isinstance(refused, BlobRefused) and refused.code == "bad_hash"
    assert await store.get(space, BlobGet(6, digest)) == BlobData(6, digest, blob)
    assert await store.get(bytes([1]) * 32, BlobGet(7, digest)) == BlobMissing(7, digest)
    # Concurrent uploads of one blob are written once and counted once.
    other = b"o" * 6000
    answers = await asyncio.gather(*(store.put(space, BlobPut(i, crypto.blob_hash(other), other)) for i in range(5)))
    assert all(isinstance(a, BlobAck) for a in answers)
    assert await store.usage(space) == 14_000
    assert sorted(p.name for p in folder.iterdir()) == sorted([digest.hex(), crypto.blob_hash(other).hex()])
    # A blob smaller than a block counts as one (what it costs the disk).
    tiny = b"t" * 10
    assert await store.put(space, BlobPut(8, crypto.blob_hash(tiny), tiny)) == BlobRefused(
        8, crypto.blob_hash(tiny), BlobCode.QUOTA, "storing 4096 more bytes would pass this space's quota of "
        "15000 bytes (14000 used)")
    # A restarted relay counts what is on disk.
    assert await BlobStore(tmp_path, max_blob_size=10_000, quota=15_000).usage(space) == 14_000


async def test_blob_store_total_quota(tmp_path: Path) -> None:
    one, two = bytes(32), bytes([2]) * 32
    (tmp_path / one.hex()).mkdir()
    (tmp_path / one.hex() / "aa").write_bytes(b"a" * 7000)  # stored by an earlier run
    store = BlobStore(tmp_path, max_blob_size=10_000, quota=10_000, total_quota=20_000)
    assert await store.total_usage() == 7000
    blobs = [bytes([i]) * 5000 for i in range(3)]
    answers = await asyncio.gather(*(store.put(space, BlobPut(i, crypto.blob_hash(b), b))
                                     for i, (space, b) in enumerate(zip((one, two, two), blobs, strict=True))))
    # 7000 + 3 x 5000 = 22000 > 20000: exactly one of the three concurrent uploads is refused.
    assert sorted(type(a).__name__ for a in answers) == ["BlobAck", "BlobAck", "BlobRefused"]
    assert await store.total_usage() == 17_000
    assert await BlobStore(tmp_path, max_blob_size=10_000, quota=10_000, total_quota=20_000).total_usage() == 17_000


def test_cli_flags(tmp_path: Path) -> None:
    args = parse_args(["--data-dir", str(tmp_path), "--max-blob-size", "4096", "--blob-quota", "0"])
    assert (args.max_blob_size, args.blob_quota) == (4096, 0)
    defaults = parse_args(["--data-dir", str(tmp_path)])
    assert defaults.max_blob_size == RelayConfig.max_blob_size and defaults.blob_quota == RelayConfig.blob_quota
    with pytest.raises(ValueError):
        RelayConfig(data_dir=tmp_path, max_blob_size=0)


async def test_blob_store_admits_members_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_blob_size=100, quota=100)
    state = LogState(bytes(32))  # nobody is a member (a removed member looks the same)
    digest = crypto.blob_hash(b"x")
    for request in (BlobGet(1, digest), BlobPut(2, digest, b"x")):
        answer = await store.answer(state, bytes(32), request)
        assert isinstance(answer, BlobRefused) and answer.code == "not_a_member"
    assert not any(tmp_path.iterdir())
