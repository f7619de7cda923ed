"""Typing cost per keystroke against document size, for a text that is not ASCII.

Generated documents of 10 KB, 100 KB and 1 MB (UTF-8) mixing ASCII, accented Latin, CJK and
emoji; into each, two workloads of keystrokes drawn from the same mix:
- random: single-character inserts (75%) and deletes (25%) at random positions;
- sequential: typing at one cursor, with a backspace every tenth keystroke.
Measured: wall time per keystroke of ``SharedText.insert`` / ``delete`` in an encspaces
``Document`` (its local-update callback collects each update, as the SDK's does), beside the
same keystrokes applied to a bare pycrdt text in UTF-8 offsets worked out beforehand (the
floor: Yrs itself), pasted in the blocks SharedText pastes a long text in (``paste_blocks``), so
both time Yrs on the same structure. ``--baseline PATH`` also measures another checkout's
encspaces (e.g. main, ``git worktree add /tmp/base main``) in the same run, for a before/after.

Each (implementation, round) runs in its own process, rounds alternate the order; medians.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZES = {"10KB": 10_000, "100KB": 100_000, "1MB": 1_000_000}
WORKLOADS = ["random", "sequential"]
ASCII = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,;"
LATIN = "àáâäçèéêëìíîïñòóôöùúûüßøåæœ"
CJK = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后"
    "小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
    "知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最"
    "间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市"
    "眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计"
    "或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让"
)
EMOJI = "😀😂🥰😎🤔🙈🎉🚀🌍🍕🐍🔥💡✨👍🙏"
KEYSTROKES = 2000


def mixed_char(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.70:
        return rng.choice(ASCII)
    if r < 0.85:
        return rng.choice(LATIN)
    if r < 0.95:
        return rng.choice(CJK)
    return rng.choice(EMOJI)


def generate(size: int, rng: random.Random) -> str:
    """About ``size`` UTF-8 bytes of mixed text, in words and lines."""
    parts: list[str] = []
    total = 0
    while total < size:
        word = "".join(mixed_char(rng) for _ in range(rng.randint(1, 9)))
        word += "\n" if rng.random() < 0.08 else " "
        parts.append(word)
        total += len(word.encode())
    return "".join(parts)


Op = tuple[bool, int, str]  # (insert?, character index, the character; "" for a delete)


def keystrokes(workload: str, length: int, count: int, rng: random.Random) -> list[Op]:
    ops: list[Op] = []
    if workload == "random":
        for _ in range(count):
            if rng.random() < 0.25 and length:
                ops.append((False, rng.randrange(length), ""))
                length -= 1
            else:
                ops.append((True, rng.randint(0, length), mixed_char(rng)))
                length += 1
        return ops
    cursor = rng.randint(0, length)
    for i in range(count):
        if i % 10 == 9 and cursor:
            cursor -= 1
            ops.append((False, cursor, ""))
        else:
            ops.append((True, cursor, mixed_char(rng)))
            cursor += 1
    return ops


def measure_encspaces(document_text: str, ops: list[Op]) -> float:
    from encspaces.document import Document

    updates: list[bytes] = []
    doc = Document(updates.append)
    text = doc.text("t", lambda: None)
    text.insert(0, document_text)
    text.insert(0, "é")  # once, before timing: whatever a first non-ASCII edit sets up
    text.delete(0, 1)
    start = time.perf_counter()
    for insert, index, ch in ops:
        if insert:
            text.insert(index, ch)
        else:
            text.delete(index, 1)
    elapsed = time.perf_counter() - start
    assert len(updates) == len(ops) + 3
    return elapsed / len(ops)


ByteOp = tuple[bool, int, str, int]  # (insert?, UTF-8 offset, the character, bytes deleted)


def in_utf8_offsets(document_text: str, ops: list[Op]) -> tuple[list[ByteOp], str]:
    """``ops`` as Yrs takes them (pycrdt counts UTF-8 bytes), and the text they leave."""
    from encspaces.shared.text_index import TextIndex

    index = TextIndex(document_text)
    byte_ops: list[ByteOp] = []
    for insert, i, ch in ops:
        offset = index.offset(i)
        if insert:
            byte_ops.append((True, offset, ch, 0))
            index.insert(i, ch)
        else:
            byte_ops.append((False, offset, "", index.offset(i + 1) - offset))
            index.delete(i, 1)
    return byte_ops, str(index)


def measure_bare(document_text: str, ops: list[Op]) -> float:
    import pycrdt

    from encspaces.shared.text import paste_blocks

    byte_ops, expected = in_utf8_offsets(document_text, ops)  # worked out before timing
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    with doc.transaction():
        for block in paste_blocks(document_text):  # the blocks SharedText pastes (bench/README.md)
            text.insert(0, block)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    start = time.perf_counter()
    for insert, offset, ch, size in byte_ops:
        if insert:
            text.insert(offset, ch)
        else:
            del text[offset : offset + size]
    elapsed = time.perf_counter() - start
    if str(text) != expected:
        raise AssertionError("the bare replay differs from the model")
    return elapsed / len(ops)


def worker(impl: str, sizes: list[str], count: int, seed: int, import_from: str | None,
           paste_block: int | None = None) -> dict[str, Any]:
    if import_from:
        sys.path.insert(0, import_from)
        import encspaces

        if not str(Path(encspaces.__file__).resolve()).startswith(str(Path(import_from).resolve())):
            raise SystemExit(f"--import-from {import_from}: encspaces came from {encspaces.__file__}")
    if paste_block is not None:
        import encspaces.shared.text

        encspaces.shared.text.PASTE_BLOCK = paste_block
    measured: dict[str, Any] = {}
    for size in sizes:
        rng = random.Random(f"{seed}-{size}")
        document_text = generate(SIZES[size], rng)
        for workload in WORKLOADS:
            ops = keystrokes(workload, len(document_text), count, random.Random(f"{seed}-{size}-{workload}"))
            run = measure_bare if impl == "bare" else measure_encspaces
            measured[f"{size}/{workload}"] = run(document_text, ops) * 1e6  # µs per keystroke
    return measured


def median(values: list[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.typing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated subset of {','.join(SIZES)}")
    parser.add_argument("--keystrokes", type=int, default=KEYSTROKES, help="per workload and size")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="also measure the encspaces of this checkout (e.g. a worktree of main)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="10KB only, 200 keystrokes, one round (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/typing.json)")
    parser.add_argument("--paste-block", type=int, default=None, metavar="N",
                        help="paste the documents in blocks of N characters instead of SharedText's "
                             "PASTE_BLOCK (both implementations; to find the best block size)")
    parser.add_argument("--worker", choices=["encspaces", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--import-from", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    if unknown := set(sizes) - set(SIZES):
        parser.error(f"unknown size(s): {', '.join(sorted(unknown))}")
    if args.worker:
        print(json.dumps(worker(args.worker, sizes, args.keystrokes, args.seed, args.import_from, args.paste_block)))
        return 0
    if args.quick:
        sizes, args.keystrokes, args.rounds = ["10KB"], 200, 1
    from bench.common import write_result  # psutil and friends: not needed by the workers

    impls: dict[str, list[str]] = {"encspaces": ["--worker", "encspaces"], "bare": ["--worker", "bare"]}
    if args.baseline is not None:
        if not (args.baseline / "encspaces" / "__init__.py").exists():
            parser.error(f"--baseline {args.baseline}: no encspaces package there")
        impls["baseline"] = ["--worker", "encspaces", "--import-from", str(args.baseline.resolve())]
    order = list(impls)
    per: dict[str, list[dict[str, float]]] = {name: [] for name in order}
    for r in range(args.rounds):
        for name in order[r % len(order):] + order[: r % len(order)]:
            command = [sys.executable, "-m", "bench.typing", *impls[name], "--sizes", ",".join(sizes),
                       "--keystrokes", str(args.keystrokes), "--seed", str(args.seed),
                       *(["--paste-block", str(args.paste_block)] if args.paste_block is not None else [])]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False,
                                  cwd=Path(__file__).resolve().parent.parent)
            if done.returncode != 0:
                raise SystemExit(f"bench.typing worker {name} failed:\n{done.stdout}\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            per[name].append(result)
            print(f"  typing {name} round {r + 1}: " + ", ".join(f"{k} {v:.1f} µs" for k, v in result.items()),
                  file=sys.stderr)
    keys = [f"{s}/{w}" for s in sizes for w in WORKLOADS]
    medians = {name: {k: median([run[k] for run in runs]) for k in keys} for name, runs in per.items()}
    smallest = sizes[0]
    results = []
    for name in order:
        m = medians[name]
        growth = {f"{s}/{w}": (m[f"{s}/{w}"] or 0) / (m[f"{smallest}/{w}"] or 1) for s in sizes for w in WORKLOADS}
        results.append({"contender": name, "rounds": per[name], "median": m, "errors": [],
                        f"ratio_vs_{smallest}": growth})
    payload = {
        "sizes": {s: SIZES[s] for s in sizes}, "workloads": WORKLOADS, "keystrokes": args.keystrokes,
        "paste_block": args.paste_block, "rounds": args.rounds, "unit": "µs per keystroke",
        "contenders": {"encspaces": "SharedText in an encspaces Document (this checkout)",
                       "bare": "bare pycrdt Text, UTF-8 offsets worked out beforehand (Yrs alone)",
                       **({"baseline": f"SharedText of {args.baseline}"} if args.baseline else {})},
        "results": results,
    }
    path = write_result("typing", payload, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
