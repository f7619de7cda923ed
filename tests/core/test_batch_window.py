"""When a batch of local edits leaves (encspaces/core/batch_window.py), on explicit times."""

from __future__ import annotations

import pytest

import encspaces
from encspaces.core.batch_window import BatchWindow
from encspaces.errors import InvalidArgumentError

BASE, LONGEST = 0.005, 0.04


def test_the_first_edit_leaves_at_once() -> None:
    window = BatchWindow(BASE, LONGEST)
    assert window.opened(100.0) == 0.0


def test_an_edit_after_a_pause_leaves_at_once() -> None:
    window = BatchWindow(BASE, LONGEST)
    window.flushed(100.0)
    assert window.opened(100.0 + 2 * BASE) == 0.0
    window.flushed(100.0 + 2 * BASE)
    assert window.opened(101.0) == 0.0


def test_a_burst_starts_with_the_base_window_and_doubles_it_up_to_the_longest() -> None:
    window = BatchWindow(BASE, LONGEST)
    now = 100.0
    assert window.opened(now) == 0.0
    delays = []
    for _ in range(6):
        window.flushed(now)
        now += 0.0001  # the next edit of the burst, right after the batch left
        delay = window.opened(now)
        delays.append(delay)
        now += delay
    assert delays == [BASE, 2 * BASE, 4 * BASE, LONGEST, LONGEST, LONGEST]


def test_a_pause_starts_the_window_over() -> None:
    window = BatchWindow(BASE, LONGEST)
    now = 100.0
    for _ in range(5):  # a burst long enough to reach the longest window
        window.flushed(now)
        now += window.opened(now + 0.0001) + 0.0001
    assert window.window == LONGEST
    window.flushed(now)
    assert window.opened(now + 2 * BASE) == 0.0  # a pause: at once
    window.flushed(now + 2 * BASE)
    assert window.opened(now + 2 * BASE + 0.001) == BASE  # and a new burst starts small


def test_a_longest_window_below_the_base_keeps_the_window_fixed() -> None:
    window = BatchWindow(0.01, 0.002)
    window.flushed(100.0)
    assert [window.opened(100.001), window.opened(100.001), window.opened(100.001)] == [0.01, 0.01, 0.01]


@pytest.mark.parametrize("value", [-0.001, "0.04", True])
def test_space_options_refuse_a_max_batch_delay_that_is_not_a_number_of_seconds(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="max_batch_delay"):
        encspaces.SpaceOptions(max_batch_delay=value)  # type: ignore[arg-type]
