"""LogState: the keyless rules shared by relay and clients, and the all-or-nothing journal."""

from __future__ import annotations

import copy

import pytest

from encspaces.core import crypto
from encspaces.core.entry import Entry, Kind
from encspaces.core.head import next_head
from encspaces.core.log_state import LogState, space_id_of
from encspaces.core.membership import Role
from encspaces.errors import (
    EpochError,
    MalformedEntryError,
    MembershipChangeError,
    MembershipError,
    PermissionDeniedError,
    ReplayError,
    SpaceIdError,
    SpaceMismatchError,
)

from .fakes import FakeSpace, craft_entry, header_of


def _replay(fs: FakeSpace, upto: int) -> LogState:
    state = LogState(fs.space)
    for seq in range(1, upto + 1):
        entry = Entry.decode(fs.raws[seq - 1])
        state.check(entry, seq)
        state.apply(entry, seq, fs.heads[seq])
    return state


def _view(state: LogState) -> tuple[object, ...]:
    return (list(state.heads), dict(state.members), dict(state.author_seqs), state.epoch, state.relay_key, state.seq)


def test_replaying_the_log_reproduces_the_relay_state() -> None:
    fs = FakeSpace()
    fs.write(fs.bob)
    state = _replay(fs, fs.seq)
    assert _view(state) == _view(fs.state)
    assert state.role_of(fs.alice.public.sign_key) is Role.ADMIN
    assert state.role_of(fs.bob.public.sign_key) is Role.WRITER
    assert state.role_of(fs.carol.public.sign_key) is Role.READER
    assert state.role_of(fs.dave.public.sign_key) is None
    assert state.relay_key == fs.relay_pk
    assert state.members[fs.bob.public.sign_key].added_by == fs.alice.public.sign_key
    assert state.members[fs.bob.public.sign_key].added_seq == 2
    assert state.members[fs.alice.public.sign_key].added_by is None


def test_rollback_undoes_everything_since_begin() -> None:
    fs = FakeSpace(with_members=False)
    fs.add(fs.bob, Role.WRITER)  # seq 2
    fs.write(fs.bob)  # 3
    fs.add(fs.carol, Role.READER)  # 4, a new member
    fs.write(fs.alice)  # 5
    fs.write(fs.bob)  # 6
    state = _replay(fs, 3)
    before = copy.deepcopy(_view(state))
    state.begin()
    for seq in range(4, 7):
        entry = Entry.decode(fs.raws[seq - 1])
        state.check(entry, seq)
        state.apply(entry, seq, fs.heads[seq])
    assert fs.carol.public.sign_key in state.members and state.seq == 6
    state.rollback()
    assert _view(state) == before
    assert fs.carol.public.sign_key not in state.members
    assert state.author_seqs[fs.bob.public.sign_key] == 1
    # after a rollback the same entries apply again, and commit keeps them
    state.begin()
    for seq in range(4, 7):
        entry = Entry.decode(fs.raws[seq - 1])
        state.check(entry, seq)
        state.apply(entry, seq, fs.heads[seq])
    state.commit()
    state.rollback()  # no journal: a no-op
    assert _view(state) == _view(fs.state)


def test_rollback_of_genesis_restores_an_empty_state() -> None:
    fs = FakeSpace()
    state = LogState(fs.space)
    empty = copy.deepcopy(_view(state))
    state.begin()
    for seq in range(1, 4):
        entry = Entry.decode(fs.raws[seq - 1])
        state.check(entry, seq)
        state.apply(entry, seq, fs.heads[seq])
    assert state.relay_key == fs.relay_pk
    state.rollback()
    assert _view(state) == empty
    assert state.relay_key is None and state.members == {} and state.author_seqs == {}


def test_check_never_mutates() -> None:
    fs = FakeSpace()
    before = copy.deepcopy(_view(fs.state))
    good = fs.make(fs.bob, author_seq=1)
    fs.state.check(good, fs.seq + 1)
    for bad in [fs.make(fs.dave, author_seq=1), fs.make(fs.carol, author_seq=1), fs.make(fs.bob, author_seq=5)]:
        with pytest.raises(Exception):  # noqa: B017 - any rule error; the point is the state after
            fs.state.check(bad, fs.seq + 1)
    assert _view(fs.state) == before


def test_check_at_wrong_position_is_a_programming_error() -> None:
    fs = FakeSpace()
    with pytest.raises(ValueError):
        fs.state.check(fs.make(fs.bob), fs.seq + 2)


def test_relay_side_rules() -> None:
    """The rules an honest relay applies before sequencing (the same code clients run)."""
    fs = FakeSpace()
    nxt = fs.seq + 1
    with pytest.raises(MembershipError, match=f"at seq {nxt}.*{fs.dave.member_id}"):
        fs.state.check(fs.make(fs.dave, author_seq=1), nxt)
    with pytest.raises(PermissionDeniedError, match="reader may not write"):
        fs.state.check(fs.make(fs.carol, author_seq=1), nxt)
    with pytest.raises(PermissionDeniedError, match="writer may not add members"):
        fs.state.check(fs.add_member_entry(fs.bob, fs.dave, Role.READER), nxt)
    with pytest.raises(MembershipChangeError, match="already a member"):
        fs.state.check(fs.add_member_entry(fs.alice, fs.bob, Role.ADMIN, author_seq=4), nxt)
    with pytest.raises(MembershipChangeError, match="key of epoch 1"):
        fs.state.check(fs.add_member_entry(fs.alice, fs.dave, Role.READER, keys={}, author_seq=4), nxt)
    with pytest.raises(ReplayError, match=r"already at author_seq 3 \(expected 4, found 1\)"):
        fs.state.check(fs.make(fs.alice, author_seq=1), nxt)
    with pytest.raises(EpochError, match="under epoch 2, expected the current epoch 1"):
        fs.state.check(fs.make(fs.bob, author_seq=1, epoch=2), nxt)
    with pytest.raises(SpaceMismatchError, match="names space"):
        fs.state.check(fs.make(fs.bob, author_seq=1, space=bytes(32)), nxt)
    g = craft_entry(fs.alice, header_of(fs.genesis, author_seq=3), fs.genesis.body)
    with pytest.raises(MembershipChangeError, match="only stand at seq 1"):
        fs.state.check(g, nxt)
    e = fs.make(fs.bob, author_seq=1)
    no_nonce = craft_entry(fs.bob, header_of(e, nonce=b""), e.body)
    with pytest.raises(MalformedEntryError, match="needs a nonce"):
        fs.state.check(no_nonce, nxt)


def test_genesis_rules() -> None:
    fs = FakeSpace()
    with pytest.raises(SpaceIdError, match="expected the genesis entry"):
        LogState(fs.space).check(Entry.decode(fs.raws[1]), 1)
    with pytest.raises(SpaceIdError, match="not to the space id"):
        LogState(bytes(32)).check(fs.genesis, 1)
    changes: list[dict[str, object]] = [
        {"author_seq": 2}, {"epoch": 2}, {"parent_seq": 1}, {"parent_hash": bytes([1]) * 32},
        {"space": bytes(32)}, {"nonce": bytes(24)},
    ]
    for change in changes:
        odd = craft_entry(fs.alice, header_of(fs.genesis, **change), fs.genesis.body)
        with pytest.raises(MalformedEntryError, match="genesis header"):
            LogState(space_id_of(odd.raw)).check(odd, 1)
    garbage_body = craft_entry(fs.alice, fs.genesis.header, b"\x01")
    with pytest.raises(MalformedEntryError, match="genesis"):
        LogState(space_id_of(garbage_body.raw)).check(garbage_body, 1)


def test_heads_chain() -> None:
    fs = FakeSpace()
    h = crypto.ZERO_HASH
    for seq, raw in enumerate(fs.raws, start=1):
        h = next_head(h, seq, Entry.decode(raw).digest())
        assert h == fs.heads[seq] == _replay(fs, seq).head
    assert Entry.decode(fs.raws[0]).header.kind is Kind.GENESIS
