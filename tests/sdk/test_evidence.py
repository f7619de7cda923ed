"""A fork caught over a real relay leaves evidence anyone can check offline; a tampered copy is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core import evidence
from encspaces.core.encoding import pack, unpack
from encspaces.core.head import SignedHead
from encspaces.local import load_evidence, reverify_local
from encspaces_clients.cli.home import REGISTRY_FILE, Registry, SpaceRef
from encspaces_clients.cli.main import main
from encspaces_relay.server import RelayServer

from .conftest import RelayHandle, wait_for


async def forked(relay: RelayHandle, tmp_path: Path) -> tuple[encspaces.Space, int]:
    """Alice verified a history the restored relay no longer has; Bob wrote another one past it; Alice
    reconnects and catches the fork (the anchor at her seq carries another hash)."""
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice = await encspaces.create_space(relay.url, alice_id, data_dir=tmp_path / "a")
    await alice.add_member(bob_id.public)
    for i in range(3):
        alice.text("doc").insert(0, f"common {i}. ")
        await alice.sync()
    space_id = alice.id
    await relay.back_up(tmp_path / "backup")
    await wait_for(lambda: alice.connected, what="alice to reconnect")
    for i in range(3):  # several frames: the fork's seq is below Alice's newest signed head
        alice.text("doc").insert(0, f"only alice {i}. ")
        await alice.sync()
    alice_seq = alice.seq
    await alice.close()
    await relay.restart_on(tmp_path / "backup")
    async with encspaces.connect(relay.url, bob_id, space_id, data_dir=tmp_path / "b") as bob:
        for i in range(5):
            bob.text("doc").insert(0, f"bob {i}. ")
            await bob.sync()
    again = await encspaces.connect(relay.url, alice_id, space_id, data_dir=tmp_path / "a")
    try:
        await wait_for(lambda: again.error is not None, what="alice to detect the fork")
    finally:
        await again.close()
    return again, alice_seq


async def test_fork_exports_evidence_that_checks(relay: RelayHandle, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    alice, alice_seq = await forked(relay, tmp_path)
    error = alice.error
    assert isinstance(error, errors.ForkError)
    # Both signed statements in full: the relay's head that contradicts us, and ours.
    theirs, ours = (SignedHead.decode(unpack(raw)) for raw in error.evidence[:2])
    assert theirs.seq == alice_seq and ours.seq == alice_seq and theirs.head != ours.head
    assert error.proof is not None and error.proof.complete

    data = await load_evidence(alice.id, data_dir=tmp_path / "a")
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.FORK
    assert finding.seq == alice_seq and finding.bound
    assert finding.space == alice.space_bytes
    assert finding.reporter == alice.identity.public.sign_key

    # The stored heads are re-checked by verify: the relay's signatures over what Alice verified.
    report = await reverify_local(alice.identity, alice.id, data_dir=tmp_path / "a")
    assert report.error is None and report.heads_checked >= 3

    # The CLI: export, check, and refuse a tampered copy.
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    Registry(home / REGISTRY_FILE).add(SpaceRef("notes", alice.id, relay.url, tmp_path / "a"))
    good = tmp_path / "fork.evidence"
    assert await asyncio.to_thread(main, ["evidence", "notes", "--home", str(home), "--out", str(good)]) == 0
    assert good.read_bytes() == data
    assert f"fork at seq {alice_seq}" in capsys.readouterr().out
    assert main(["evidence", "--check", str(good)]) == 0
    assert f"two different heads for seq {alice_seq}" in capsys.readouterr().out

    body, _ = unpack(data)
    fields = unpack(body)
    fields["statements"] = fields["statements"][1:]  # drop the relay's contradicting head
    stripped = tmp_path / "stripped.evidence"
    fields["reporter"] = None  # unsigned: the reporter's signature would not match the changed body
    stripped.write_bytes(pack([pack(fields), None]))
    assert main(["evidence", "--check", str(stripped)]) == 3
    assert "REFUSED" in capsys.readouterr().out

    tampered = bytearray(data)
    index = tampered.find(ours.signature)
    tampered[index] ^= 1  # one bit of the relay's signature over our head
    bad = tmp_path / "tampered.evidence"
    bad.write_bytes(bytes(tampered))
    with pytest.raises(errors.EvidenceError):
        evidence.check(bytes(tampered))
    assert main(["evidence", "--check", str(bad)]) == 3


class OlderForkRelay(RelayServer):
    """Welcomes with a validly signed head at an older seq than the client's, carrying another hash."""

    back = 0

    def encode_welcome(self, space: bytes, head: SignedHead, anchor: SignedHead | None) -> bytes:
        if self.back:
            head = SignedHead.create(self.signing_key, space, head.seq - self.back, bytes(32))
        return super().encode_welcome(space, head, anchor)


async def test_a_fork_at_an_older_seq_is_linked_to_a_stored_head(tmp_path: Path) -> None:
    """The relay's head at seq s contradicts h(s), which the newer head Alice verified (and kept)
    commits to through the entries between: the evidence carries that chain link, by digest."""
    handle = RelayHandle(tmp_path / "relay", OlderForkRelay)
    server = await handle.start()
    assert isinstance(server, OlderForkRelay)
    try:
        alice = await encspaces.create_space(handle.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
        await handle.stop()
        await wait_for(lambda: not alice.connected, what="alice to go offline")
        for i in range(4):  # four entries written offline: sent together, sequenced into one frame
            alice.text("doc").insert(0, f"{i}. ")
            await alice.flush()
        server = await handle.start()
        assert isinstance(server, OlderForkRelay)
        await alice.sync()
        seq, identity, space_id = alice.seq, alice.identity, alice.id
        await alice.close()
        server.back = 3
        again = await encspaces.connect(handle.url, identity, space_id, data_dir=tmp_path / "a")
        try:
            await wait_for(lambda: again.error is not None, what="alice to detect the fork")
        finally:
            await again.close()
    finally:
        await handle.stop()
    assert isinstance(again.error, errors.ForkError)
    assert again.seq == seq
    data = await load_evidence(space_id, data_dir=tmp_path / "a")
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.FORK and finding.seq == seq - 3
    link = evidence.decode(data).link
    assert link is not None and link.seq == seq - 3 and link.digests is not None and len(link.digests) == 3
    # A link that does not chain to the signed head proves nothing.
    assert link.digests is not None
    forged = evidence.decode(data).replace(statements=tuple(
        evidence.LinkStatement(st.role, st.seq, st.head, (bytes(32), *st.digests[1:]))
        if isinstance(st, evidence.LinkStatement) and st.digests is not None else st
        for st in evidence.decode(data).statements), reporter=None)
    with pytest.raises(errors.EvidenceError, match="no signed head in the evidence carries"):
        evidence.check(forged.encode())


async def test_rollback_to_an_old_backup_exports_evidence(relay: RelayHandle, tmp_path: Path) -> None:
    alice = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    alice.text("doc").insert(0, "before backup. ")
    await alice.sync()
    await relay.back_up(tmp_path / "backup")
    await wait_for(lambda: alice.connected, what="alice to reconnect")
    alice.text("doc").insert(0, "after backup. ")
    await alice.sync()
    verified = alice.seq
    await relay.restart_on(tmp_path / "backup")
    await wait_for(lambda: alice.error is not None, what="alice to detect the rollback")
    await alice.close()
    assert isinstance(alice.error, errors.RollbackError)
    ours, theirs = (SignedHead.decode(unpack(raw)) for raw in alice.error.evidence)
    assert ours.seq == verified and theirs.seq < verified
    data = await load_evidence(alice.id, data_dir=tmp_path / "a")
    assert data is not None
    finding = evidence.check(data)
    assert finding.kind is evidence.EvidenceKind.ROLLBACK and finding.seq == theirs.seq
    assert f"seq {verified}" in finding.proves
