"""Stripped entries from the relay: their signatures wait for an agreed snapshot to vouch for them.

A stripped entry (no body) at or before the base of an agreed snapshot, whose own entry the
verifier checked, is settled without its author signature being checked: the snapshot's signed
parent hash commits to it. Until then it is ``unpinned``; ``settle_unpinned`` (catch-up ended)
checks the signature of whatever is left. Everything else is checked as it arrives.
"""

from __future__ import annotations

import pytest

from encspaces.core import crypto
from encspaces.core.attestation import AttestBody
from encspaces.core.encoding import pack
from encspaces.core.entry import Entry, Kind, build_entry
from encspaces.core.messages import Entries
from encspaces.core.verifier import LogVerifier
from encspaces.errors import AuthorSignatureError, ChainError, ParentError

from .fakes import FakeSpace


def with_snapshot(fake: FakeSpace, *, writes: int = 6, attest: bool = True) -> tuple[int, int]:
    """Bob writes, Alice snapshots the state at the last write, Bob attests it: (snapshot seq, base)."""
    for i in range(writes):
        fake.write(fake.bob, f"edit {i}".encode())
    base = fake.seq
    snap = build_entry(fake.alice, space=fake.space, author_seq=fake._take(fake.alice), epoch=1, kind=Kind.SNAPSHOT,
                       parent_seq=base, parent_hash=fake.heads[base], payload=b"state", epoch_key=fake.epoch_key)
    seq = fake.sequence(snap)
    if attest:
        fake.write(fake.bob, AttestBody(seq, bytes(32), True).encode(), kind=Kind.ATTEST)
    return seq, base


def stripped(fake: FakeSpace, through: int) -> list[bytes]:
    """The log as a fast join gets it: encrypted bodies through ``through`` dropped."""
    out = []
    for seq, raw in enumerate(fake.raws, 1):
        entry = Entry.decode(raw)
        out.append(entry.strip() if seq <= through and entry.header.kind.is_encrypted else raw)
    return out


def forge_signature(raw: bytes) -> bytes:
    entry = Entry.decode(raw)
    signature = bytes(64) if entry.signature != bytes(64) else bytes([1]) * 64
    return pack([entry.header_bytes, entry.body_hash, signature, None if entry.stripped else entry.body])


def counting_checks(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    checked: list[int | None] = []
    original = Entry.check_signature

    def check(self: Entry, seq: int | None = None) -> None:
        checked.append(seq)
        original(self, seq)

    monkeypatch.setattr(Entry, "check_signature", check)
    return checked


def test_an_agreed_snapshot_settles_the_stripped_entries_it_covers(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSpace()
    snapshot_seq, base = with_snapshot(fake)
    raws = stripped(fake, base)
    checked = counting_checks(monkeypatch)
    v = fake.verifier(fake.carol)
    v.verify_frame(fake.frame_of(1, raws))
    assert v.unpinned == {} and v.seq == fake.seq
    expected = [seq for seq, raw in enumerate(raws, 1) if not Entry.decode(raw).stripped]
    assert checked == expected and snapshot_seq in checked and base not in checked


def test_entries_stay_unpinned_until_the_snapshot_is_agreed() -> None:
    fake = FakeSpace()
    snapshot_seq, base = with_snapshot(fake)
    raws = stripped(fake, base)
    v = fake.verifier(fake.carol)
    v.verify_frame(fake.frame_of(1, raws[:base]))
    unpinned = [seq for seq, raw in enumerate(raws[:base], 1) if Entry.decode(raw).stripped]
    assert list(v.unpinned) == unpinned and v.unpinned_from == unpinned[0]
    v.verify_frame(fake.frame_of(base + 1, raws[base:snapshot_seq]))  # the snapshot: pending
    assert list(v.unpinned) == unpinned
    v.verify_frame(fake.frame_of(snapshot_seq + 1, raws[snapshot_seq:]))  # its attestation: agreed
    assert v.unpinned == {} and v.unpinned_from is None


def test_stripped_entries_after_the_snapshot_base_stay_unpinned() -> None:
    fake = FakeSpace()
    snapshot_seq, base = with_snapshot(fake)
    for i in range(3):
        fake.write(fake.bob, f"later {i}".encode())
    raws = stripped(fake, fake.seq)
    raws[snapshot_seq - 1] = fake.raws[snapshot_seq - 1]  # the snapshot whole: it vouches through its base
    v = fake.verifier(fake.carol)
    v.verify_frame(fake.frame_of(1, raws))
    assert list(v.unpinned) == [seq for seq, raw in enumerate(raws, 1) if seq > base and Entry.decode(raw).stripped]
    assert len(v.unpinned) == 3
    v.settle_unpinned()
    assert v.unpinned == {}


def test_a_snapshot_that_came_stripped_vouches_for_nothing() -> None:
    fake = FakeSpace()
    snapshot_seq, _ = with_snapshot(fake)
    raws = stripped(fake, snapshot_seq)  # the snapshot's own body dropped too: its signature is unchecked
    v = fake.verifier(fake.carol)
    v.verify_frame(fake.frame_of(1, raws))
    assert snapshot_seq in v.unpinned
    v.settle_unpinned()  # the honest entries' signatures check
    assert v.unpinned == {}


def test_an_unvouched_forged_entry_is_caught_when_catch_up_ends() -> None:
    fake = FakeSpace()
    for i in range(4):
        fake.write(fake.bob, f"edit {i}".encode())
    raws = stripped(fake, fake.seq)
    raws[-1] = forge_signature(raws[-1])  # the last: no later entry's parent covers it
    v = fake.verifier(fake.carol)
    v.verify_frame(fake.frame_of(1, raws))  # the chain and every rule hold; the signature waits
    with pytest.raises(AuthorSignatureError, match=f"data entry by .* at seq {fake.seq}: the author's signature"):
        v.settle_unpinned()
    assert fake.seq in v.unpinned


def test_a_forged_stripped_entry_breaks_the_snapshot_parent_that_covers_it() -> None:
    fake = FakeSpace()
    snapshot_seq, base = with_snapshot(fake, writes=3)
    raws = stripped(fake, base)
    raws[base - 1] = forge_signature(raws[base - 1])  # the base itself; re-chained and re-signed by the relay
    v = fake.verifier(fake.carol)
    with pytest.raises(ParentError, match=f"snapshot entry .* at seq {snapshot_seq}: parent hash at seq {base}"):
        v.verify_frame(fake.frame_of(1, raws))
    assert v.seq == 0 and v.unpinned == {}


def test_a_rejected_frame_leaves_no_unpinned_entries() -> None:
    fake = FakeSpace()
    _, base = with_snapshot(fake, attest=False)
    raws = stripped(fake, base)
    v = fake.verifier(fake.carol)
    v.verify_frame(fake.frame_of(1, raws[:3]))
    before = dict(v.unpinned)
    bad = fake.frame_of(4, raws[3:])
    with pytest.raises(ChainError):
        v.verify_frame(Entries(bad.first_seq, bad.entries, fake.signed(bad.head.seq, crypto.ZERO_HASH)))
    assert v.unpinned == before and v.seq == 3


def test_entries_of_the_devices_own_store_are_checked_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSpace()
    _, base = with_snapshot(fake)
    raws = stripped(fake, base)
    checked = counting_checks(monkeypatch)
    v = LogVerifier(fake.space, fake.carol, fake.relay_pk)
    for seq, raw in enumerate(raws, 1):
        v.reverify_stored(seq, raw, fake.heads[seq])
    assert checked == list(range(1, fake.seq + 1)) and v.unpinned == {}
