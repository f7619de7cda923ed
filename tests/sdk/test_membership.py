"""Roles, removal with key rotation, conflicting admins, invites, and the key lifecycle."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

import encspaces
from encspaces import errors
from encspaces.core.entry import Entry, Kind, open_body
from encspaces.core.invites import InviteLink
from encspaces.core.membership import AddMemberBody, GenesisBody, Policy, RekeyBody, Role, SetRoleBody
from encspaces.core.session import ClientSession, Notice, Send, SessionState, Verified
from encspaces.core.verifier import LogVerifier, VerifiedEntry
from encspaces.store import LocalStore
from encspaces_relay.room import Submission
from encspaces_relay.store import DB_FILE
from tests.support import InterceptingRelay, RawMember, RelayFactory, make_members, swallow

from .conftest import RelayHandle, settle, wait_for


async def space_with(relay: RelayHandle, tmp_path: Path, roles: list[str]) -> list[encspaces.Space]:
    """A space created by an admin, plus one member per role in ``roles``, all connected."""
    return (await make_members(relay.url, tmp_path, len(roles) + 1, roles=roles))[1]


def sealed_values(entry: Entry) -> list[bytes]:
    """Every sealed key a control entry carries, whoever it is sealed to."""
    kind = entry.header.kind
    if kind is Kind.GENESIS:
        return [GenesisBody.decode(entry.body).sealed_key]
    if kind is Kind.ADD_MEMBER:
        return [s for _, s in AddMemberBody.decode(entry.body).sealed_keys]
    if kind in (Kind.ROTATE, Kind.REMOVE_MEMBER):
        return [s for _, s in RekeyBody.decode(entry.body, kind.value).grants]
    return []


async def close_all(spaces: list[encspaces.Space]) -> None:
    for s in spaces:
        await s.close()


async def test_a_reader_cannot_write(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["reader"])
    admin, reader = spaces
    try:
        admin.text("doc").insert(0, "read me")
        await admin.sync()
        await reader.wait_for_seq(admin.seq)
        assert str(reader.text("doc")) == "read me"
        with pytest.raises(errors.NotPermittedError, match="reader may not write"):
            reader.text("doc").insert(0, "x")
        # Bypassing the SDK's guard: the relay refuses the entry, it never reaches the log.
        async with RawMember(relay.url, reader.identity, reader.space_bytes) as raw:
            with pytest.raises(errors.RelayError) as refused:
                await raw.submit(raw.entry(Kind.DATA, b"\x00"))
        assert refused.value.code == "rejected"
        assert "reader may not write" in str(refused.value)
        assert all(e.header.author != reader.identity.public.sign_key for _, e in relay.entries())
    finally:
        await close_all(spaces)


async def test_a_removed_member_reopening_its_copy_gets_the_typed_error(relay: RelayHandle, tmp_path: Path) -> None:
    """Bob's own copy holds his removal: reopening it raises MembershipRevokedError naming the space,
    his device and the removal's seq, and leaves nothing open. Before, connect returned a space
    that had already failed with it."""
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        admin.text("doc").insert(0, "before. ")
        await settle(spaces)
        await admin.remove_member(bob.identity.member_id)
        removal_seq = admin.seq
        await wait_for(lambda: bob.error is not None, what="bob to verify his removal")
        assert isinstance(bob.error, errors.MembershipRevokedError), repr(bob.error)
    finally:
        await close_all(spaces)
    with pytest.raises(errors.MembershipRevokedError) as revoked:
        await encspaces.connect(relay.url, bob.identity, admin.id, data_dir=tmp_path / "m1")
    error = revoked.value
    assert (error.space, error.device, error.seq) == (admin.id, bob.identity.member_id, removal_seq)
    assert f"this device's member was removed from space {admin.id} at seq {removal_seq}" in str(error)
    assert bob.identity.member_id in str(error)
    view = await encspaces.open_local(bob.identity, admin.id, data_dir=tmp_path / "m1")  # not left locked
    assert str(view.text("doc")) == "before. "


async def test_removal_rotates_the_key_and_locks_the_member_out(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer", "writer"])
    admin, bob, carol = spaces
    try:
        admin.text("doc").insert(0, "before. ")
        await settle(spaces)
        bob_keys = dict(bob.epoch_keys)  # everything bob ever held
        assert admin.epoch == 1
        await admin.remove_member(bob.identity.member_id)
        removal_seq = admin.seq
        assert admin.epoch == 2
        await wait_for(lambda: bob.error is not None, what="bob to learn he was removed")
        assert isinstance(bob.error, errors.MembershipRevokedError | errors.RelayError)
        assert set(admin.members) == {admin.identity.member_id, carol.identity.member_id}
        admin.text("doc").insert(len(admin.text("doc")), "after: the secret plan")
        await settle([admin, carol])
        assert "secret plan" in str(carol.text("doc"))
        assert carol.epoch == 2

        # Bob reconnects with his keys: the relay refuses him.
        with pytest.raises(errors.RelayError, match="not a member"):
            await encspaces.connect(relay.url, bob.identity, admin.id, data_dir=tmp_path / "bob-again")
        # Bob reads the relay's database with every key he ever had: nothing after his removal opens.
        after = [(seq, e) for seq, e in relay.entries() if seq > removal_seq and e.header.kind is Kind.DATA]
        assert after, "there are entries after the removal"
        for _, entry in after:
            assert entry.header.epoch == 2
            assert all(open_body(entry, key) is None for key in bob_keys.values())
        assert b"secret plan" not in (relay.data_dir / DB_FILE).read_bytes()
    finally:
        await close_all(spaces)


async def test_unsent_edits_are_reissued_under_the_new_epoch(make_relay: RelayFactory, tmp_path: Path) -> None:
    relay = await make_relay(InterceptingRelay)
    server = relay.server
    assert isinstance(server, InterceptingRelay)
    spaces = await space_with(relay, tmp_path, ["writer", "writer"])
    admin, bob, carol = spaces
    try:
        mine, lost = carol.identity.public.sign_key, list[Submission]()
        server.intercept = swallow(mine, lost)  # carol's edit reaches the relay, which drops it unanswered
        carol.text("doc").insert(0, "carol typed this under epoch 1")
        await wait_for(lambda: len(lost) == 1, "the relay to drop carol's entry")
        assert [e.header.epoch for e in lost[0].entries] == [1] and carol.unsent == 1
        server.intercept = None
        await admin.remove_member(bob.identity.member_id)
        await carol.wait_for_seq(admin.seq)  # carol saw the rotation: her waiting entry is re-issued, sent again
        await carol.sync(timeout=30)  # (never sent again, it would wait for ever)
        await admin.wait_for_seq(carol.seq)
        assert str(admin.text("doc")) == "carol typed this under epoch 1"
        assert [e.header.epoch for _, e in relay.entries() if e.header.author == mine] == [2]
    finally:
        await close_all(spaces)


async def test_last_admin_cannot_leave_or_be_demoted(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        with pytest.raises(errors.NotPermittedError, match="last admin"):
            await admin.remove_member(admin.identity.member_id)
        with pytest.raises(errors.NotPermittedError, match="last admin"):
            await admin.set_role(admin.identity.member_id, "writer")
        await admin.set_role(bob.identity.member_id, "admin")
        await admin.set_role(admin.identity.member_id, "writer")  # now allowed: bob is an admin
        await bob.wait_for_seq(admin.seq)
        assert bob.members[admin.identity.member_id].role is Role.WRITER
        assert bob.members[bob.identity.member_id].role is Role.ADMIN
        with pytest.raises(errors.NotPermittedError, match="only an admin"):
            await admin.rotate_key()
    finally:
        await close_all(spaces)


async def test_forged_membership_change_by_a_non_admin_is_refused(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        forged = SetRoleBody(bob.identity.public.sign_key, Role.ADMIN).encode()
        async with RawMember(relay.url, bob.identity, bob.space_bytes) as raw:
            with pytest.raises(errors.RelayError) as refused:
                await raw.submit(raw.entry(Kind.SET_ROLE, forged))
        assert "writer may not change roles" in str(refused.value)
        assert admin.members[bob.identity.member_id].role is Role.WRITER
    finally:
        await close_all(spaces)


async def test_concurrent_admins_removing_each_other_resolve_by_log_order(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["admin", "writer"])
    alice, dave, carol = spaces
    try:
        results = await asyncio.gather(
            alice.remove_member(dave.identity.member_id),
            dave.remove_member(alice.identity.member_id),
            return_exceptions=True,
        )
        winners = [s for s, r in zip((alice, dave), results, strict=True) if r is None]
        assert len(winners) == 1, results
        winner = winners[0]
        loser = dave if winner is alice else alice
        await carol.wait_for_seq(winner.seq)
        assert set(carol.members) == {winner.identity.member_id, carol.identity.member_id}
        assert set(winner.members) == set(carol.members)
        assert carol.epoch == winner.epoch == 2
        await wait_for(lambda: loser.error is not None, what="the loser to learn it was removed")
    finally:
        await close_all(spaces)


async def test_invite_links(relay: RelayHandle, tmp_path: Path) -> None:
    admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "admin")
    try:
        admin.text("doc").insert(0, "history before the invite")
        await admin.sync()
        link = await admin.create_invite(role="writer", uses=1, expires_in=3600, history=True)
        assert link.startswith("esinv1.") and len(admin.invites) == 1
        newcomer = encspaces.Identity.generate()
        joined = await encspaces.join(link, newcomer, data_dir=tmp_path / "new")
        assert str(joined.text("doc")) == "history before the invite"
        joined.text("doc").insert(0, "hello! ")
        await joined.sync()
        await admin.wait_for_seq(joined.seq)
        assert admin.members[newcomer.member_id].role is Role.WRITER
        assert str(admin.text("doc")) == "hello! history before the invite"
        assert admin.invites == []  # used up
        await joined.close()

        with pytest.raises(errors.RelayError, match="used up"):
            await encspaces.join(link, encspaces.Identity.generate(), data_dir=tmp_path / "second")
        revoked = await admin.create_invite(uses=5)
        await admin.revoke_invite(admin.invites[0].id)
        with pytest.raises(errors.RelayError, match="revoked"):
            await encspaces.join(revoked, encspaces.Identity.generate(), data_dir=tmp_path / "third")
        expired = await admin.create_invite(expires_in=0.001)
        await asyncio.sleep(0.05)
        with pytest.raises(errors.RelayError, match=r"expired|revoked"):
            await encspaces.join(expired, encspaces.Identity.generate(), data_dir=tmp_path / "fourth")
        # An expired invite would still receive every new key: the admin's client revokes it.
        expired_key = encspaces.core.invites.InviteLink.parse(expired).secret.invite_key
        admin.text("doc").insert(0, ".")  # activity: the admin's client looks after its invites
        await admin.sync()
        await wait_for(lambda: admin.state.invites[expired_key].revoked, what="auto-revocation")
        # The relay saw every invite entry and never the secret.
        secrets = [encspaces.core.invites.InviteLink.parse(x).secret.secret for x in (link, revoked, expired)]
        stored = b"".join(p.read_bytes() for p in relay.data_dir.iterdir() if p.is_file())
        assert not any(secret in stored for secret in secrets)
    finally:
        await admin.close()


async def test_policy_rotates_and_retention_forgets_keys(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        await admin.set_policy(Policy(rotate_entries=3, retain_epochs=0))
        first_key = bob.epoch_keys[1]
        for i in range(8):
            bob.text("doc").insert(0, f"{i} ")
            await bob.sync()
            await admin.wait_for_seq(bob.seq)
        await wait_for(lambda: admin.epoch >= 3, what="the admin's client to rotate by itself")
        await bob.wait_for_seq(admin.seq)
        assert bob.epoch == admin.epoch
        assert set(bob.epoch_keys) == {bob.epoch}, "only the current key is kept"
        old_entry = next(e for _, e in relay.entries() if e.header.kind is Kind.DATA and e.header.epoch == 1)
        data_dir = tmp_path / "m1"
        await bob.close()
        on_disk = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
        assert first_key not in on_disk, "the forgotten key is gone from the device's files"
        # Reopened from disk, the device holds no key that opens the old entry.
        again = await encspaces.connect(relay.url, bob.identity, admin.id, data_dir=data_dir)
        try:
            assert 1 not in again.epoch_keys
            assert all(open_body(old_entry, k) is None for k in again.epoch_keys.values())
            recovered = set(again.epoch_keys.values())
            assert "7 " in str(again.text("doc"))  # the current state is still there: nothing re-encrypted
        finally:
            await again.close()
        # Nor can anyone holding the whole device, identity file included, open a sealed copy
        # of an old key from the stored log: those were blanked.
        async with await LocalStore.open(data_dir, again.space_bytes.hex()) as store:
            stored = await store.load_log()
        for _, raw, _ in stored:
            for sealed in sealed_values(Entry.decode(raw, local=True)):
                key = again.identity.open_sealed(sealed)
                if key is not None:
                    recovered.add(key)
        assert first_key not in recovered
        assert all(open_body(old_entry, k) is None for k in recovered)
    finally:
        await admin.close()


async def test_invite_without_history_starts_from_a_snapshot(relay: RelayHandle, tmp_path: Path) -> None:
    admin = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "admin")
    witness_id = encspaces.Identity.generate()  # another member, who checks and attests the admin's snapshot
    await admin.add_member(witness_id.public)
    witness = await encspaces.connect(relay.url, witness_id, admin.id, data_dir=tmp_path / "witness")
    try:
        admin.text("doc").insert(0, "old news")
        await admin.sync()
        await admin.rotate_key()  # the newcomer will hold only the key of epoch 2
        admin.text("doc").insert(0, "current: ")
        await admin.sync()
        link = await admin.create_invite(history=False)
        assert relay.server is not None
        room = relay.server.rooms[admin.space_bytes]
        await wait_for(lambda: room.state.agreed_snapshot() is not None, what="the witness to attest the snapshot")
        joined = await encspaces.join(link, encspaces.Identity.generate(), data_dir=tmp_path / "new")
        try:
            assert set(joined.epoch_keys) == {2}
            assert str(joined.text("doc")) == "current: old news"  # from the snapshot under epoch 2
            assert joined.snapshots.used is not None
            with pytest.raises(errors.EncspacesError, match=r"not on this device|never given"):
                await joined.at(3)
        finally:
            await joined.close()
    finally:
        await witness.close()
        await admin.close()


async def test_racing_admins_do_not_break_each_other(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["admin", "writer"])
    alice, dave, carol = spaces
    try:
        results = await asyncio.gather(
            alice.set_role(carol.identity.member_id, "reader"),
            dave.set_role(carol.identity.member_id, "reader"),
            return_exceptions=True,
        )
        refused = [r for r in results if r is not None]
        assert len(refused) == 1 and isinstance(refused[0], errors.NotPermittedError), results
        assert "already has role reader" in str(refused[0])
        for admin in (alice, dave):  # the loser's space carries on
            assert admin.error is None
            admin.text("doc").insert(0, "still fine. ")
            await admin.sync()
        await settle([alice, dave])
        assert alice.members[carol.identity.member_id].role is Role.READER
        assert str(alice.text("doc")) == str(dave.text("doc")) == "still fine. still fine. "
    finally:
        await close_all(spaces)


async def test_membership_change_events(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        events = bob.membership_changes()
        newcomer = encspaces.Identity.generate()
        await admin.add_member(newcomer.public, role="reader")
        await admin.set_role(newcomer.member_id, "writer")
        await admin.remove_member(newcomer.member_id)
        seen = [await asyncio.wait_for(events.__anext__(), 10) for _ in range(3)]
        assert [(e.member, e.role, e.by) for e in seen] == [
            (newcomer.member_id, Role.READER, admin.identity.member_id),
            (newcomer.member_id, Role.WRITER, admin.identity.member_id),
            (newcomer.member_id, None, admin.identity.member_id),
        ]
        assert seen[0].seq < seen[1].seq < seen[2].seq
    finally:
        await close_all(spaces)


async def test_an_entry_under_an_old_epoch_after_a_rotation_is_refused(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        old_key = bob.epoch_keys[1]
        await admin.rotate_key()
        await bob.wait_for_seq(admin.seq)
        assert bob.epoch == 2
        seq = admin.seq
        # Bob's client, bypassing the SDK, submits an entry under epoch 1: the relay refuses it
        # without closing (stale_epoch), and nothing reaches the log.
        async with RawMember(relay.url, bob.identity, bob.space_bytes) as raw:
            notice = await raw.submit(raw.entry(Kind.DATA, b"\x00", epoch=1, epoch_key=old_key))
        assert isinstance(notice, Notice) and notice.code == "stale_epoch"
        bob.text("doc").insert(0, "after the rotation")
        await bob.sync()
        assert bob.error is None
        await admin.wait_for_seq(bob.seq)
        assert str(admin.text("doc")) == "after the rotation"
        assert [e.header.epoch for s, e in relay.entries() if s > seq] == [2]
    finally:
        await close_all(spaces)


async def test_a_removed_member_can_come_back_with_an_invite(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        await admin.remove_member(bob.identity.member_id)
        await wait_for(lambda: bob.error is not None, what="bob to learn he was removed")
        link = await admin.create_invite(role="reader")
        back = await encspaces.join(link, bob.identity, data_dir=tmp_path / "bob-again")
        try:
            assert back.error is None
            assert back.members[bob.identity.member_id].role is Role.READER
            assert back.epoch == admin.epoch
        finally:
            await back.close()
    finally:
        await close_all(spaces)


async def test_time_based_retention_applies_without_activity(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        await admin.set_policy(Policy(retain_seconds=3))
        await admin.rotate_key()
        await bob.wait_for_seq(admin.seq)
        assert 1 in bob.epoch_keys  # epoch 1 ended just now: kept for three more seconds
        # Nothing else happens in the space: the clock alone retires epoch 1 on every device.
        await wait_for(lambda: 1 not in bob.epoch_keys and 1 not in admin.epoch_keys,
                       what="epoch 1's key to be forgotten")
        assert 1 in bob.forgotten_epochs
    finally:
        await close_all(spaces)


async def test_removal_with_open_invites_succeeds_in_one_call(relay: RelayHandle, tmp_path: Path) -> None:
    """The new key goes to everyone who stays and to no invite the same call revokes."""
    spaces = await space_with(relay, tmp_path, ["writer", "writer"])
    admin, bob, carol = spaces
    try:
        await admin.create_invite(uses=3)
        await admin.create_invite(uses=1, history=True)
        epoch = admin.epoch
        await admin.remove_member(bob.identity.member_id)
        assert bob.identity.member_id not in admin.members
        assert admin.invites == [] and admin.epoch == epoch + 1
        entries = [e for _, e in relay.entries()]
        assert [e.header.kind for e in entries].count(Kind.REVOKE_INVITE) == 2
        assert not any(e.header.kind is Kind.ROTATE for e in entries)  # one rotation: the removal's
        removal = next(e for e in entries if e.header.kind is Kind.REMOVE_MEMBER)
        granted = {r for r, _ in RekeyBody.decode(removal.body, Kind.REMOVE_MEMBER.value).grants}
        assert granted == {admin.identity.public.sign_key, carol.identity.public.sign_key}
        await carol.wait_for_seq(admin.seq)
        assert carol.epoch == admin.epoch and carol.error is None
    finally:
        await close_all(spaces)


def invite_entries(relay: RelayHandle) -> list[Entry]:
    return [e for _, e in relay.entries() if e.header.kind is Kind.INVITE]


async def test_an_admin_action_that_times_out_offline_is_never_published(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        admin.text("doc").insert(0, "before. ")
        await settle(spaces)
        await relay.stop()
        await wait_for(lambda: not admin.connected, what="the admin to notice the relay is down")
        with pytest.raises(errors.OperationTimeoutError, match="withdrawn") as caught:
            await admin.create_invite(timeout=0.2)
        assert isinstance(caught.value, TimeoutError)
        # Cancelled from outside (asyncio.wait_for, a request handler going away): withdrawn too.
        task = asyncio.create_task(admin.set_role(bob.identity.member_id, "reader"))
        await wait_for(lambda: admin.unsent > 0, what="the role change to be queued")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert admin.unsent == 0
        admin.text("doc").insert(0, "after. ")  # a later entry of the same device
        await admin.close()  # the withdrawal is durable: the reopened outbox holds only the edit
        await relay.start()
        admin = spaces[0] = await encspaces.connect(relay.url, admin.identity, bob.id, data_dir=tmp_path / "m0")
        await settle(spaces)
        assert str(bob.text("doc")) == "after. before. "  # no author_seq gap: the edit verified
        assert invite_entries(relay) == [] and bob.invites == [] and admin.invites == []
        assert bob.members[bob.identity.member_id].role is Role.WRITER
        assert admin.error is None and bob.error is None
    finally:
        await close_all(spaces)


async def test_an_admin_action_that_times_out_after_submission_says_it_may_take_effect(
    relay: RelayHandle, tmp_path: Path
) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        assert relay.server is not None
        gate = asyncio.Event()
        room = next(iter(relay.server.rooms.values()))
        commit = room._commit

        async def held(batch: list[Any]) -> None:
            await gate.wait()
            await commit(batch)

        room._commit = held  # type: ignore[method-assign]
        with pytest.raises(errors.OperationTimeoutError, match="submitted; it may still take effect"):
            await admin.create_invite(timeout=0.2)
        gate.set()
        await settle(spaces)
        assert len(invite_entries(relay)) == 1 and len(bob.invites) == 1  # the log decided
    finally:
        await close_all(spaces)


async def test_revoking_an_invite_cuts_off_its_connected_holder(relay: RelayHandle, tmp_path: Path) -> None:
    """A leaked link's holder, let in by the invite and reading without ever joining, is closed
    by the relay when the revocation is committed and cannot decrypt anything written after it."""
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        link = InviteLink.parse(await admin.create_invite(uses=2, history=True))
        admin.text("doc").insert(0, "before the revocation")
        await settle(spaces)
        holder = encspaces.Identity.generate()
        verifier = LogVerifier(link.space, holder)
        verifier.invite_secrets[link.secret.invite_key] = link.secret
        session = ClientSession(holder, verifier, None, link.secret)
        read: list[VerifiedEntry] = []
        async with ws_connect(relay.url, compression=None) as ws:

            async def run() -> None:
                async for message in ws:
                    assert isinstance(message, bytes)
                    for event in session.receive(message, int(time.time() * 1000)):
                        if isinstance(event, Send):
                            await ws.send(event.data)
                        elif isinstance(event, Verified):
                            read.extend(event.entries)

            task = asyncio.create_task(run())
            await wait_for(lambda: session.state is SessionState.LIVE and verifier.seq == admin.seq,
                           what="the holder to catch up")
            assert any(r.kind is Kind.DATA and r.plaintext for r in read)  # the link did give it the key
            revoked_at = admin.seq + 1
            epoch = admin.epoch
            await admin.revoke_invite(str(link))
            assert admin.epoch == epoch + 1  # the holder held the current key: a new epoch
            bob.text("doc").insert(0, "written after. ")
            await bob.sync()
            await wait_for(lambda: task.done() or verifier.seq >= bob.seq, what="the holder to be closed")
            assert task.done(), "the holder is still connected after the revocation"
            with pytest.raises(errors.RelayError, match="revoked") as caught:
                await task
            assert caught.value.code == "bad_invite"
            assert ws.close_code == 1008 and ws.close_reason == "bad_invite"
        assert not [r for r in read if r.seq >= revoked_at and r.plaintext is not None]
        # And had it stayed (a relay that does not close it): no key after the revocation is sealed to it.
        rotation = next(e for s, e in relay.entries() if s > revoked_at and e.header.kind is Kind.ROTATE)
        granted = {r for r, _ in RekeyBody.decode(rotation.body, Kind.ROTATE.value).grants}
        assert link.secret.invite_key not in granted and rotation.header.epoch == epoch
        written = next(e for s, e in relay.entries() if s > revoked_at and e.header.kind is Kind.DATA)
        assert written.header.epoch == epoch + 1 and epoch + 1 not in verifier.epoch_keys
        # Refused from now on.
        with pytest.raises(errors.RelayError, match="revoked"):
            await encspaces.join(str(link), holder, data_dir=tmp_path / "holder")
    finally:
        await close_all(spaces)


# A space's client runs its key policy's plan only when it could ask for something: while it
# holds a key of an epoch before the current one, or is an admin (``Space._maintain``). Each
# of those, and the policy itself, arriving after the fact must still set it off.


async def test_retention_policy_arriving_later_makes_a_member_forget_old_keys(
        relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        await admin.rotate_key()
        await bob.wait_for_seq(admin.seq)
        bob.text("doc").insert(0, "x")
        await bob.sync()
        assert 1 in bob.epoch_keys, "no retention policy yet: the old key is kept"
        await admin.set_policy(Policy(retain_epochs=0))  # the policy alone changes the answer
        await wait_for(lambda: 1 not in bob.epoch_keys, what="bob's client to forget epoch 1's key")
        assert 1 in bob.forgotten_epochs and bob.epoch in bob.epoch_keys
    finally:
        await close_all(spaces)


async def test_a_member_made_admin_rotates_by_policy(relay: RelayHandle, tmp_path: Path) -> None:
    spaces = await space_with(relay, tmp_path, ["writer"])
    admin, bob = spaces
    try:
        await admin.set_policy(Policy(rotate_entries=6))
        await admin.set_role(bob.identity.member_id, Role.ADMIN)
        await bob.wait_for_seq(admin.seq)
        await admin.close()  # only bob's client can rotate from here
        epoch = bob.epoch
        for i in range(8):
            bob.text("doc").insert(0, f"{i} ")
            await bob.sync()
        await wait_for(lambda: bob.epoch > epoch, what="the new admin's client to rotate by itself")
        rotations = [e for _, e in relay.entries() if e.header.kind is Kind.ROTATE]
        assert [e.header.author for e in rotations] == [bob.identity.public.sign_key]
    finally:
        await close_all(spaces)
