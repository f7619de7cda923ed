"""Describing changes when yrs's events cannot be taken at face value (byte counts, missing keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from encspaces.shared.changes import KeyChange, MapChange, TableChange, TextChange
from encspaces.shared.events import map_change, table_change, text_change


@dataclass
class Event:
    """Stands in for a pycrdt event at the root of an object (only the attributes read there)."""

    path: list[Any] = field(default_factory=list)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    delta: list[dict[str, Any]] = field(default_factory=list)


def test_text_byte_counts_become_character_counts() -> None:
    # "aü😀b" is 1 + 2 + 4 + 1 bytes: retaining 3 bytes keeps "aü", deleting 4 removes "😀"
    event = Event(delta=[{"retain": 3}, {"delete": 4}, {"retain": 1, "attributes": {"b": True}}])
    change = text_change("t", [event], True, None, before="aü😀b")
    expected = [{"retain": 2}, {"delete": 1}, {"retain": 1, "attributes": {"b": True}}]
    assert change == TextChange("t", expected, True, None)
    ascii_change = text_change("t", [Event(delta=[{"retain": 2}, {"insert": "ü"}])], True, None, before="abc")
    assert ascii_change is not None and ascii_change.delta == [{"retain": 2}, {"insert": "ü"}]
    assert text_change("t", [Event(path=[1])], True, None) is None


def test_map_keys_that_came_or_went_are_reported_even_if_the_event_omits_them() -> None:
    change = map_change("m", [Event()], False, "bob", frozenset({"a", "b"}), frozenset({"b", "c"}), {"c": 3.0})
    assert change == MapChange("m", {"a": KeyChange("delete"), "c": KeyChange("add", None, 3)}, False, "bob")


def test_map_actions_follow_presence_before_and_after() -> None:
    reported = {
        "kept": {"action": "add", "newValue": 2.0},  # was there before: an update, not an add
        "gone": {"action": "update", "oldValue": "x", "newValue": "y"},  # not there now: a delete
        "ghost": {"action": "delete", "oldValue": 1.0},  # there neither before nor after: nothing
        "back": {"action": "delete", "oldValue": 1.0},  # there before and after: an update
    }
    before, now = frozenset({"kept", "gone", "back"}), frozenset({"kept", "back"})
    change = map_change("m", [Event(keys=reported)], True, None, before, now, {"kept": 2.0, "back": "new"})
    assert change is not None and change.keys == {
        "back": KeyChange("update", 1, "new"),
        "gone": KeyChange("delete", "x", None),
        "kept": KeyChange("update", None, 2),
    }
    assert map_change("m", [Event(keys={"ghost": {"action": "delete"}})], True, None) is None


def test_table_rows_come_from_the_row_sets_and_stale_edits_are_dropped() -> None:
    events = [Event(), Event(path=["r2"], keys={"c": {"action": "add", "newValue": 1}}), Event(path=["gone", "c"])]
    change = table_change("tb", events, False, "ann", frozenset({"r1", "r2", "gone"}), frozenset({"r2", "r3"}))
    assert change == TableChange("tb", ["r3"], {"r2": ["c"]}, ["gone", "r1"], False, "ann")
    assert table_change("tb", [Event()], True, None, frozenset({"r"}), frozenset({"r"})) is None
