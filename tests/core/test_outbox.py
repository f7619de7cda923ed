"""The write pipeline's bookkeeping (encspaces.core.outbox), driven with entries and a fake log alone.

Each test feeds the outbox what happened (queued, stored, verified, refused, rotated) and checks
the decision it returns: no relay, no store, no event loop, no clock.
"""

from __future__ import annotations

import pytest

from encspaces.core.entry import Entry, Kind, open_body
from encspaces.core.invites import InviteBody, InviteSecret
from encspaces.core.membership import Policy, Role
from encspaces.core.outbox import (
    Backoff,
    Conflict,
    GiveUp,
    Outbox,
    Refresh,
    Submission,
    Upkeep,
    UpkeepPlan,
    Withdrawal,
    backoff_delay,
)
from encspaces.core.rekey import invite_body, rekey_body
from encspaces.core.withholding import SubmissionWatch
from encspaces.errors import EntryTooLargeError

from .fakes import FIXED_TIME_MS, FakeSpace

NOW = FIXED_TIME_MS  # the view was refreshed at this moment
LIMIT = 30_000  # freshness limit, ms


def setup(max_entry: int = 1 << 20) -> tuple[FakeSpace, Outbox]:
    fs = FakeSpace()
    return fs, Outbox(fs.alice, fs.space, max_entry)


def data(fs: FakeSpace, box: Outbox, text: bytes = b"edit") -> Entry:
    return box.build(Kind.DATA, text, fs.state, {1: fs.epoch_key})


def seqs(entries: tuple[Entry, ...] | list[Entry]) -> list[int]:
    return [e.header.author_seq for e in entries]


def sent(decision: Submission | Refresh | None) -> list[int]:
    assert isinstance(decision, Submission)
    return seqs(decision.entries)


def test_entries_are_numbered_after_the_log_without_a_gap() -> None:
    fs, box = setup()
    box.restored([], fs.state.author_seqs[fs.alice.public.sign_key])  # alice wrote the genesis and two adds
    assert seqs([data(fs, box), data(fs, box)]) == [4, 5]
    assert box.entries[0].header.parent_seq == fs.seq and box.entries[0].header.parent_hash == fs.heads[-1]


def test_an_entry_too_large_takes_no_number() -> None:
    fs, box = setup(max_entry=600)
    with pytest.raises(EntryTooLargeError, match="over the relay's limit of 600"):
        data(fs, box, b"x" * 1000)
    assert box.last_author_seq == 0 and box.entries == []
    assert seqs([data(fs, box)]) == [1]


def test_nothing_is_sent_before_it_is_stored() -> None:
    fs, box = setup()
    data(fs, box)
    data(fs, box)
    assert box.to_send(NOW, NOW, LIMIT) is None  # built, not yet durable
    box.stored(1, box.generation)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [1]
    assert box.to_send(NOW, NOW, LIMIT) is None  # already sent on this connection
    box.stored(2, box.generation)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [2]
    assert box.submitted_through == 2


def test_edits_go_ahead_of_their_write_once_the_session_is_stored_in_a_space_that_binds_client_ids() -> None:
    fs, box = setup()
    data(fs, box)
    assert box.to_send(NOW, NOW, LIMIT, bound=True) is None  # the session's nonce is not durable yet
    box.session_stored = True
    assert box.to_send(NOW, NOW, LIMIT) is None  # a space without bound client ids: write before send
    assert sent(box.to_send(NOW, NOW, LIMIT, bound=True)) == [1]
    data(fs, box)
    assert sent(box.to_send(NOW, NOW, LIMIT, bound=True)) == [2]
    assert box.submitted_through == 2 and box.durable_through == 0


def test_an_admin_entry_waits_for_its_write_and_the_edits_after_it_wait_with_it() -> None:
    fs, box = setup()
    box.session_stored = True
    data(fs, box)
    secret = InviteSecret.generate()
    offer = InviteBody(secret.invite_key, secret.box_key, Role.WRITER, 1, None, True, ())
    box.build(Kind.INVITE, invite_body(offer, {1: fs.epoch_key}, 1), fs.state, {1: fs.epoch_key})
    data(fs, box)
    assert sent(box.to_send(NOW, NOW, LIMIT, bound=True)) == [1]  # the invite is not stored: in order, 3 waits
    assert box.to_send(NOW, NOW, LIMIT, bound=True) is None
    box.stored(2, box.generation)
    assert sent(box.to_send(NOW, NOW, LIMIT, bound=True)) == [2, 3]


def test_what_follows_our_own_new_epoch_waits_for_the_log_to_hold_it_then_is_issued_again() -> None:
    fs, box = setup()
    box.restored([], 3)
    rotation = box.build(Kind.ROTATE, rekey_body(fs.state), fs.state, {1: fs.epoch_key})
    data(fs, box, b"typed meanwhile")  # under epoch 1, which the rotation ends
    box.stored(5, box.generation)
    # Sent together the relay would refuse both (a submission is all or nothing), every time.
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [4]
    assert box.to_send(NOW, NOW, LIMIT) is None
    box.connection_started(verified_mine=3)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [4]  # a new connection: the same
    fs.sequence(rotation)
    box.verified(4)
    assert box.needs_reissue(fs.state.epoch)


def test_a_write_that_began_before_a_renumbering_proves_nothing() -> None:
    fs, box = setup()
    first, second = data(fs, box), data(fs, box)
    generation = box.generation
    box.withdraw({first.raw}, fs.state, {1: fs.epoch_key})  # second is renumbered to 1 meanwhile
    box.stored(2, generation)
    assert box.durable_through == 0 and box.to_send(NOW, NOW, LIMIT) is None
    assert seqs(box.entries) == [1] and box.entries[0].raw != second.raw


def test_a_new_connection_sends_again_what_the_log_does_not_hold() -> None:
    fs, box = setup()
    for _ in range(3):
        data(fs, box)
    box.stored(3, box.generation)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [1, 2, 3]
    box.connection_started(verified_mine=1)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [2, 3]


def test_a_stale_view_sends_nothing_and_asks_once_per_connection_for_a_fresh_one() -> None:
    fs, box = setup()
    data(fs, box)
    box.stored(1, box.generation)
    stale = NOW + LIMIT + 1
    assert box.to_send(stale, NOW, LIMIT) == Refresh()
    assert box.to_send(stale, NOW, LIMIT) is None  # asked already on this connection
    box.connection_started(0)
    assert box.to_send(stale, NOW, LIMIT) == Refresh()
    box.connection_started(0)
    assert sent(box.to_send(stale, stale, LIMIT)) == [1]  # the new welcome refreshed the view


def test_a_stale_view_with_nothing_to_send_asks_for_nothing() -> None:
    _, box = setup()
    assert box.to_send(NOW + LIMIT + 1, NOW, LIMIT) is None and not box.refresh_asked


def test_verified_entries_leave_the_outbox() -> None:
    fs, box = setup()
    box.restored([], 3)
    first, _ = data(fs, box), data(fs, box)
    assert box.verified(0) is None
    fs.sequence(first)
    assert box.verified(fs.state.author_seqs[fs.alice.public.sign_key]) == 4
    assert seqs(box.entries) == [5]


def test_a_conflict_drops_the_refused_entry_and_renumbers_the_later_ones() -> None:
    fs, box = setup()
    box.restored([], 3)
    first, moot, later = data(fs, box, b"a"), data(fs, box, b"b"), data(fs, box, b"c")
    box.stored(6, box.generation)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [4, 5, 6]
    decision = box.refused("conflict", 5, fs.state, {1: fs.epoch_key}, 10)
    assert isinstance(decision, Conflict) and decision.entry is moot
    assert box.entries[0] is first and seqs(box.entries) == [4, 5]
    renamed = box.entries[1]
    assert decision.renames == ((moot.raw, None), (later.raw, renamed.raw))
    assert open_body(renamed, fs.epoch_key) == b"c"
    assert box.sent_through == 4 and box.durable_through == 4  # the renumbered one is stored, then sent
    box.stored(5, box.generation)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [5]


def test_an_action_withdrawn_before_submission_is_never_published() -> None:
    fs, box = setup()
    edit, action = data(fs, box), box.build(Kind.ROTATE, rekey_body(fs.state), fs.state, {1: fs.epoch_key})
    after = data(fs, box)
    outcome, renames = box.withdraw({action.raw}, fs.state, {1: fs.epoch_key})
    assert outcome is Withdrawal.WITHDRAWN
    assert [e.header.kind for e in box.entries] == [Kind.DATA, Kind.DATA] and seqs(box.entries) == [1, 2]
    assert box.entries[0] is edit and renames == [(action.raw, None), (after.raw, box.entries[1].raw)]


def test_an_action_already_submitted_cannot_be_withdrawn() -> None:
    fs, box = setup()
    action = box.build(Kind.ROTATE, rekey_body(fs.state), fs.state, {1: fs.epoch_key})
    box.stored(1, box.generation)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [1]
    box.connection_started(0)  # the connection dropped: submitted is never lowered
    assert box.withdraw({action.raw}, fs.state, {1: fs.epoch_key}) == (Withdrawal.SUBMITTED, [])
    assert box.entries == [action]


def test_withdrawal_of_an_action_partly_in_the_log_and_of_one_wholly_in_it() -> None:
    fs, box = setup()
    box.restored([], 3)
    revoke_like = box.build(Kind.POLICY, Policy().encode(), fs.state, {1: fs.epoch_key})
    rotate = box.build(Kind.ROTATE, rekey_body(fs.state), fs.state, {1: fs.epoch_key})
    fs.sequence(revoke_like)
    box.verified(4)
    outcome, _ = box.withdraw({revoke_like.raw, rotate.raw}, fs.state, {1: fs.epoch_key})
    assert outcome is Withdrawal.WITHDRAWN_PARTLY and box.entries == []
    assert box.withdraw({revoke_like.raw}, fs.state, {1: fs.epoch_key})[0] is Withdrawal.TOOK_EFFECT
    assert box.withdraw(set(), fs.state, {1: fs.epoch_key})[0] is Withdrawal.NOTHING_SENT


def test_entries_are_reissued_under_the_epoch_a_rotation_started() -> None:
    fs, box = setup()
    box.restored([], 3)
    edit = data(fs, box, b"typed")
    own_rotation = box.build(Kind.ROTATE, rekey_body(fs.state), fs.state, {1: fs.epoch_key})
    secret = InviteSecret.generate()
    offer = InviteBody(secret.invite_key, secret.box_key, Role.WRITER, 1, None, True, ())
    invite = box.build(Kind.INVITE, invite_body(offer, {1: fs.epoch_key}, 1), fs.state, {1: fs.epoch_key})
    box.stored(6, box.generation)
    sent(box.to_send(NOW, NOW, LIMIT))
    # Another device of an admin rotates first.
    fs.sequence(fs.make(fs.alice, rekey_body(fs.state), kind=Kind.ROTATE, author_seq=4))
    assert box.needs_reissue(fs.state.epoch)
    new_key = fs.state.epoch, b"\x02" * 32
    keys = {1: fs.epoch_key, new_key[0]: new_key[1]}
    generation = box.generation
    renames = box.reissue_all(fs.state, keys)
    assert box.generation == generation + 1 and not box.needs_reissue(fs.state.epoch)
    # The edit is re-encrypted under epoch 2, the pointless rotation dropped, the invite re-sealed.
    assert [(e.header.kind, e.header.author_seq, e.header.epoch) for e in box.entries] == [
        (Kind.DATA, 5, 2), (Kind.INVITE, 6, 2)]
    assert open_body(box.entries[0], new_key[1]) == b"typed"
    assert renames == [(edit.raw, box.entries[0].raw), (own_rotation.raw, None), (invite.raw, box.entries[1].raw)]
    assert InviteBody.decode(box.entries[1].body).sealed_keys[-1][0] == 2  # the new key is sealed to the invite
    assert box.durable_through == 4 and box.to_send(NOW, NOW, LIMIT) is None  # stored again before sent
    box.stored(6, box.generation)
    assert sent(box.to_send(NOW, NOW, LIMIT)) == [5, 6]


def test_a_refusal_backs_off_once_per_round_and_gives_up_at_the_limit() -> None:
    fs, box = setup()
    data(fs, box)
    keys = {1: fs.epoch_key}
    assert box.refused("gap", 1, fs.state, keys, 3) == Backoff(1)
    assert box.refused("gap", 1, fs.state, keys, 3) is None  # the same round: the resend covers it
    box.resend(0)
    assert box.refused("gap", 1, fs.state, keys, 3) == Backoff(2)
    box.resend(0)
    assert box.refused("gap", 1, fs.state, keys, 3) == GiveUp(3, 1, 3)


def test_progress_resets_the_refusal_count() -> None:
    fs, box = setup()
    box.restored([], 3)
    data(fs, box)
    keys = {1: fs.epoch_key}
    assert box.refused("stale_epoch", 4, fs.state, keys, 3) == Backoff(1)
    box.resend(3)
    fs.write(fs.alice, author_seq=4)  # our entry got in after all: the mark moved
    box.verified(4)
    data(fs, box)
    assert box.refused("gap", 5, fs.state, keys, 3) == Backoff(1)


def test_a_refusal_under_an_ended_epoch_waits_for_the_reissue() -> None:
    fs, box = setup()
    box.restored([], 3)
    data(fs, box)  # under epoch 1...
    fs.sequence(fs.make(fs.alice, rekey_body(fs.state), kind=Kind.ROTATE, author_seq=4))  # ...which ends
    assert box.refused("stale_epoch", 4, fs.state, {1: fs.epoch_key}, 10) is None
    assert not box.backoff_pending and box.refusals == 1


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    assert [backoff_delay(n, 0.05, 2.0, 0.5) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert backoff_delay(20, 0.05, 2.0, 0.5) == 2.0
    assert backoff_delay(1, 0.05, 2.0, 0.0) == 0.025


def test_upkeep_forgets_retired_keys_and_rotates_once_per_epoch() -> None:
    fs, _ = setup()
    me = fs.alice.public.sign_key
    fs.sequence(fs.make(fs.alice, Policy(rotate_entries=2, retain_epochs=0).encode(), kind=Kind.POLICY))
    upkeep = Upkeep()
    fs.write(fs.bob)
    assert upkeep.plan(fs.state, {1}, me, True, NOW) == UpkeepPlan()
    fs.write(fs.bob)
    assert upkeep.plan(fs.state, {1}, me, True, NOW) == UpkeepPlan(rotate=True)
    assert upkeep.plan(fs.state, {1}, me, True, NOW) == UpkeepPlan()  # asked for already
    fs.sequence(fs.make(fs.alice, rekey_body(fs.state), kind=Kind.ROTATE))
    assert upkeep.plan(fs.state, {1, 2}, me, True, NOW) == UpkeepPlan(forget=frozenset({1}))
    assert upkeep.plan(fs.state, {2}, fs.bob.public.sign_key, True, NOW) == UpkeepPlan()  # a writer rotates nothing


def test_upkeep_rotates_by_age_on_an_injected_clock() -> None:
    fs, _ = setup()
    me = fs.alice.public.sign_key
    fs.sequence(fs.make(fs.alice, Policy(rotate_seconds=60).encode(), kind=Kind.POLICY))
    started = fs.state.epoch_started[1]
    upkeep = Upkeep()
    assert not upkeep.plan(fs.state, {1}, me, True, started + 59_999).rotate
    assert upkeep.plan(fs.state, {1}, me, True, started + 60_000).rotate


def test_upkeep_revokes_an_expired_invite_once_while_connected() -> None:
    fs, _ = setup()
    me = fs.alice.public.sign_key
    secret = InviteSecret.generate()
    offer = InviteBody(secret.invite_key, secret.box_key, Role.WRITER, 1, NOW + 1000, True, ())
    fs.sequence(fs.make(fs.alice, invite_body(offer, {1: fs.epoch_key}, 1), kind=Kind.INVITE))
    upkeep = Upkeep()
    assert upkeep.plan(fs.state, {1}, me, True, NOW + 999).revoke == ()
    assert upkeep.plan(fs.state, {1}, me, False, NOW + 1001).revoke == ()  # offline: later
    assert upkeep.plan(fs.state, {1}, me, True, NOW + 1001).revoke == (secret.invite_key,)
    assert upkeep.plan(fs.state, {1}, me, True, NOW + 1002).revoke == ()


def test_the_oldest_entry_handed_to_the_relay_is_held_to_the_deadline_until_the_log_holds_it() -> None:
    """``awaiting_log`` names our oldest submitted entry not in the verified log (not one never
    sent, nor while a resend after a refusal is scheduled); ``SubmissionWatch`` counts time live
    with that same entry waiting, lets the caller renew the connection once, and starts again
    for another entry."""
    fs, box = setup()
    first, _ = data(fs, box), data(fs, box)
    assert box.awaiting_log() is None  # not sent yet
    box.stored(2, box.generation)
    box.to_send(NOW, NOW, LIMIT)
    assert box.awaiting_log() == first
    box.connection_started(verified_mine=0)
    assert box.awaiting_log() == first  # handed to a connection before: still awaited
    watch = SubmissionWatch()
    watch.observe(first.raw, True, 0.0)
    watch.observe(first.raw, False, 20.0)  # offline from here: not the relay's time
    watch.observe(first.raw, True, 500.0)
    watch.observe(first.raw, True, 510.0)
    assert watch.waited() == 30.0 and watch.overdue(29.0) and not watch.overdue(30.0)
    watch.renew()
    assert watch.renewed and not watch.overdue(29.0)
    watch.observe(first.raw, True, 540.0)
    assert watch.overdue(29.0) and watch.renewed
    box.verified(verified_mine=1)
    second = box.awaiting_log()
    assert second is not None and second.header.author_seq == 2
    watch.observe(second.raw, True, 541.0)
    assert not watch.overdue(0.0) and not watch.renewed  # another entry: a fresh deadline
    box.backoff_pending = True  # refused: the relay answered, a resend is scheduled
    assert box.awaiting_log() is None
