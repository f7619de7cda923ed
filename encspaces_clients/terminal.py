"""Text from other members made safe to show on a terminal.

Anything a member wrote (a text's content, an object's name, a file's name, a device's or a
display name) may hold control characters: ESC starts the terminal's escape sequences, which
can retitle the window, clear or rewrite the screen, move the cursor over earlier output, set
the clipboard (OSC 52) or hide the rest of a line. A writer's client may put them in on
purpose, so none of it may reach a terminal as it is: each control character is shown as a
visible stand-in instead, and the honest text around it is left alone.

Unicode's format characters (category Cf) are the same danger without an escape sequence:
the bidirectional overrides, embeddings and isolates (U+202A-U+202E, U+2066-U+2069) and the
marks (U+200E, U+200F, U+061C) make a terminal that reorders text show characters in another
order than they are (the "Trojan Source" trick: a reader sees one thing, the text says
another), and the rest (U+200B, U+2060, U+FEFF, the tag characters U+E0000-U+E007F...) take
no cell at all, so text can hide in them. Each is shown as a stand-in too, except the two that
real text needs: U+200C ZERO WIDTH NON-JOINER and U+200D ZERO WIDTH JOINER (emoji sequences,
Indic, Persian and Arabic words). One cost: the few emoji flags built from tag characters
(the flags of England, Scotland and Wales) show as a black flag and stand-ins.
"""

from __future__ import annotations

import re
import unicodedata

# C0 controls, DEL and C1 controls (U+0080..U+009F: 8-bit CSI/OSC to some terminals), and lone
# surrogates (which no terminal encoding can write), and the line and paragraph separators
# U+2028 and U+2029 (zero cells wide: the editor keeps them inside a line, where nothing would
# show they are there). Tab and newline are kept where asked.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]|\r(?!\n)")

REPLACEMENT = "\ufffd"

# The format characters that real text needs, kept as they are (see the module).
JOINERS = frozenset("\u200c\u200d")


def _stand_in(match: re.Match[str]) -> str:
    """The visible picture of a C0 control (␛ for ESC, ␇ for BEL...), ␡ for DEL, else U+FFFD."""
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)
    return "\u2421" if code == 0x7F else REPLACEMENT


def hidden_format(char: str) -> bool:
    """True for a format character (Cf) that is shown as a stand-in: all but the joiners."""
    return unicodedata.category(char) == "Cf" and char not in JOINERS


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character and every format character but the joiners shown
    as a stand-in of one character (so a position in the text is the same position in what is
    shown), so that printing it can neither drive the terminal nor reorder or hide what it
    shows. With ``lines``, line breaks (``\\n``, ``\\r\\n``) and tabs are kept: a text's
    content keeps its layout; a name or a one-line field does not."""
    shown = (_CONTROLS_BUT_LINES if lines else _CONTROLS).sub(_stand_in, text)
    if shown.isascii():
        return shown
    # Format characters are spread over the whole of Unicode (and each Unicode version adds
    # some): the text's distinct characters are looked up instead of a table of ranges.
    formats = {ord(char): REPLACEMENT for char in set(shown) if hidden_format(char)}
    return shown.translate(formats) if formats else shown


__all__ = ["JOINERS", "REPLACEMENT", "hidden_format", "printable"]
