"""Positions moved through deltas stay on their character; one-replacement diffs are exact."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from encspaces_clients.editor.cursors import Peer, colour_for, diff, replace_delta, transform, transform_range


def apply(text: str, index: int, deleted: int, inserted: str) -> str:
    return text[:index] + inserted + text[index + deleted :]


@st.composite
def edits(draw: st.DrawFn) -> tuple[str, int, int, str, int]:
    text = draw(st.text(alphabet="abcdef\n", max_size=30))
    index = draw(st.integers(0, len(text)))
    deleted = draw(st.integers(0, len(text) - index))
    inserted = draw(st.text(alphabet="XYZ", max_size=5))
    position = draw(st.integers(0, len(text)))
    return text, index, deleted, inserted, position


@given(edits())
def test_a_caret_stays_before_its_character(edit: tuple[str, int, int, str, int]) -> None:
    text, index, deleted, inserted, position = edit
    after = apply(text, index, deleted, inserted)
    moved = transform(position, replace_delta(index, deleted, inserted), stick_right=True)
    assert 0 <= moved <= len(after)
    if position < len(text) and not index <= position < index + deleted:
        assert after[moved] == text[position]  # the character it was on, wherever it went
    if position <= index:
        assert moved == position + (len(inserted) if position == index else 0)


@given(edits(), st.integers(0, 30))
def test_a_selection_keeps_its_text_when_edits_are_outside_it(edit: tuple[str, int, int, str, int],
                                                              other: int) -> None:
    text, index, deleted, inserted, position = edit
    low, high = sorted((position, min(other, len(text))))
    if not (index + deleted <= low or index >= high):
        return  # the edit touches the selection
    anchor, cursor = transform_range(high, low, [replace_delta(index, deleted, inserted)])
    after = apply(text, index, deleted, inserted)
    assert after[min(anchor, cursor) : max(anchor, cursor)] == text[low:high]


@given(st.text(max_size=20), st.text(max_size=20))
def test_diff_is_one_exact_replacement(old: str, new: str) -> None:
    assert apply(old, *diff(old, new)) == new


def test_peer_presence_is_checked() -> None:
    peer = Peer.from_presence("m" * 43, {"name": "Bob\x1b[31m", "colour": "red", "cursor": 4, "selection": [9, 4]},
                              "notes")
    assert peer is not None
    assert (peer.name, peer.colour, peer.cursor, peer.anchor) == ("Bob[31m", colour_for("m" * 43), 4, 9)
    assert Peer.from_presence("m", {"cursor": -1}, "notes") is None
    assert Peer.from_presence("m", {"cursor": True}, "notes") is None
    assert Peer.from_presence("m", {"cursor": 1, "doc": "other"}, "notes") is None
