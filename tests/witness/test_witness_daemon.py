"""The witness: tlog-witness add-checkpoint rules, durable state, evidence, HTTP round trip."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import aiohttp
import nacl.signing
import pytest

from encspaces.core import merkle, note
from encspaces.errors import (
    WitnessBadRequestError,
    WitnessConsistencyError,
    WitnessSignatureError,
    WitnessSizeMismatchError,
    WitnessUnknownOriginError,
)
from encspaces_witness.core import Witness, encode_add_checkpoint, origin_hash
from encspaces_witness.server import start
from encspaces_witness.store import DB_FILE, KEY_FILE, SqliteWitnessStore, load_or_create_key

RELAY = nacl.signing.SigningKey(bytes(range(32)))
SPACE = hashlib.sha256(b"a space").digest()
ORIGIN = note.space_origin(SPACE)


class Log:
    """A relay's side: a tree and signed checkpoints of it."""

    def __init__(self, seed: bytes = b"") -> None:
        self.tree = merkle.MerkleTree()
        self.seed = seed
        self.signer = note.Ed25519Signer(ORIGIN, RELAY)

    def grow(self, n: int) -> None:
        for _ in range(n):
            self.tree.append(self.seed + self.tree.size.to_bytes(8, "big"))

    def checkpoint(self, size: int | None = None) -> note.SignedCheckpoint:
        size = self.tree.size if size is None else size
        return note.SignedCheckpoint.sign(note.Checkpoint(ORIGIN, size, self.tree.root(size)), self.signer)

    def request(self, old: int, size: int | None = None) -> bytes:
        size = self.tree.size if size is None else size
        return encode_add_checkpoint(old, self.tree.consistency_proof(old, size), self.checkpoint(size))


def open_witness(data_dir: Path, now: float = 1_700_000_000) -> tuple[Witness, SqliteWitnessStore]:
    key = load_or_create_key(data_dir)
    store = SqliteWitnessStore(data_dir / DB_FILE)
    signer = note.CosignatureSigner("witness.test/w1", key)
    return Witness(signer, [bytes(RELAY.verify_key)], store, clock=lambda: now), store


def test_cosigns_a_consistent_sequence_and_the_cosignature_verifies(tmp_path: Path) -> None:
    witness, _ = open_witness(tmp_path)
    log = Log()
    log.grow(5)
    [cosig] = witness.add_checkpoint(log.request(0))
    log.grow(9)
    [cosig2] = witness.add_checkpoint(log.request(5))
    verifier = witness.signer.verifier()
    note.verify_note(log.checkpoint().note.with_signatures([cosig2]), [verifier])
    assert note.cosignature_time(cosig) == 1_700_000_000
    served = note.SignedCheckpoint.parse(witness.latest_checkpoint(origin_hash(ORIGIN)) or b"")
    assert served.checkpoint.size == 14
    served.verify([verifier])
    served.verify([log.signer.verifier()])


def test_restart_keeps_key_and_state(tmp_path: Path) -> None:
    witness, store = open_witness(tmp_path)
    log = Log()
    log.grow(7)
    witness.add_checkpoint(log.request(0))
    key = bytes(witness.signer.key.verify_key)
    store.close()
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    again, _ = open_witness(tmp_path)
    assert bytes(again.signer.key.verify_key) == key
    with pytest.raises(WitnessSizeMismatchError) as info:  # it remembers size 7
        again.add_checkpoint(log.request(0, 3))
    assert info.value.latest_size == 7 and info.value.status == 409
    log.grow(1)
    again.add_checkpoint(log.request(7))


def test_smaller_tree_after_larger_is_refused(tmp_path: Path) -> None:
    witness, store = open_witness(tmp_path)
    log = Log()
    log.grow(10)
    witness.add_checkpoint(log.request(0))
    with pytest.raises(WitnessSizeMismatchError, match="latest cosigned size is 10"):
        witness.add_checkpoint(log.request(4, 6))
    body = encode_add_checkpoint(10, [], log.checkpoint(6))
    with pytest.raises(WitnessBadRequestError, match="old size 10 is above the checkpoint size 6"):
        witness.add_checkpoint(body)
    assert store.latest(ORIGIN) is not None and store.latest(ORIGIN).size == 10  # type: ignore[union-attr]


def test_conflicting_root_is_refused_and_kept_as_evidence(tmp_path: Path) -> None:
    witness, store = open_witness(tmp_path)
    honest, fork = Log(), Log(seed=b"fork")
    honest.grow(8)
    fork.grow(8)
    witness.add_checkpoint(honest.request(0))
    same_size = encode_add_checkpoint(8, [], fork.checkpoint())
    with pytest.raises(WitnessConsistencyError, match="two roots at one size") as info:
        witness.add_checkpoint(same_size)
    assert info.value.status == 422
    fork.grow(4)
    bigger = encode_add_checkpoint(8, fork.tree.consistency_proof(8, 12), fork.checkpoint())
    with pytest.raises(WitnessConsistencyError, match="not consistent with size 8"):
        witness.add_checkpoint(bigger)
    kept = store.evidence(ORIGIN)
    assert [(status, request) for status, _, request in kept] == [(422, same_size), (422, bigger)]
    # the evidence is the relay's signed checkpoint, exactly as received
    assert note.SignedCheckpoint.parse(kept[0][2].split(b"\n\n", 1)[1]).verify([honest.signer.verifier()])
    assert store.latest(ORIGIN).root == honest.tree.root()  # type: ignore[union-attr]


def test_signature_origin_and_format_refusals(tmp_path: Path) -> None:
    witness, store = open_witness(tmp_path)
    log = Log()
    log.grow(3)
    other = note.Ed25519Signer(ORIGIN, nacl.signing.SigningKey(bytes(32)))
    unsigned = note.SignedCheckpoint.sign(log.checkpoint().checkpoint, other)
    with pytest.raises(WitnessSignatureError) as info:
        witness.add_checkpoint(encode_add_checkpoint(0, [], unsigned))
    assert info.value.status == 403
    foreign = note.SignedCheckpoint.sign(
        note.Checkpoint("example.com/log", 3, log.tree.root()), note.Ed25519Signer("example.com/log", RELAY)
    )
    with pytest.raises(WitnessUnknownOriginError):
        witness.add_checkpoint(encode_add_checkpoint(0, [], foreign))
    with pytest.raises(WitnessConsistencyError, match="proof from size 0 must be empty"):
        witness.add_checkpoint(encode_add_checkpoint(0, [bytes(32)], log.checkpoint()))
    empty_wrong = note.SignedCheckpoint.sign(note.Checkpoint(ORIGIN, 0, bytes(32)), log.signer)
    with pytest.raises(WitnessConsistencyError, match="empty tree"):
        witness.add_checkpoint(encode_add_checkpoint(0, [], empty_wrong))
    for bad in [b"old 01\n\n", b"new 0\n\n", b"old 0\n", b"old 0\nnot-base64\n\n" + log.checkpoint().encode()]:
        with pytest.raises(WitnessBadRequestError):
            witness.add_checkpoint(bad)
    assert store.latest(ORIGIN) is None
    kept = encode_add_checkpoint(0, [bytes(32)], log.checkpoint())
    assert store.evidence(ORIGIN) == [(422, "size 3: a proof from size 0 must be empty", kept)]


async def test_http_round_trip(tmp_path: Path) -> None:
    witness, store = open_witness(tmp_path)
    runner, port = await start(witness, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    log = Log()
    log.grow(4)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/{origin_hash(ORIGIN).hex()}/checkpoint") as r:
                assert r.status == 404
            async with http.post(f"{base}/add-checkpoint", data=log.request(0)) as r:
                assert r.status == 200
                lines = note.parse_signature_lines(await r.read())
            note.verify_note(log.checkpoint().note.with_signatures(lines), [witness.signer.verifier()])
            async with http.post(f"{base}/add-checkpoint", data=log.request(0, 2)) as r:
                assert r.status == 409
                assert r.headers["Content-Type"] == "text/x.tlog.size"
                assert await r.read() == b"4\n"
            async with http.get(f"{base}/{origin_hash(ORIGIN).hex()}/checkpoint") as r:
                assert r.status == 200
                served = note.SignedCheckpoint.parse(await r.read())
            assert served.checkpoint == log.checkpoint().checkpoint
            served.verify([witness.signer.verifier()])
            async with http.get(f"{base}/vkey") as r:
                assert note.parse_vkey((await r.text()).strip()) == witness.signer.verifier()
    finally:
        await runner.cleanup()
        store.close()
