"""A writer posting Yjs items under another member's client id, over the real relay.

Yjs names items by (client id, clock) and trusts whoever sends them. Before client ids were
bound to their writers (encspaces/core/client_ids.py), a member who read a victim's client id
could post items at the victim's next clocks: every device but the victim's kept the forgery
and dropped the victim's real edit at those clocks as already seen, and nothing reported it.
Now every member rejects such an entry alike (``foreign_client``), naming its author, and the
honest members keep converging.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pycrdt
import pytest

import encspaces
from encspaces import snapshot_keeper
from encspaces import space as space_module
from encspaces.core import client_ids
from encspaces.core.client_ids import NONCE_SIZE, data_plaintext
from encspaces.core.entry import Kind
from encspaces.core.membership import Policy, genesis_body
from encspaces.errors import ForeignClientIdError
from encspaces.snapshot import content_hash
from tests.support import AuthoredDoc, RawMember, wait_for

from .conftest import RelayHandle, make_members, settle
from .test_snapshots import newcomer, snapshot_written


def forged_after(victim: encspaces.Space, text: str, at: int) -> bytes:
    """An update writing ``text`` at index ``at`` of the text "doc", under the victim's client id,
    at the victim's next clocks: what a member who read the victim's entries can make."""
    forged: pycrdt.Doc[Any] = pycrdt.Doc(client_id=victim.doc.client_id)
    forged.apply_update(victim.doc.get_update())
    before = forged.get_state()
    forged.get("text:doc", type=pycrdt.Text).insert(at, text)
    return forged.get_update(before)


async def test_items_under_another_members_client_id_are_rejected_by_everyone(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    _, members = await make_members(relay.url, tmp_path, 3)
    alice, bob, carol = members
    try:
        bob.text("doc").insert(0, "hello")
        await settle(members)
        forgery = forged_after(bob, " FORGED", 5)
        async with RawMember(relay.url, carol.identity, carol.space_bytes) as raw:  # carol's own client
            # With carol's own nonce (her key cannot derive bob's id), then with bob's id as the
            # nonce's target never found: both are someone else's items.
            seq = await raw.commit(raw.entry(Kind.DATA, data_plaintext(bytes(NONCE_SIZE), forgery)))
        for m in (alice, bob):
            await m.wait_for_seq(seq)
        bob.text("doc").insert(5, " world")  # bob's real edit, at the clocks the forgery took
        await settle(members)
        carol_id = carol.identity.member_id
        for m in (alice, bob):
            assert m.error is None and m.connected
            assert str(m.text("doc")) == "hello world"
            assert [(r.seq, r.author, r.kind) for r in m.rejected] == [(seq, carol_id, "foreign_client")]
            assert str(bob.doc.client_id) in m.rejected[0].reason
        assert alice.rejected == bob.rejected
        assert content_hash(alice.doc) == content_hash(bob.doc)
    finally:
        for m in members:
            await m.close()


async def test_a_members_own_items_with_a_nonce_that_does_not_derive_them_are_rejected(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """Items under the author's own session client id, sent with another nonce: the id must be the
    one the author's key and the entry's nonce derive, not merely one the author used before."""
    _, members = await make_members(relay.url, tmp_path, 2)
    alice, bob = members
    try:
        authored = AuthoredDoc(bob.identity)
        authored.doc.get("text:doc", type=pycrdt.Text).insert(0, "mine")
        other_nonce = bytes(NONCE_SIZE)
        assert other_nonce != authored.nonce
        async with RawMember(relay.url, bob.identity, bob.space_bytes) as raw:
            wrong = await raw.commit(raw.entry(Kind.DATA, data_plaintext(other_nonce, authored.doc.get_update())))
            right = await raw.commit(raw.entry(Kind.DATA, authored.payload(authored.doc.get_update())))
        await alice.wait_for_seq(right)
        assert [(r.seq, r.kind) for r in alice.rejected] == [(wrong, "foreign_client")]
        assert str(alice.text("doc")) == "mine"
    finally:
        for m in members:
            await m.close()


async def test_a_data_entry_too_short_for_its_nonce_is_rejected(relay: RelayHandle, tmp_path: Path) -> None:
    _, members = await make_members(relay.url, tmp_path, 2)
    alice, bob = members
    try:
        async with RawMember(relay.url, bob.identity, bob.space_bytes) as raw:
            seq = await raw.commit(raw.entry(Kind.DATA, b"\x00" * NONCE_SIZE))
        await alice.wait_for_seq(seq)
        assert [(r.seq, r.kind) for r in alice.rejected] == [(seq, "invalid_update")]
        assert "shorter than a client nonce" in alice.rejected[0].reason
        bob.text("doc").insert(0, "after")
        await settle(members)
        assert str(alice.text("doc")) == "after" and alice.error is None
    finally:
        for m in members:
            await m.close()


async def test_a_history_view_rejects_what_the_space_rejected(relay: RelayHandle, tmp_path: Path) -> None:
    _, members = await make_members(relay.url, tmp_path, 3)
    alice, bob, carol = members
    try:
        bob.text("doc").insert(0, "hello")
        await settle(members)
        async with RawMember(relay.url, carol.identity, carol.space_bytes) as raw:
            seq = await raw.commit(raw.entry(Kind.DATA, data_plaintext(bytes(NONCE_SIZE), forged_after(bob, "!", 5))))
        await alice.wait_for_seq(seq)
        assert str((await alice.at(seq)).text("doc")) == "hello" == str(alice.text("doc"))
    finally:
        for m in members:
            await m.close()


async def test_an_update_imported_through_space_doc_from_another_document_is_not_sent(
    relay: RelayHandle, tmp_path: Path,
) -> None:
    """An integration applying another document's update as a local edit: its items stand under that
    document's client id, which every member would reject. The space stops and says why, before
    anything of the batch reaches the relay."""
    _, members = await make_members(relay.url, tmp_path, 2)
    alice, bob = members
    try:
        other: pycrdt.Doc[Any] = pycrdt.Doc()
        other.get("text:doc", type=pycrdt.Text).insert(0, "elsewhere")
        seq = alice.seq
        alice.doc.apply_update(other.get_update())
        await wait_for(lambda: alice.error is not None, "alice's space to stop")
        assert isinstance(alice.error, ForeignClientIdError)
        assert str(other.client_id) in str(alice.error)
        assert alice.seq == seq and bob.seq == seq
    finally:
        for m in members:
            await m.close()


async def test_a_space_made_before_client_ids_were_bound_keeps_bare_updates(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A genesis without ``client_ids`` (spaces made by earlier versions): data entries carry the bare
    update, as they did, and members still converge, also after a reopen (the checkpoint keeps it)."""
    monkeypatch.setattr(space_module, "genesis_body", functools.partial(genesis_body, client_ids=False))
    (_, bob_id), members = await make_members(relay.url, tmp_path, 2)
    alice, bob = members
    try:
        alice.text("doc").insert(0, "old format")
        await settle(members)
        assert str(bob.text("doc")) == "old format" and bob.rejected == []
        await bob.close()
        bob = members[1] = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "m1")
        bob.text("doc").insert(0, "still ")
        await settle(members)
        assert str(alice.text("doc")) == "still old format" and alice.rejected == []
        bare: pycrdt.Doc[Any] = pycrdt.Doc()  # any client id, no nonce: what earlier versions sent
        bare.get("text:other", type=pycrdt.Text).insert(0, "bare")
        await alice.close()  # (her device key has one connection: her raw client's now)
        async with RawMember(relay.url, alice.identity, alice.space_bytes) as raw:
            seq = await raw.commit(raw.entry(Kind.DATA, bare.get_update()))
        await bob.wait_for_seq(seq)
        assert str(bob.text("other")) == "bare" and bob.rejected == []
    finally:
        for m in members:
            await m.close()


async def test_a_found_derivation_of_a_victims_client_id_is_rejected_also_after_a_reopen(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer who found a nonce deriving the victim's client id from the writer's own key (a
    search of ~2^53 hashes, stood in for here): the first-writer rule rejects it, on a device
    that followed the log and on one that reopened since (its checkpoint keeps the first writers)."""
    (alice_id, _, _), members = await make_members(relay.url, tmp_path, 3)
    alice, bob, carol = members
    try:
        bob.text("doc").insert(0, "hello")
        await settle(members)
        victim, found = bob.doc.client_id, b"\xfe" * NONCE_SIZE
        derive = client_ids.derive_client_id
        monkeypatch.setattr(client_ids, "derive_client_id",
                            lambda key, nonce: victim if nonce == found else derive(key, nonce))
        await alice.close()
        alice = members[0] = await encspaces.connect(relay.url, alice_id, bob.id, data_dir=tmp_path / "m0")
        async with RawMember(relay.url, carol.identity, carol.space_bytes) as raw:
            seq = await raw.commit(raw.entry(Kind.DATA, data_plaintext(found, forged_after(bob, " FORGED", 5))))
        bob.text("doc").insert(5, " world")
        await settle(members)
        for m in (alice, bob):
            assert str(m.text("doc")) == "hello world"
            assert [(r.seq, r.kind) for r in m.rejected] == [(seq, "foreign_client")]
            assert "first written under by another device" in m.rejected[0].reason
    finally:
        for m in members:
            await m.close()


async def test_a_device_that_joined_from_a_snapshot_knows_the_first_writers_before_it(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The snapshot carries who first wrote under each client id up to its base: a new device that
    starts from it rejects a found derivation of a victim's client id as the others do."""
    monkeypatch.setattr(snapshot_keeper, "GRANULARITY", 10)
    _, members = await make_members(relay.url, tmp_path, 3)
    alice, bob, carol = members
    try:
        await alice.set_policy(Policy(snapshot_entries=15))
        bob.text("doc").insert(0, "hello")
        for i in range(20):
            alice.map("m")["n"] = i
            await alice.sync()
        await snapshot_written(relay, alice)
        async with await newcomer(relay, alice, tmp_path / "fresh") as fresh:
            await fresh.wait_for_seq(alice.seq)
            assert fresh.snapshots.used is not None and fresh.snapshots.stripped_through > 0
            victim, found = bob.doc.client_id, b"\xfe" * NONCE_SIZE
            derive = client_ids.derive_client_id
            monkeypatch.setattr(client_ids, "derive_client_id",
                                lambda key, nonce: victim if nonce == found else derive(key, nonce))
            await carol.close()  # (her device key has one connection: her raw client's now)
            async with RawMember(relay.url, carol.identity, carol.space_bytes) as raw:
                seq = await raw.commit(raw.entry(Kind.DATA, data_plaintext(found, forged_after(bob, "!", 5))))
            await settle([alice, bob, fresh])
            for m in (alice, bob, fresh):
                assert str(m.text("doc")) == "hello"
                assert [(r.seq, r.kind) for r in m.rejected] == [(seq, "foreign_client")]
    finally:
        for m in members:
            await m.close()
