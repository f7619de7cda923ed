"""Where Yrs' own cost per keystroke grows: the document's size, or its block structure.

``bench.typing`` finds bare pycrdt (Yrs alone) 3-3.5x slower per random keystroke at 1 MB than
at 10 KB, while what encspaces adds stays flat. This splits that run in phases of keystrokes:
each size's document is generated and inserted whole (one Yrs block, as ``bench.typing`` does),
then the same random keystrokes as ``bench.typing`` are applied in UTF-8 offsets, timed per
phase. Also a second start: the same text after ``--typed`` random keystrokes were applied
untimed first, so the document holds many blocks, as one that was typed rather than pasted does.
And a third: the text pasted as ``SharedText`` inserts a long text, in blocks of
``PASTE_BLOCK`` characters (bench/README.md, "Typing: a paste in blocks").

What it shows (bench/README.md, "Typing: what grows in Yrs"): the first phase at 1 MB pays for
splitting the pasted megabyte (a split costs in proportion to the block it cuts), and after it
the cost per keystroke grows with the number of blocks the keystrokes made, at the same rate at
either size (Yrs walks a text's blocks from its start to find an offset).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench.typing import SIZES, generate, in_utf8_offsets, keystrokes

PHASE = 500


def phases(size: str, count: int, typed: int, seed: int, blocks: bool = False) -> list[float]:
    """µs per keystroke in each phase of ``PHASE`` keystrokes (after ``typed`` untimed ones);
    ``blocks``: the text pasted in blocks of ``PASTE_BLOCK`` characters, last first."""
    import pycrdt

    from encspaces.shared.text import paste_blocks

    document_text = generate(SIZES[size], random.Random(f"{seed}-{size}"))
    ops = keystrokes("random", len(document_text), typed + count, random.Random(f"{seed}-{size}-random"))
    applied, expected = in_utf8_offsets(document_text, ops)
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    with doc.transaction():
        for block in paste_blocks(document_text) if blocks else [document_text]:
            text.insert(0, block)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    times: list[float] = []
    for insert, offset, ch, length in applied:
        start = time.perf_counter()
        if insert:
            text.insert(offset, ch)
        else:
            del text[offset: offset + length]
        times.append(time.perf_counter() - start)
    if str(text) != expected:
        raise AssertionError("the bare replay differs from the model")
    timed = times[typed:]
    return [sum(timed[k: k + PHASE]) / len(timed[k: k + PHASE]) * 1e6 for k in range(0, len(timed), PHASE)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.typing_phases", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10KB,1MB")
    parser.add_argument("--keystrokes", type=int, default=4000, help="timed, per start and size")
    parser.add_argument("--typed", type=int, default=4000, help="untimed keystrokes of the 'typed' start")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default bench/results/typing_phases.json)")
    args = parser.parse_args(argv)
    from bench.common import write_result

    results = []
    for start, typed in (("pasted", 0), ("typed", args.typed), ("blocks", 0)):
        for size in args.sizes.split(","):
            measured = phases(size, args.keystrokes, typed, args.seed, blocks=start == "blocks")
            results.append({"start": start, "size": size, "untimed_keystrokes": typed, "us_per_phase": measured})
            print(f"  {start:6} {size:5} " + " ".join(f"{v:6.1f}" for v in measured), file=sys.stderr)
    payload = {"unit": f"µs per keystroke, mean of each phase of {PHASE} random keystrokes (bare pycrdt)",
               "keystrokes": args.keystrokes, "results": results}
    print(f"wrote {write_result('typing_phases', payload, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
