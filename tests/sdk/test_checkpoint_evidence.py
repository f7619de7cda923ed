"""A fork, rollback or withholding exposed through the witnesses leaves an evidence file (its
checkpoint notes, relay-signed and cosigned, and for a fork the leaves of the log this device
verified) that anyone checks offline; the checker names the witnesses that cosigned, and a
tampered note is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core import evidence
from encspaces.core.encoding import pack, unpack
from encspaces.local import load_evidence, reverify_local
from encspaces_clients.cli.home import REGISTRY_FILE, Registry, SpaceRef
from encspaces_clients.cli.main import main

from .conftest import wait_for
from .test_witnessed_log import (
    FAST,
    alice_with_bob_and_carol,
    extend_branch,
    policy,
    rollback_setup,
    seen_once,
    witnessed_relay,
)


def with_statements(data: bytes, change: object) -> bytes:
    """The evidence file with its statements changed by ``change`` (unsigned: the body changed)."""
    body, _ = unpack(data)
    fields = unpack(body)
    fields["statements"] = change(fields["statements"])  # type: ignore[operator]
    fields["reporter"] = None
    return pack([pack(fields), None])


async def test_a_fork_seen_through_a_witness_exports_evidence_naming_the_cosigner(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        alice, bob_id, carol_id = await alice_with_bob_and_carol(tmp_path, relay, witnesses)
        await alice.sync()
        await seen_once(relay.url, bob_id, alice, tmp_path / "b")
        await relay.back_up(tmp_path / "branch")
        for i in range(3):
            alice.text("doc").insert(0, f"alice {i}. ")
            await alice.sync()
        await wait_for(lambda: alice.witnessed_seq == alice.seq, "alice's branch witnessed")
        await alice.close()
        await relay.restart_on(tmp_path / "branch")
        await extend_branch(relay.url, carol_id, alice.space_bytes, 6)
        bob = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "b", options=FAST)
        try:
            await wait_for(lambda: bob.error is not None, "bob to detect the fork")
            error = bob.error
            assert isinstance(error, errors.CheckpointForkError), error
        finally:
            await bob.close()
    assert error.proof is not None and error.proof.complete
    data = await load_evidence(alice.id, data_dir=tmp_path / "b")
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.FORK and finding.seq == error.size
    assert finding.bound and finding.reporter == bob_id.public.sign_key
    assert finding.cosigners == ("witness.test/w0",)
    assert "cosigned by witness.test/w0" in finding.proves
    assert finding.ignored == ()

    # The CLI exports the same file, and its check names the witness.
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    Registry(home / REGISTRY_FILE).add(SpaceRef("notes", alice.id, "ws://unused.invalid", tmp_path / "b"))
    out = tmp_path / "fork.evidence"
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["evidence", "notes", "--home", str(home), "--out", str(out)]) == 0
    assert out.read_bytes() == data
    assert main(["evidence", "--check", str(out)]) == 0
    assert "cosigned by: witness.test/w0" in capsys.readouterr().out

    # One changed character of the note's text: the relay's signature no longer verifies.
    def tamper(statements: list[list[object]]) -> list[list[object]]:
        for statement in statements:
            if statement[0] == "checkpoint":
                note = bytes(statement[2])  # type: ignore[arg-type]
                root = note.split(b"\n")[2]
                other = (b"B" if root[:1] == b"A" else b"A") + root[1:]  # another root of 32 bytes
                statement[2] = note.replace(root, other, 1)
        return statements

    with pytest.raises(errors.EvidenceError, match="relay's signature does not verify"):
        evidence.check(with_statements(data, tamper))
    # Without the leaves nothing binds the relay to our root: not a fork.
    with pytest.raises(errors.EvidenceError):
        evidence.check(with_statements(data, lambda s: [x for x in s if x[0] != "leaves"]))


async def test_a_rollback_seen_through_a_witness_exports_evidence(tmp_path: Path) -> None:
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        bob_id, _, space_id, head = await rollback_setup(tmp_path, relay, witnesses)
        bob = await encspaces.connect(relay.url, bob_id, space_id, data_dir=tmp_path / "b", options=FAST)
        try:
            await wait_for(lambda: bob.error is not None, "bob to refuse the rolled-back relay")
            error = bob.error
            assert isinstance(error, errors.CheckpointRollbackError), error
        finally:
            await bob.close()
    data = await load_evidence(space_id, data_dir=tmp_path / "b")
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.ROLLBACK
    assert finding.seq < head and finding.cosigners == ("witness.test/w0",)
    assert f"checkpoint of size {head}" in finding.proves


async def test_verify_rechecks_the_cosigned_checkpoints_the_device_kept(tmp_path: Path) -> None:
    async with witnessed_relay(tmp_path, 1) as (relay, witnesses):
        space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a",
                                             witnesses=policy(witnesses), options=FAST)
        try:
            for i in range(3):
                space.text("t").insert(0, f"{i} ")
                await space.sync()
            await wait_for(lambda: space.witnessed_seq == space.seq, "the log witnessed")
            seq = space.seq
        finally:
            await space.close()
    report = await reverify_local(space.identity, space.id, data_dir=tmp_path / "a")
    assert report.error is None
    assert report.checkpoints_checked == [(seq, ("witness.test/w0",))]
