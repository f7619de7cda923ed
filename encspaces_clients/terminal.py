"""Text from other members made safe to show on a terminal.

Anything a member wrote (a text's content, an object's name, a file's name, a device's or a
display name) may hold control characters: ESC starts the terminal's escape sequences, which
can retitle the window, clear or rewrite the screen, move the cursor over earlier output, set
the clipboard (OSC 52) or hide the rest of a line. A writer's client may put them in on
purpose, so none of it may reach a terminal as it is: each control character is shown as a
visible stand-in instead, and the honest text around it is left alone.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls (U+0080..U+009F: 8-bit CSI/OSC to some terminals), and lone
# surrogates (which no terminal encoding can write), and the line and paragraph separators
# U+2028 and U+2029 (zero cells wide: the editor keeps them inside a line, where nothing would
# show they are there). Tab and newline are kept where asked.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]|\r(?!\n)")

REPLACEMENT = "\ufffd"


def _stand_in(match: re.Match[str]) -> str:
    """The visible picture of a C0 control (␛ for ESC, ␇ for BEL...), ␡ for DEL, else U+FFFD."""
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)
    return "\u2421" if code == 0x7F else REPLACEMENT


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character shown as a stand-in, so that printing it cannot
    drive the terminal. With ``lines``, line breaks (``\\n``, ``\\r\\n``) and tabs are kept:
    a text's content keeps its layout; a name or a one-line field does not."""
    return (_CONTROLS_BUT_LINES if lines else _CONTROLS).sub(_stand_in, text)


__all__ = ["REPLACEMENT", "printable"]
