"""The relay's side of files: who may read and write blobs, its limits, dedup, and what it stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from encspaces.core import crypto
from encspaces.core.messages import BlobGet, BlobPut, BlobRefused, Challenge, Error, decode_message
from encspaces.errors import BlobMissingError, BlobRefusedError, EncspacesError
from encspaces.files import CHUNK_SIZE, seal_chunk
from encspaces_relay.blobs import BLOB_MIN_CHARGE, charge

from .conftest import Members, RelayFactory


async def test_relay_stores_no_plaintext(members: Members, tmp_path: Path) -> None:
    relay = members.relay
    space = await members.create()
    marker = b"TOP-SECRET-MARKER:"
    data = (marker + b"the quarterly numbers " * 10) * 4000  # ~1 MB of one repeating secret
    await space.files.put("secret-plans-2025.txt", data)
    await space.files.put("tiny-secret.txt", marker)
    assert await space.files.get("secret-plans-2025.txt") == data
    await members.close()
    await relay.stop()
    stored = [p for p in relay.data_dir.rglob("*") if p.is_file()]
    assert any("blobs" in p.parts for p in stored)
    for path in stored:
        content = path.read_bytes()
        for secret in (marker, b"quarterly", b"secret-plans", b"tiny-secret"):
            assert secret not in content, f"{secret!r} in {path}"


async def test_same_content_is_stored_once(members: Members, tmp_path: Path) -> None:
    relay = members.relay
    alice = await members.create()
    bob = await members.join(alice)
    data = b"same bytes " * 70_000  # 3 chunks
    source = tmp_path / "copy.bin"
    source.write_bytes(data)
    first = await alice.files.put("one.bin", data)
    blobs = relay.blob_files(alice)
    assert len(blobs) == 3
    second = await alice.files.put("two.bin", source)
    third = await bob.files.put("three.bin", data)  # another member, same space and epoch
    assert first.chunks == second.chunks == third.chunks
    assert relay.blob_files(alice) == blobs
    assert relay.server is not None
    assert await relay.server.blobs.usage(alice.space_bytes) == sum(p.stat().st_size for p in blobs)
    await alice.wait_for_seq(bob.seq)
    assert [r.name for r in alice.files.list()] == ["one.bin", "three.bin", "two.bin"]
    assert await alice.files.get("three.bin") == data


async def test_other_spaces_cannot_read_a_spaces_blobs(members: Members, other_members: Members) -> None:
    alice = await members.create()
    mallory = await other_members.create()  # a member of another space on the same relay
    ref = await alice.files.put("private.bin", b"for members only")
    with pytest.raises(BlobMissingError):
        await mallory.files.get(ref)  # even with the whole manifest, key included
    # And the same content uploaded in another space is encrypted under another key.
    theirs = await mallory.files.put("private.bin", b"for members only")
    assert theirs.chunks != ref.chunks and theirs.key != ref.key


async def test_unauthenticated_connection_cannot_fetch_blobs(members: Members) -> None:
    relay = members.relay
    space = await members.create()
    ref = await space.files.put("f.bin", b"contents")
    async with connect(relay.url, compression=None) as ws:
        challenge = decode_message(await ws.recv(decode=False))
        assert isinstance(challenge, Challenge)
        await ws.send(BlobGet(1, ref.chunks[0]).encode())  # no hello: not admitted to any space
        reply = decode_message(await asyncio.wait_for(ws.recv(decode=False), 10))
        assert isinstance(reply, Error) and reply.code == "unexpected"
        await asyncio.wait_for(ws.wait_closed(), 10)


async def test_reader_cannot_upload(members: Members) -> None:
    alice = await members.create()
    reader = await members.join(alice, "reader")
    ref = await alice.files.put("readme.txt", b"read me")
    assert await reader.files.get("readme.txt") == b"read me"
    with pytest.raises(EncspacesError, match="may not write"):
        await reader.files.put("mine.txt", b"x")
    # A client that skips its own check is refused by the relay, and the connection stays up.
    blob = seal_chunk(ref.key, ref.file_id, 0, 1, b"sneaky")
    request = await reader.files._send(0, 6, BlobPut(0, crypto.blob_hash(blob), blob))
    reply = await reader.files._answer(request)
    assert isinstance(reply, BlobRefused) and reply.code == "read_only"
    assert await reader.files.get(ref) == b"read me"


async def test_quota_refusal(make_relay: RelayFactory, tmp_path: Path) -> None:
    relay = await make_relay(blob_quota=CHUNK_SIZE * 5 // 2)
    group = Members(relay, tmp_path)
    try:
        space = await group.create()
        with pytest.raises(BlobRefusedError) as caught:
            await space.files.put("big.bin", b"b" * (4 * CHUNK_SIZE))
        assert caught.value.code == "quota"
        assert space.files.list() == []
        # The connection is fine, and what fits in the rest of the quota is stored.
        await space.files.put("small.bin", b"s" * 1000)
        assert await space.files.get("small.bin") == b"s" * 1000
        space.text("t").insert(0, "still writing")
        await space.sync()
    finally:
        await group.close()


async def test_relay_wide_quota_across_spaces(make_relay: RelayFactory, tmp_path: Path) -> None:
    """Anyone may create spaces, so each space's quota alone does not bound the disk."""
    relay = await make_relay(total_blob_quota=CHUNK_SIZE * 5 // 2)  # per-space quota: the default 1 GiB
    group = Members(relay, tmp_path)
    try:
        first, second = await group.create(), await group.create()
        await first.files.put("one.bin", b"1" * CHUNK_SIZE)  # one chunk
        with pytest.raises(BlobRefusedError) as caught:
            await second.files.put("two.bin", b"2" * (2 * CHUNK_SIZE))  # its second chunk passes the total
        assert caught.value.code == "quota" and "the relay's quota" in str(caught.value)
        assert second.files.list() == []
        await second.files.put("small.bin", b"s" * 1000)  # what fits is stored
        assert await second.files.get("small.bin") == b"s" * 1000
        assert await relay.server.blobs.total_usage() == sum(
            charge(p.stat().st_size) for space in (first, second) for p in relay.blob_files(space))
    finally:
        await group.close()


async def test_max_blob_size_refusal(make_relay: RelayFactory, tmp_path: Path) -> None:
    relay = await make_relay(max_blob_size=64 << 10)
    group = Members(relay, tmp_path)
    try:
        space = await group.create()
        with pytest.raises(BlobRefusedError) as caught:
            await space.files.put("big.bin", b"b" * (100 << 10))
        assert caught.value.code == "too_large"
        assert space.files.list() == []
        space.files.chunk_size = 32 << 10  # smaller chunks fit
        await space.files.put("big.bin", b"b" * (100 << 10))
        assert await space.files.get("big.bin") == b"b" * (100 << 10)
    finally:
        await group.close()


async def test_key_rotation_and_removal(members: Members) -> None:
    alice = await members.create()
    bob = await members.join(alice)
    before = await alice.files.put("a.bin", b"same content" * 1000)
    await bob.wait_for_seq(alice.seq)
    await alice.remove_member(bob.identity.public)  # a new epoch whose key bob never gets
    after = await alice.files.put("b.bin", b"same content" * 1000)
    assert after.key != before.key and set(after.chunks).isdisjoint(before.chunks)  # no dedup across epochs
    assert await alice.files.get("a.bin") == b"same content" * 1000  # the key is in the manifest
    with pytest.raises(EncspacesError) as caught:
        await bob.files.get(after)  # even with the manifest, a removed member gets no blob
    assert "removed" in str(caught.value)


async def test_many_tiny_blobs_count_what_they_cost(make_relay: RelayFactory, tmp_path: Path) -> None:
    """A writer uploading tiny distinct blobs cannot make the relay hold quota / size files.

    Each blob takes a block and an inode however small it is, so it counts BLOB_MIN_CHARGE
    against the quota: under a quota of 3 blocks, the fourth tiny blob is refused.
    """
    relay = await make_relay(blob_quota=3 * BLOB_MIN_CHARGE)
    group = Members(relay, tmp_path)
    try:
        space = await group.create()
        codes = []
        for i in range(16):
            blob = i.to_bytes(8, "big")
            request = await space.files._send(i, 8, BlobPut(0, crypto.blob_hash(blob), blob))
            reply = await space.files._answer(request)
            codes.append("ack" if not isinstance(reply, BlobRefused) else reply.code)
        assert codes == ["ack"] * 3 + ["quota"] * 13
        assert len(relay.blob_files(space)) == 3
        # The space is not stuck: edits still go through.
        space.text("t").insert(0, "still writing")
        await space.sync()
    finally:
        await group.close()
