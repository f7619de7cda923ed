"""A lying relay over a real websocket: every lie is caught, named, and nothing of it applied.

The relay below is the real RelayServer with its frame hook overridden. It behaves honestly
until a test arms an attack; the next live frame (carrying one edit by Alice) is then
rewritten. Bob must fail with the attack's own error, keep the text he had, and refuse any
further sync or write with the same error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core import crypto
from encspaces.core.encoding import pack, unpack
from encspaces.core.entry import Entry, Kind, build_entry
from encspaces.core.head import SignedHead, next_head
from encspaces.core.membership import Role, SetRoleBody
from encspaces.core.messages import Entries, decode_message
from encspaces.core.verifier import LogVerifier, VerifiedEntry
from encspaces_relay.server import RelayServer

from .conftest import RelayHandle, wait_for

Attack = Callable[["LyingRelay", bytes, int, list[bytes], SignedHead], Sequence[bytes] | None]


class LyingRelay(RelayServer):
    attack: Attack | None = None
    held: list[tuple[int, list[bytes]]]
    # Whether it shows its (honest) checkpoint in welcomes: one that rewrites entries and shows the
    # checkpoint of the log it really holds is caught as a fork first (tests/sdk/test_witnessed_log.py).
    shows_checkpoints = True

    def checkpoint_for(self, space: bytes) -> bytes | None:
        return super().checkpoint_for(space) if self.shows_checkpoints else None

    def frames_for_entries(
        self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
    ) -> Sequence[bytes]:
        if self.attack is not None:
            frames = self.attack(self, space, first_seq, entries, head)
            if frames is not None:
                return frames
        return super().frames_for_entries(space, first_seq, entries, head)

    def signed_frame(self, space: bytes, first_seq: int, entries: list[bytes]) -> bytes:
        """A frame that chains from the honest head before ``first_seq``, validly re-signed."""
        return Entries(first_seq, entries, self.signed_head(space, first_seq, entries)).encode()

    def signed_head(self, space: bytes, first_seq: int, entries: list[bytes]) -> SignedHead:
        """The head of ``entries`` chained from the honest head before ``first_seq``, validly signed."""
        h = self.rooms[space].state.heads[first_seq - 1]
        for i, raw in enumerate(entries):
            h = next_head(h, first_seq + i, Entry.decode(raw).digest())
        return SignedHead.create(self.signing_key, space, first_seq + len(entries) - 1, h)


def reencode(
    entry: Entry, *, header: bytes | None = None, sig: bytes | None = None, body: bytes | None = None
) -> bytes:
    return pack([header or entry.header_bytes, entry.body_hash, sig or entry.signature,
                 entry.body if body is None else body])


def crafted_entry(identity: encspaces.Identity, space: encspaces.Space, *, kind: Kind = Kind.DATA, epoch: int = 1,
                  parent_seq: int | None = None, payload: bytes = b"\x00") -> bytes:
    """An entry signed by ``identity``, against ``space``'s verified head unless ``parent_seq`` says otherwise."""
    return build_entry(
        identity, space=space.space_bytes, author_seq=1, epoch=epoch, kind=kind,
        parent_seq=space.seq if parent_seq is None else parent_seq,
        parent_hash=space.head if parent_seq is None else crypto.ZERO_HASH,
        payload=payload, epoch_key=crypto.random_key() if kind.is_encrypted else None,
    ).raw


# --- the attacks: each rewrites the first live frame after arming ----------------------------


def tamper_ciphertext(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    e = Entry.decode(entries[-1])
    body = bytearray(e.body)
    body[-1] ^= 1
    return [r.signed_frame(space, first, [*entries[:-1], reencode(e, body=bytes(body))])]


def tamper_header(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    e = Entry.decode(entries[-1])
    items = unpack(e.header_bytes)
    items[8] += 1  # the author's timestamp
    return [r.signed_frame(space, first, [*entries[:-1], reencode(e, header=pack(items))])]


def forge_signature(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    e = Entry.decode(entries[-1])
    forger = encspaces.Identity.generate()
    sig = forger.sign(crypto.CTX_ENTRY_SIG, e.header_bytes + e.body_hash)
    return [r.signed_frame(space, first, [*entries[:-1], reencode(e, sig=sig)])]


def falsely_signed(head: SignedHead) -> SignedHead:
    sig = bytearray(head.signature)
    sig[0] ^= 1
    return SignedHead(head.space, head.seq, head.head, head.time_ms, head.signed_bytes, bytes(sig))


def bad_relay_signature(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    return [Entries(first, entries, falsely_signed(head)).encode()]


def batched(r: LyingRelay, head: SignedHead) -> list[SignedHead]:
    """``head`` signed again in a batch of four, beside heads of other spaces (index 1)."""
    decoys = [(crypto.hash_parts(b"decoy space", i), 7, crypto.hash_parts(b"decoy head", i)) for i in range(3)]
    return SignedHead.create_batch(r.signing_key, [decoys[0], (head.space, head.seq, head.head), *decoys[1:]])


def batch_proof_altered(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    mine = batched(r, head)[1]
    seal = mine.signature[:-1] + bytes([mine.signature[-1] ^ 1])
    return [Entries(first, entries, replace(mine, signature=seal)).encode()]


def batch_seal_of_another_head(r: LyingRelay, space: bytes, first: int, entries: list[bytes],
                               head: SignedHead) -> list[bytes]:
    heads = batched(r, head)
    return [Entries(first, entries, replace(heads[1], signature=heads[2].signature)).encode()]


def batch_head_of_another_space(r: LyingRelay, space: bytes, first: int, entries: list[bytes],
                                head: SignedHead) -> list[bytes]:
    return [Entries(first, entries, batched(r, head)[0]).encode()]


def broken_chain(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    wrong = SignedHead.create(r.signing_key, space, head.seq, crypto.hash_parts(b"wrong", head.head))
    return [Entries(first, entries, wrong).encode()]


def skip_a_seq(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    return [Entries(first + 1, entries, SignedHead.create(r.signing_key, space, head.seq + 1, head.head)).encode()]


def hold_then(combine: Callable[[list[bytes], list[bytes]], list[bytes]]) -> Attack:
    """Hold back the first armed frame; when the next arrives, send ``combine(first, second)``."""

    def attack(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
        if not r.held:
            r.held.append((first, entries))
            return []
        held_first, held_entries = r.held[0]
        return [r.signed_frame(space, held_first, combine(held_entries, entries))]

    return attack


def burst(size: int, falsely_signed_at: set[int]) -> Attack:
    """Hold live frames until ``size`` are held, then send them back to back (one broadcast, so
    they reach the device queued together), each under its own head; the heads at the indexes
    ``falsely_signed_at`` with a broken relay signature."""

    def attack(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
        r.held.append((first, entries))
        if len(r.held) < size:
            return []
        heads = [r.signed_head(space, f, e) for f, e in r.held]
        return [Entries(f, e, falsely_signed(h) if i in falsely_signed_at else h).encode()
                for i, ((f, e), h) in enumerate(zip(r.held, heads, strict=True))]

    return attack


def inject(make: Callable[[LyingRelay], bytes]) -> Attack:
    def attack(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
        return [r.signed_frame(space, first, [*entries, make(r)])]

    return attack


# --- more attacks, for claims of docs/PROTOCOL.md section 2 that had no attack test ------------


def head_for_another_space(r: LyingRelay, space: bytes, first: int, entries: list[bytes],
                           head: SignedHead) -> list[bytes]:
    other = crypto.hash_parts(b"another space", space)
    return [Entries(first, entries, SignedHead.create(r.signing_key, other, head.seq, head.head)).encode()]


def duplicate_inside(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    return [r.signed_frame(space, first, [*entries, entries[-1]])]


def strip_live(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    return [r.signed_frame(space, first, [*entries[:-1], Entry.decode(entries[-1]).strip()])]


def fork_at_verified(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    """The frame under a head re-signed at the seq the device verified last, over another hash."""
    lie = SignedHead.create(r.signing_key, space, first - 1, crypto.hash_parts(b"another history"))
    return [Entries(first, entries, lie).encode()]


# --- the harness ------------------------------------------------------------------------------


@pytest.fixture
async def lying(tmp_path: Path):  # type: ignore[no-untyped-def]
    handle = RelayHandle(tmp_path / "relay", LyingRelay)
    server = await handle.start()
    assert isinstance(server, LyingRelay)
    server.held = []
    alice_id, bob_id, carol_id = (encspaces.Identity.generate() for _ in range(3))
    alice = await encspaces.create_space(handle.url, alice_id, data_dir=tmp_path / "a")
    await alice.add_member(bob_id.public)
    await alice.add_member(carol_id.public)
    bob = await encspaces.connect(handle.url, bob_id, alice.id, data_dir=tmp_path / "b")
    alice.text("doc").insert(0, "honest text")
    await alice.sync()
    await wait_for(lambda: str(bob.text("doc")) == "honest text", what="bob sees the honest edit")
    try:
        yield server, alice, bob, carol_id
    finally:
        await alice.close()
        await bob.close()
        await handle.stop()


async def run_attack(lying, attack: Attack, edits: int = 1) -> tuple[encspaces.Space, str]:  # type: ignore[no-untyped-def]
    server, alice, bob, _ = lying
    before = str(bob.text("doc"))
    seq_before = bob.seq
    state = server.rooms[alice.space_bytes].state
    me = alice.identity.public.sign_key
    server.attack = attack
    for i in range(edits):
        target = state.author_seqs[me] + 1
        alice.text("doc").insert(0, f"edit {i} ")
        await wait_for(lambda t=target: state.author_seqs[me] >= t, what="the relay to sequence the edit")
    await wait_for(lambda: bob.error is not None, what="bob to detect the attack")
    assert str(bob.text("doc")) == before, "nothing of the lying frame may be applied"
    assert bob.seq == seq_before
    return bob, before


async def assert_stays_failed(bob: encspaces.Space, cls: type[errors.VerificationError]) -> None:
    assert isinstance(bob.error, cls), f"expected {cls.__name__}, got {type(bob.error).__name__}: {bob.error}"
    with pytest.raises(cls):
        await bob.sync()
    with pytest.raises(cls):
        bob.text("doc").insert(0, "x")


@pytest.mark.parametrize(
    ("attack", "error", "words"),
    [
        (tamper_ciphertext, errors.BodyDigestError, "body hash mismatch"),
        (tamper_header, errors.AuthorSignatureError, "signature does not verify"),
        (forge_signature, errors.AuthorSignatureError, "signature does not verify"),
        (bad_relay_signature, errors.RelaySignatureError, "relay's signature"),
        (broken_chain, errors.ChainError, "do not chain"),
        (skip_a_seq, errors.ChainError, "missing"),
        (head_for_another_space, errors.RelaySignatureError, "is for space"),
        (batch_proof_altered, errors.RelaySignatureError, "signature of its batch (head 1 of 4)"),
        (batch_seal_of_another_head, errors.RelaySignatureError, "signature of its batch (head 2 of 4)"),
        (batch_head_of_another_space, errors.RelaySignatureError, "is for space"),
        (duplicate_inside, errors.ReplayError, "replayed"),
        (strip_live, errors.MissingBodiesError, "without its body in the live stream"),
        (fork_at_verified, errors.ForkError, "we verified"),
    ],
)
async def test_rewritten_frame_is_caught(lying, attack: Attack, error: type[errors.VerificationError],  # type: ignore[no-untyped-def]
                                         words: str) -> None:
    bob, _ = await run_attack(lying, attack)
    await assert_stays_failed(bob, error)
    assert words in str(bob.error)


async def test_a_head_signed_in_a_batch_with_other_spaces_is_verified_and_applied(  # type: ignore[no-untyped-def]
        lying) -> None:
    """What a relay committing several spaces at once sends (docs/PROTOCOL.md, "Signed heads in
    batches"): the frame's head carries its inclusion proof under one signature of the batch."""
    server, alice, bob, _ = lying
    server.attack = lambda r, space, first, entries, head: [Entries(first, entries, batched(r, head)[1]).encode()]
    alice.text("doc").insert(0, "batched ")
    await wait_for(lambda: str(bob.text("doc")) == str(alice.text("doc")), what="bob to verify the batched head")
    assert bob.error is None and alice.error is None and bob.seq == alice.seq


@pytest.mark.parametrize(
    ("attack", "error", "words"),
    [
        (tamper_ciphertext, errors.BodyDigestError, "body hash mismatch"),
        (tamper_header, errors.AuthorSignatureError, "signature does not verify"),
        (forge_signature, errors.AuthorSignatureError, "signature does not verify"),
    ],
)
async def test_own_entry_sent_back_changed_is_caught_by_its_author(  # type: ignore[no-untyped-def]
        lying, attack: Attack, error: type[errors.VerificationError], words: str) -> None:
    """The author's device does not verify its own signature on the bytes it signed and still
    holds (docs/PROTOCOL.md, "Our own entries"); the relay sends Alice her edit back changed,
    and she fails with the error anyone's device gives for it, as Bob does."""
    _, alice, bob, _ = lying
    await run_attack(lying, attack)
    await wait_for(lambda: alice.error is not None, what="alice to detect the attack")
    for device in (alice, bob):
        await assert_stays_failed(device, error)
        assert words in str(device.error)
    assert alice.seq == bob.seq, "nothing of the lying frame is in her verified log either"


async def test_entry_by_non_member(lying) -> None:  # type: ignore[no-untyped-def]
    _, _, bob, _ = lying
    outsider = encspaces.Identity.generate()
    bob_space = bob
    bob, _ = await run_attack(lying, inject(lambda r: crafted_entry(outsider, bob_space)))
    await assert_stays_failed(bob, errors.MembershipError)
    assert outsider.member_id in str(bob.error)


async def test_a_burst_whose_newest_head_is_falsely_signed_fails_whole(lying) -> None:  # type: ignore[no-untyped-def]
    """Frames queued together are verified as one under the newest head (docs/PROTOCOL.md,
    "Frames queued together"): that head's false signature fails the whole burst, and none of
    its entries is applied, although the heads of the frames before it were honest."""
    bob, _ = await run_attack(lying, burst(3, {2}), edits=3)
    await assert_stays_failed(bob, errors.RelaySignatureError)
    assert "relay's signature" in str(bob.error)


async def test_a_burst_is_checked_under_its_newest_head_alone(lying) -> None:  # type: ignore[no-untyped-def]
    """The heads of the frames before the newest one in a queued burst are not checked: broken
    signatures there do not matter, as every entry is under the newest head's signature."""
    server, alice, bob, _ = lying
    state = server.rooms[alice.space_bytes].state
    me = alice.identity.public.sign_key
    server.attack = burst(3, {0, 1})
    for i in range(3):
        target = state.author_seqs[me] + 1
        alice.text("doc").insert(0, f"edit {i} ")
        await wait_for(lambda t=target: state.author_seqs[me] >= t, what="the relay to sequence the edit")
    await wait_for(lambda: str(bob.text("doc")) == str(alice.text("doc")), what="bob to verify the burst")
    assert bob.error is None and bob.seq == alice.seq


async def test_replayed_entry(lying) -> None:  # type: ignore[no-untyped-def]
    server, alice, _, _ = lying
    seq = server.rooms[alice.space_bytes].state.seq
    (replayed,) = await server.store.read_entries(alice.space_bytes, seq, seq, 1 << 20)  # Alice's last edit
    bob, _ = await run_attack(lying, inject(lambda r: replayed))
    await assert_stays_failed(bob, errors.ReplayError)
    assert "replayed" in str(bob.error)


async def test_swapped_entries_of_one_author(lying) -> None:  # type: ignore[no-untyped-def]
    bob, _ = await run_attack(lying, hold_then(lambda a, b: [*b, *a]), edits=2)
    await assert_stays_failed(bob, errors.ReorderError)


async def test_dropped_entry_resequenced(lying) -> None:  # type: ignore[no-untyped-def]
    bob, _ = await run_attack(lying, hold_then(lambda a, b: b), edits=2)
    await assert_stays_failed(bob, errors.AuthorSeqGapError)
    assert "dropped" in str(bob.error)


async def test_parent_in_the_future(lying) -> None:  # type: ignore[no-untyped-def]
    _, _, bob, carol_id = lying
    bob_space = bob

    def future_parent(r: LyingRelay) -> bytes:
        return crafted_entry(carol_id, bob_space, parent_seq=bob_space.seq + 50)

    bob, _ = await run_attack(lying, inject(future_parent))
    await assert_stays_failed(bob, errors.ParentError)
    assert "not below" in str(bob.error)


async def test_membership_change_by_a_non_admin(lying) -> None:  # type: ignore[no-untyped-def]
    _, _, bob, carol_id = lying
    bob_space = bob

    def promote_self(r: LyingRelay) -> bytes:
        body = SetRoleBody(carol_id.public.sign_key, Role.ADMIN).encode()
        return crafted_entry(carol_id, bob_space, kind=Kind.SET_ROLE, payload=body)

    bob, _ = await run_attack(lying, inject(promote_self))
    await assert_stays_failed(bob, errors.PermissionDeniedError)
    assert "writer may not change roles" in str(bob.error)


async def test_entry_under_another_epoch(lying) -> None:  # type: ignore[no-untyped-def]
    _, _, bob, carol_id = lying
    bob_space = bob

    def future_epoch(r: LyingRelay) -> bytes:
        return crafted_entry(carol_id, bob_space, epoch=2)

    bob, _ = await run_attack(lying, inject(future_epoch))
    await assert_stays_failed(bob, errors.EpochError)


async def test_a_device_does_not_verify_its_own_signature_on_what_it_sent(  # type: ignore[no-untyped-def]
        relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice alone in her space: her edits come back from the relay as she signed them, so her
    device checks the relay's heads on them but not her own signatures (docs/PROTOCOL.md, "Our
    own entries"); the tests above show a changed one is checked in full. (The relay, in this
    process too, checks each of them: only what the device's verifier checks is counted; the
    heads came in her acks first, and the same bytes are not checked twice.)"""
    alice_id = encspaces.Identity.generate()
    alice = await encspaces.create_space(relay.url, alice_id, data_dir=tmp_path / "a")
    try:
        await alice.sync()
        checked: list[tuple[bytes, bytes]] = []  # (key, context) verified by a device's verifier
        verifying, frames = [False], [0]
        real_verify, real_frame = crypto.verify, LogVerifier.verify_frame

        def verify(public_key: bytes, context: bytes, message: bytes, signature: bytes) -> bool:
            if verifying[0]:
                checked.append((public_key, context))
            return real_verify(public_key, context, message, signature)

        def verify_frame(self: LogVerifier, frame: Entries, *, live: bool = False) -> list[VerifiedEntry]:
            frames[0] += 1
            verifying[0] = True
            try:
                return real_frame(self, frame, live=live)
            finally:
                verifying[0] = False

        monkeypatch.setattr(crypto, "verify", verify)
        monkeypatch.setattr(LogVerifier, "verify_frame", verify_frame)
        seq = alice.seq
        for i in range(3):
            alice.text("doc").insert(0, f"edit {i} ")
            await alice.sync()
        assert alice.seq >= seq + 3 and alice.error is None and frames[0] >= 1
        assert not [key for key, context in checked if context == crypto.CTX_ENTRY_SIG]
    finally:
        await alice.close()


def append_garbage(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
    """An entry that does not decode after the real one (no digest to chain it: the head stays)."""
    return [Entries(first, [*entries, pack([b"\x00" * 8, b"\x01" * 32, b"\x02" * 64, b"\x03"])], head).encode()]


async def test_an_entry_that_does_not_decode(lying) -> None:  # type: ignore[no-untyped-def]
    _, _, bob, _ = lying
    seq = bob.seq
    bob, _ = await run_attack(lying, append_garbage)
    await assert_stays_failed(bob, errors.MalformedEntryError)
    assert f"seq {seq + 2}:" in str(bob.error)  # the frame is alice's edit at seq + 1, then this


async def test_an_entry_naming_another_space(lying) -> None:  # type: ignore[no-untyped-def]
    _, _, bob, carol_id = lying
    bob_space = bob

    def elsewhere(r: LyingRelay) -> bytes:
        return build_entry(carol_id, space=crypto.hash_parts(b"another space"), author_seq=1, epoch=1, kind=Kind.DATA,
                           parent_seq=bob_space.seq, parent_hash=bob_space.head, payload=b"\x00",
                           epoch_key=crypto.random_key()).raw

    bob, _ = await run_attack(lying, inject(elsewhere))
    await assert_stays_failed(bob, errors.SpaceMismatchError)


async def test_a_second_genesis(lying) -> None:  # type: ignore[no-untyped-def]
    _, alice, bob, _ = lying
    bob_space = bob
    bob, _ = await run_attack(lying, inject(lambda r: crafted_entry(alice.identity, bob_space, kind=Kind.GENESIS)))
    await assert_stays_failed(bob, errors.MembershipChangeError)
    assert "genesis" in str(bob.error)


async def test_an_encrypted_entry_by_a_reader(lying) -> None:  # type: ignore[no-untyped-def]
    _, alice, bob, _ = lying
    reader = encspaces.Identity.generate()
    await alice.add_member(reader.public, "reader")
    await bob.wait_for_seq(alice.seq)
    bob_space = bob
    bob, _ = await run_attack(lying, inject(lambda r: crafted_entry(reader, bob_space)))
    await assert_stays_failed(bob, errors.PermissionDeniedError)
    assert reader.member_id[:12] in str(bob.error) and "reader may not write" in str(bob.error)


def recorder(into: list[bytes]) -> Attack:
    """Honest, keeping every frame it sends."""

    def attack(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
        frames = list(RelayServer.frames_for_entries(r, space, first, entries, head))
        into.extend(frames)
        return frames

    return attack


def replaying(frame: bytes) -> Attack:
    def attack(r: LyingRelay, space: bytes, first: int, entries: list[bytes], head: SignedHead) -> list[bytes]:
        return [frame]

    return attack


async def frames_of_an_edit(lying, text: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The frames the relay sends (honestly) for one edit of Alice's, once Bob verified it."""
    server, alice, bob, _ = lying
    sent: list[bytes] = []
    server.attack = recorder(sent)
    alice.text("doc").insert(0, text)
    await alice.sync()
    await bob.wait_for_seq(alice.seq)
    return sent


async def test_an_old_frame_replayed_after_a_key_rotation(lying) -> None:  # type: ignore[no-untyped-def]
    """A frame the relay really signed, from before a rotation, sent again in place of a new
    one: its head is below what Bob verified, a rollback, with the replayed head as evidence."""
    _, alice, bob, _ = lying
    old = (await frames_of_an_edit(lying, "before the rotation. "))[0]
    await alice.rotate_key()
    await bob.wait_for_seq(alice.seq)
    assert bob.state.epoch == 2
    bob, _ = await run_attack(lying, replaying(old))
    await assert_stays_failed(bob, errors.RollbackError)
    message = decode_message(old)
    assert isinstance(message, Entries)
    replayed = message.head
    assert replayed.encode() in [unpack(e) for e in bob.error.evidence]  # type: ignore[union-attr]
    assert f"ends at seq {replayed.seq}" in str(bob.error)


async def test_the_last_frame_sent_again(lying) -> None:  # type: ignore[no-untyped-def]
    """Bob's last frame, sent again exactly (its head is the one he verified): entries repeated."""
    last = (await frames_of_an_edit(lying, "last. "))[-1]
    bob, _ = await run_attack(lying, replaying(last))
    await assert_stays_failed(bob, errors.ChainError)
    assert "entries repeated" in str(bob.error)


async def test_bodies_stripped_from_a_catch_up_no_snapshot_covers(lying, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A new device's catch-up from seq 1 with a data entry's body left out, and no snapshot to
    cover it: its signature checks (the body is not in the digest), but once caught up the
    device has a hole it cannot fill: MissingBodiesError. The members are not affected."""
    server, alice, bob, carol_id = lying

    def strip_in_catch_up(r: LyingRelay, space: bytes, first: int, entries: list[bytes],
                          head: SignedHead) -> list[bytes] | None:
        data = [i for i, raw in enumerate(entries) if Entry.decode(raw).header.kind is Kind.DATA]
        if first != 1 or not data:
            return None  # the live frames of alice and bob: left alone
        r.attack = None
        i = data[0]
        return [Entries(first, [*entries[:i], Entry.decode(entries[i]).strip(), *entries[i + 1:]], head).encode()]

    server.attack = strip_in_catch_up
    try:
        carol = await encspaces.connect(alice.url, carol_id, alice.id, data_dir=tmp_path / "c")
    except errors.MissingBodiesError as exc:
        error: BaseException = exc
    else:
        await wait_for(lambda: carol.error is not None, what="carol to see the hole")
        error = carol.error
        await carol.close()
    assert isinstance(error, errors.MissingBodiesError)
    assert "without their bodies" in str(error)
    assert alice.error is None and bob.error is None
