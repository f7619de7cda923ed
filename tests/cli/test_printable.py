"""``terminal.printable``, the one filter between what members wrote and the terminal: every
control character and every Unicode format character (category Cf: the bidi overrides and
isolates that reorder what a terminal shows, the zero-width ones that hide text) comes out as
a one-character stand-in, except the two joiners real text needs."""

from __future__ import annotations

import sys
import unicodedata

from encspaces_clients.terminal import JOINERS, REPLACEMENT, printable

# Every bidi control: embeddings and overrides, isolates, and the marks.
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_every_format_character_but_the_joiners_is_a_stand_in() -> None:
    formats = [chr(code) for code in range(sys.maxunicode + 1) if unicodedata.category(chr(code)) == "Cf"]
    assert set(BIDI) | JOINERS <= set(formats)
    text = "".join(formats)
    for lines in (False, True):
        shown = printable(text, lines=lines)
        assert len(shown) == len(text)  # one stand-in per character: positions stay
        assert [(char, stand_in) for char, stand_in in zip(text, shown, strict=True)
                if stand_in != (char if char in JOINERS else REPLACEMENT)] == []


def test_a_trojan_source_line_shows_its_controls() -> None:
    """What the reader sees must be the order the text is in: each control is visible."""
    line = "access = \"user\u202e \u2066// admin only\u2069 \u2066\""
    assert printable(line) == "access = \"user\ufffd \ufffd// admin only\ufffd \ufffd\""
    assert printable(f"a{BIDI}b", lines=True) == "a" + REPLACEMENT * len(BIDI) + "b"


def test_joiners_and_honest_text_are_left_alone() -> None:
    honest = ("👩\u200d💻 and 👨\u200d👩\u200d👧, می\u200cخواهم, क्\u200dष, naïve café, 日本語, עברית, العربية, "
              "a\tb\r\nc\n")
    assert printable(honest, lines=True) == honest
    assert printable("") == "" and printable("plain") == "plain"


def test_controls_separators_and_lone_surrogates_are_stand_ins() -> None:
    """A lone surrogate can reach ``printable`` from a file name read with surrogateescape."""
    assert printable("\x1b[2J\x07\x7f\x9b\u2028\u2029\ud800\udcff") == "\u241b[2J\u2407\u2421" + REPLACEMENT * 5
    assert printable("a\rb\r\nc\td\n", lines=True) == "a\u240db\r\nc\td\n"
    assert printable("a\r\nb\tc") == "a\u240d\u240ab\u2409c"
    assert printable("a\udcff.txt").encode() == "a\ufffd.txt".encode()  # now it can be written


def test_printable_is_idempotent() -> None:
    text = f"\x1b]0;x\x07{BIDI}\u200d\ufeff\U000e0041\ud800 end"
    once = printable(text, lines=True)
    assert printable(once, lines=True) == once
