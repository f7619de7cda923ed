"""The relay's witnessed log end to end: its tree in the store, signed checkpoints, proofs over
the websocket, and submission to a real ``encspaces-witness`` (in-process, over HTTP).

Nothing here asserts timing: a short ``checkpoint_interval`` only makes the background rounds
come quickly, and every wait is bounded by relay_kit's hang guard.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from aiohttp import web
from relay_kit import Member, SpaceBuilder, join, url_of, wait_until
from test_relay_postgres import pg_dsn  # noqa: F401  (the fixture: a fresh PostgreSQL schema)

from encspaces.core import crypto, merkle, note
from encspaces.core.codes import ProofCode
from encspaces.core.entry import Entry
from encspaces.core.head import next_head
from encspaces.core.identity import Identity
from encspaces.core.log_state import space_id_of
from encspaces.core.membership import genesis_body
from encspaces.core.messages import (
    CheckpointNote,
    CheckpointReq,
    Consistency,
    ConsistencyReq,
    Inclusion,
    InclusionReq,
    Message,
    ProofRefused,
)
from encspaces.core.witness_policy import Witness as PolicyWitness
from encspaces.core.witness_policy import WitnessPolicy
from encspaces_relay.config import RelayConfig
from encspaces_relay.server import RelayServer
from encspaces_relay.store import DB_FILE
from encspaces_relay.tree import expected_nodes
from encspaces_witness.core import Witness
from encspaces_witness.server import start as start_witness
from encspaces_witness.store import DB_FILE as WITNESS_DB
from encspaces_witness.store import SqliteWitnessStore, load_or_create_key

INTERVAL = 0.02


class WitnessedSpace(SpaceBuilder):
    """A SpaceBuilder whose genesis names witnesses."""

    def __init__(self, relay_key: bytes, policy: WitnessPolicy) -> None:
        super().__init__(relay_key)
        from encspaces.core.entry import Kind, build_entry

        self.genesis = build_entry(
            self.creator, space=b"", author_seq=1, epoch=1, kind=Kind.GENESIS, parent_seq=0,
            parent_hash=crypto.ZERO_HASH, payload=genesis_body(self.creator.public, relay_key, self.epoch_key, policy),
            epoch_key=None,
        )
        self.space = space_id_of(self.genesis.raw)
        self.h1 = next_head(crypto.ZERO_HASH, 1, self.genesis.digest())


@dataclass
class RunningWitness:
    """An encspaces-witness serving HTTP on 127.0.0.1, its state in ``data_dir``."""

    data_dir: Path
    relay_key: bytes
    name: str = "witness.test/w1"
    port: int = 0
    runner: web.AppRunner | None = None
    store: SqliteWitnessStore | None = None

    async def start(self) -> None:
        key = load_or_create_key(self.data_dir)
        self.store = SqliteWitnessStore(self.data_dir / WITNESS_DB)
        witness = Witness(note.CosignatureSigner(self.name, key), [self.relay_key], self.store)
        self.runner, self.port = await start_witness(witness, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.store is not None:
            self.store.close()
            self.store = None

    @property
    def policy_witness(self) -> PolicyWitness:
        key = load_or_create_key(self.data_dir)
        return PolicyWitness(self.name, bytes(key.verify_key), f"http://127.0.0.1:{self.port}")


KEY = nacl.signing.SigningKey.generate()


@pytest.fixture
async def witness(tmp_path: Path) -> AsyncIterator[RunningWitness]:
    w = RunningWitness(tmp_path / "witness", bytes(KEY.verify_key))
    w.data_dir.mkdir()
    await w.start()
    try:
        yield w
    finally:
        await w.stop()


async def _relay(tmp_path: Path, name: str = "relay", **overrides: Any) -> RelayServer:
    config = RelayConfig(data_dir=tmp_path / name, port=0, checkpoint_interval=INTERVAL, allow_private_witnesses=True,
                         **overrides)
    server = RelayServer(config, signing_key=KEY)
    await server.start()
    return server


async def _one_witness_space(tmp_path: Path, witness: PolicyWitness,
                             **overrides: Any) -> tuple[WitnessedSpace, RelayServer, Member]:
    """A space witnessed by ``witness`` alone (quorum 1), on a new relay, with its creator joined.

    The caller stops the relay; if the creator cannot join, it is stopped here.
    """
    builder = WitnessedSpace(bytes(KEY.verify_key), WitnessPolicy((witness,), 1))
    relay = await _relay(tmp_path, **overrides)
    try:
        alice = await join(url_of(relay), builder, builder.creator, create=True)
    except BaseException:
        await relay.stop()
        raise
    return builder, relay, alice


async def _cosigned_then_stopped(tmp_path: Path, witness: PolicyWitness, edits: int,
                                 **overrides: Any) -> tuple[WitnessedSpace, Member]:
    """A one-witness space (``_one_witness_space``) with ``edits`` edits after its genesis, its
    checkpoint at that size pushed to the creator; then its relay stopped."""
    builder, relay, alice = await _one_witness_space(tmp_path, witness, **overrides)
    try:
        await _write(alice, builder, edits)
        await _until(alice, CheckpointNote, _size(edits + 1))
    finally:
        await relay.stop()
    return builder, alice


def _leaves(member: Member, builder: SpaceBuilder) -> merkle.MerkleTree:
    """The tree of what a member verified, built from the entries' digests (as a client would)."""
    tree = merkle.MerkleTree()
    if not member.frames or member.frames[0].first_seq != 1:
        tree.append(merkle.entry_leaf(builder.genesis.digest()))
    for frame in member.frames:
        for raw in frame.entries:
            tree.append(merkle.entry_leaf(Entry.decode(raw).digest()))
    return tree


def _size(n: int) -> Any:
    """A check for ``_until``: a checkpoint message of tree size ``n``."""
    return lambda m: note.SignedCheckpoint.parse(m.note).checkpoint.size == n


async def _until(member: Member, want: type[Message], check: Any = lambda m: True) -> Any:
    while True:
        message = await member.recv()
        if isinstance(message, want) and check(message):
            return message


def _verified(data: bytes, builder: SpaceBuilder, witness: PolicyWitness | None = None) -> note.SignedCheckpoint:
    signed = note.SignedCheckpoint.parse(data)
    verifiers: list[note.Verifier] = [note.Ed25519Verifier(note.space_origin(builder.space), bytes(KEY.verify_key))]
    names = {v.name for v, _ in signed.verify(verifiers + ([witness.verifier()] if witness else []))}
    if witness is not None:
        assert witness.name in names
    return signed


async def _write(member: Member, builder: SpaceBuilder, n: int) -> None:
    for i in range(n):
        ack = await member.submit([builder.data(builder.creator, f"edit {i}".encode())])
    await member.sync_to(ack.results[-1][1])  # the frames of them all, verified


async def test_a_cosigned_checkpoint_reaches_a_connected_client(tmp_path: Path, witness: RunningWitness) -> None:
    w = witness.policy_witness
    builder, relay, alice = await _one_witness_space(tmp_path, w)
    try:
        await _write(alice, builder, 20)
        pushed = await _until(alice, CheckpointNote, _size(21))
        assert pushed.id is None
        signed = _verified(pushed.note, builder, w)
        mine = _leaves(alice, builder)
        assert signed.checkpoint.origin == note.space_origin(builder.space)
        assert signed.checkpoint.root == mine.root(21)
        # The witness serves the same checkpoint to anyone who asks, with its cosignature.
        assert witness.store is not None
        stored = witness.store.latest(note.space_origin(builder.space))
        assert stored is not None and stored.size == 21
        # A second connection gets it in its welcome.
        again = await join(url_of(relay), builder, builder.creator)
        assert again.welcome.checkpoint is not None
        assert _verified(again.welcome.checkpoint, builder, w).checkpoint.size == 21
        # Growth: the witness is handed a consistency proof from 21 and cosigns the next size too.
        await _write(alice, builder, 5)
        later = await _until(alice, CheckpointNote, _size(26))
        assert _verified(later.note, builder, w).checkpoint.root == _leaves(alice, builder).root(26)
    finally:
        await relay.stop()


async def test_proofs_over_the_websocket(tmp_path: Path) -> None:
    builder = SpaceBuilder(bytes(KEY.verify_key))
    relay = await _relay(tmp_path)
    try:
        alice = await join(url_of(relay), builder, builder.creator, create=True)
        await _write(alice, builder, 40)
        mine = _leaves(alice, builder)
        assert mine.size == 41
        send = alice.client.send
        await send(ConsistencyReq(1, 7, 41).encode())
        answer = await _until(alice, Consistency)
        assert (answer.id, answer.first, answer.second) == (1, 7, 41)
        merkle.verify_consistency(7, 41, mine.root(7), mine.root(41), answer.proof)
        await send(InclusionReq(2, 33, 41).encode())
        inclusion = await _until(alice, Inclusion)
        merkle.verify_inclusion(32, 41, mine.leaf_hash_at(32), inclusion.proof, mine.root(41))
        await send(ConsistencyReq(3, 7, 42).encode())
        refused = await _until(alice, ProofRefused)
        assert (refused.id, refused.code) == (3, ProofCode.BEYOND_HEAD) and "past the log's 41" in refused.message
        await send(InclusionReq(4, 30, 20).encode())
        assert (await _until(alice, ProofRefused)).code == ProofCode.BAD_RANGE
        await send(ConsistencyReq(5, 30, 20).encode())
        assert (await _until(alice, ProofRefused)).code == ProofCode.BAD_RANGE
        await send(CheckpointReq(6).encode())
        checkpoint = await _until(alice, CheckpointNote)
        assert checkpoint.id == 6
        signed = _verified(checkpoint.note, builder)
        assert signed.checkpoint.root == mine.root(signed.checkpoint.size)
        # The connection is still live: a refused proof request is not a refused connection.
        assert (await alice.submit([builder.data(builder.creator)])).results[0][1] == 42
    finally:
        await relay.stop()


async def test_a_witness_that_is_down_delays_only_witnessing(tmp_path: Path, witness: RunningWitness) -> None:
    w = witness.policy_witness
    await witness.stop()  # down from the start; its port is known
    builder, relay, alice = await _one_witness_space(tmp_path, w)
    try:
        await _write(alice, builder, 10)  # every edit acked while the witness is unreachable
        failures = relay.metrics.witness_submissions.labels("unreachable")
        await wait_until(lambda: failures._value.get() >= 2, "two failed submissions")
        assert not any(isinstance(m, CheckpointNote) for m in alice.client.inbox)
        await witness.start()  # back, on the same port
        pushed = await _until(alice, CheckpointNote)
        assert _verified(pushed.note, builder, w).checkpoint.size == 11
    finally:
        await relay.stop()


async def test_a_restarted_relay_keeps_its_tree_and_cosigned_checkpoint(
        tmp_path: Path, witness: RunningWitness) -> None:
    w = witness.policy_witness
    builder, alice = await _cosigned_then_stopped(tmp_path, w, 40)
    mine = _leaves(alice, builder)
    # An old data dir: the tree's rows are gone, as before the relay kept them.
    with sqlite3.connect(tmp_path / "relay" / DB_FILE) as db:
        db.execute("DELETE FROM tree_nodes")
    relay = await _relay(tmp_path)
    try:
        bob = await join(url_of(relay), builder, builder.creator, verifier=alice.verifier)
        assert bob.welcome.checkpoint is not None
        assert _verified(bob.welcome.checkpoint, builder, w).checkpoint.size == 41  # stored with its cosignature
        await bob.client.send(ConsistencyReq(1, 17, 41).encode())
        proof = await _until(bob, Consistency)
        merkle.verify_consistency(17, 41, mine.root(17), mine.root(41), proof.proof)
        with sqlite3.connect(tmp_path / "relay" / DB_FILE) as db:
            assert db.execute("SELECT count(*) FROM tree_nodes").fetchone()[0] == expected_nodes(41)
        await _write(bob, builder, 3)
        later = await _until(bob, CheckpointNote, _size(44))
        _verified(later.note, builder, w)  # the witness accepted the restarted relay's proof from 41
    finally:
        await relay.stop()


async def test_the_postgresql_store_keeps_the_tree_and_checkpoints(
        tmp_path: Path, pg_dsn: str, witness: RunningWitness) -> None:  # noqa: F811
    w = witness.policy_witness
    builder, alice = await _cosigned_then_stopped(tmp_path, w, 35, store=pg_dsn)
    mine = _leaves(alice, builder)
    relay = await _relay(tmp_path, "relay2", store=pg_dsn)
    try:
        bob = await join(url_of(relay), builder, builder.creator, verifier=alice.verifier)
        assert bob.welcome.checkpoint is not None
        assert _verified(bob.welcome.checkpoint, builder, w).checkpoint.size == 36
        for first in (1, 16, 35):
            await bob.client.send(ConsistencyReq(first, first, 36).encode())
            proof = await _until(bob, Consistency)
            merkle.verify_consistency(first, 36, mine.root(first), mine.root(36), proof.proof)
        await bob.client.send(InclusionReq(9, 17, 36).encode())
        inclusion = await _until(bob, Inclusion)
        merkle.verify_inclusion(16, 36, mine.leaf_hash_at(16), inclusion.proof, mine.root(36))
    finally:
        await relay.stop()




async def test_a_witness_that_never_answers_does_not_hold_up_edits(tmp_path: Path) -> None:
    # Accepts the connection, reads the request, never answers: the submission hangs for
    # witness_timeout (an hour here) and every edit is still acked.
    held = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        held.set()
        await asyncio.Event().wait()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    w = PolicyWitness("silent", bytes(nacl.signing.SigningKey.generate().verify_key), f"http://127.0.0.1:{port}")
    builder, relay, alice = await _one_witness_space(tmp_path, w, witness_timeout=3600.0)
    try:
        await asyncio.wait_for(held.wait(), 15)  # a submission is in flight, and stays so
        await _write(alice, builder, 30)
        assert alice.seq == 31
        assert relay.metrics.witness_submissions.labels("cosigned")._value.get() == 0
    finally:
        await relay.stop()
        server.close()


async def test_a_policy_change_is_submitted_to_the_old_and_the_new_witnesses(tmp_path: Path) -> None:
    first = RunningWitness(tmp_path / "w1", bytes(KEY.verify_key))
    second = RunningWitness(tmp_path / "w2", bytes(KEY.verify_key), "witness.test/w2")
    for w in (first, second):
        w.data_dir.mkdir()
        await w.start()
    old = first.policy_witness
    new = second.policy_witness
    builder, relay, alice = await _one_witness_space(tmp_path, old)
    try:
        from encspaces.core.entry import Kind

        change = builder._entry(builder.creator, Kind.WITNESSES, WitnessPolicy((new,), 1).encode_body())
        await alice.submit([change])
        await alice.sync_to(2)

        def names(m: CheckpointNote) -> tuple[int, set[str]]:
            signed = note.SignedCheckpoint.parse(m.note)
            return signed.checkpoint.size, {sig.name for sig in signed.note.signatures}

        # The change (seq 2) is witnessed under the old policy, and the new witness joins at once.
        covered = await _until(alice, CheckpointNote, lambda m: names(m)[0] >= 2 and old.name in names(m)[1])
        _verified(covered.note, builder, old)
        # Past the change, only the new policy's witness is asked.
        await _write(alice, builder, 2)
        size = alice.seq
        later = await _until(alice, CheckpointNote, lambda m: names(m) == (size, {note.space_origin(builder.space),
                                                                                  new.name}))
        _verified(later.note, builder, new)
        assert first.store is not None
        stored = first.store.latest(note.space_origin(builder.space))
        assert stored is not None and 2 <= stored.size < size
    finally:
        await relay.stop()
        await first.stop()
        await second.stop()


async def test_a_relay_that_lost_its_checkpoints_learns_the_witness_size_from_its_409(
        tmp_path: Path, witness: RunningWitness) -> None:
    w = witness.policy_witness
    builder, alice = await _cosigned_then_stopped(tmp_path, w, 9)
    with sqlite3.connect(tmp_path / "relay" / DB_FILE) as db:
        db.execute("DELETE FROM checkpoints")
    relay = await _relay(tmp_path)
    try:
        bob = await join(url_of(relay), builder, builder.creator, verifier=alice.verifier)
        await _write(bob, builder, 2)
        pushed = await _until(bob, CheckpointNote, _size(12))  # proved from 10, the size the 409 named
        _verified(pushed.note, builder, w)
        assert witness.store is not None and witness.store.evidence(note.space_origin(builder.space)) == []
    finally:
        await relay.stop()


async def test_the_witness_daemon_as_a_process(tmp_path: Path) -> None:
    from encspaces.core.identity import member_id
    from encspaces_witness.process import WitnessProcess

    async with WitnessProcess(tmp_path / "witness", [member_id(bytes(KEY.verify_key))]) as process:
        w = PolicyWitness.from_vkey(process.vkey, process.url)
        builder, relay, alice = await _one_witness_space(tmp_path, w)
        try:
            await _write(alice, builder, 3)
            _verified((await _until(alice, CheckpointNote, _size(4))).note, builder, w)
        finally:
            await relay.stop()


async def test_migrate_to_postgresql_keeps_the_tree_and_the_cosigned_checkpoint(
        tmp_path: Path, pg_dsn: str, witness: RunningWitness) -> None:  # noqa: F811
    from encspaces_relay.migrate import migrate

    w = witness.policy_witness
    builder, alice = await _cosigned_then_stopped(tmp_path, w, 40)
    mine = _leaves(alice, builder)
    (tmp_path / "relay" / "relay.key").write_bytes(bytes(KEY))  # migrate checks heads against the data dir's key
    report = await migrate(tmp_path / "relay", pg_dsn)
    assert report.problems == [] and report.entries == 41
    relay = await _relay(tmp_path, "relay2", store=pg_dsn)
    try:
        from encspaces_relay.pg_store import PgStore

        assert isinstance(relay.store, PgStore)
        async with relay.store.connection() as conn:
            assert await conn.fetchval("SELECT count(*) FROM tree_nodes") == expected_nodes(41)
        bob = await join(url_of(relay), builder, builder.creator, verifier=alice.verifier)
        assert bob.welcome.checkpoint is not None
        assert _verified(bob.welcome.checkpoint, builder, w).checkpoint.size == 41
        await bob.client.send(ConsistencyReq(1, 5, 41).encode())
        merkle.verify_consistency(5, 41, mine.root(5), mine.root(41), (await _until(bob, Consistency)).proof)
    finally:
        await relay.stop()


async def test_what_the_relay_serves_verifies_with_tlog_scales(tmp_path: Path, witness: RunningWitness) -> None:
    """The relay's cosigned checkpoint and its proofs, checked by an independent implementation
    (tlog-scales, from PyPI): C2SP note, Ed25519 signature, cosignature, RFC 9162 proofs."""
    from tlog_scales.signing import Vkey
    from tlog_scales.tlog import Checkpoint as TsCheckpoint
    from tlog_scales.tlog import ConsistencyProof, InclusionProof

    w = witness.policy_witness
    builder, relay, alice = await _one_witness_space(tmp_path, w)
    try:
        await _write(alice, builder, 36)
        pushed = await _until(alice, CheckpointNote, _size(37))
        mine = _leaves(alice, builder)
        parsed = TsCheckpoint.from_text(pushed.note.decode())
        assert (parsed.origin, parsed.size, parsed.root_hash) == (note.space_origin(builder.space), 37, mine.root())
        relay_vkey = note.Ed25519Verifier(note.space_origin(builder.space), bytes(KEY.verify_key)).vkey()
        parsed.verify(Vkey.from_string(relay_vkey))
        parsed.verify(Vkey.from_string(w.vkey))
        await alice.client.send(ConsistencyReq(1, 11, 37).encode())
        ConsistencyProof(11, 37, (await _until(alice, Consistency)).proof).check(mine.root(11), mine.root(37))
        await alice.client.send(InclusionReq(2, 20, 37).encode())
        InclusionProof(19, 37, (await _until(alice, Inclusion)).proof).check(mine.leaf_hash_at(19), mine.root(37))
    finally:
        await relay.stop()


async def test_two_relays_on_one_database_keep_one_tree(tmp_path: Path, pg_dsn: str) -> None:  # noqa: F811
    builder = SpaceBuilder(bytes(KEY.verify_key))
    bob_id = Identity.generate()
    a = await _relay(tmp_path, "a", store=pg_dsn)
    b = await _relay(tmp_path, "b", store=pg_dsn)
    try:
        alice = await join(url_of(a), builder, builder.creator, create=True)
        await alice.submit([builder.add_member(bob_id)])
        bob = await join(url_of(b), builder, bob_id)
        # Both relays commit to the space at once: the database refuses one of each pair of
        # commits, that relay rolls its tree back and sequences again on top of the other's.
        async def write(m: Member) -> None:
            for i in range(12):
                entry = builder.data(m.identity, f"{i}".encode())
                while True:  # beaten three times in a row by the other relay: resubmit, as a client does
                    await m.send_submit([entry])
                    try:
                        await m.next_ack()
                        break
                    except AssertionError as exc:
                        if "contended" not in str(exc):
                            raise

        await asyncio.gather(write(alice), write(bob))
        # Without a bus, a relay reads the other's commits when a connection opens the space.
        readers = [await join(url_of(relay), builder, builder.creator) for relay in (a, b)]
        size = 2 + 2 * 12
        assert [r.seq for r in readers] == [size, size]
        mine = _leaves(readers[0], builder)
        assert mine.root() == _leaves(readers[1], builder).root()
        for i, m in enumerate(readers):
            await m.client.send(ConsistencyReq(i, 3, size).encode())
            merkle.verify_consistency(3, size, mine.root(3), mine.root(), (await _until(m, Consistency)).proof)
            await m.client.send(CheckpointReq(9).encode())
            signed = _verified((await _until(m, CheckpointNote, lambda c: c.id == 9)).note, builder)
            assert signed.checkpoint.root == mine.root(signed.checkpoint.size)
    finally:
        await a.stop()
        await b.stop()


async def test_a_space_that_names_its_first_witness_later_gets_it_cosigning(
    tmp_path: Path, witness: RunningWitness
) -> None:
    """A space without witnesses runs no checkpoint rounds (a welcome's checkpoint is signed when
    asked for); the entry that names the first witness starts them."""
    w = witness.policy_witness
    builder = WitnessedSpace(bytes(KEY.verify_key), WitnessPolicy.NONE)
    relay = await _relay(tmp_path)
    try:
        alice = await join(url_of(relay), builder, builder.creator, create=True)
        await _write(alice, builder, 3)
        bob = await join(url_of(relay), builder, builder.creator)  # a welcome still carries a checkpoint
        assert bob.welcome.checkpoint is not None
        assert _verified(bob.welcome.checkpoint, builder).checkpoint.size == 4
        from encspaces.core.entry import Kind

        change = builder._entry(builder.creator, Kind.WITNESSES, WitnessPolicy((w,), 1).encode_body())
        ack = await alice.submit([change])
        cosigned = await _until(alice, CheckpointNote, _size(ack.results[-1][1]))
        _verified(cosigned.note, builder, w)
    finally:
        await relay.stop()
