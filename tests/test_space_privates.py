"""Tests drive a space through its public API: none reaches into the private fields of ``Space``.

The rule is deliberately simple: an attribute access ``x._name`` anywhere under tests/ whose
name is one of the private fields ``Space.__init__`` assigns (or a private method of ``Space``)
fails, listing file:line, unless it is in ``REMAINING`` below, the explicit list of accesses
not yet replaced by a public seam. That list may only shrink: an entry that no longer occurs
fails too.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# file -> how many such accesses it still makes (to be replaced by public seams, then removed here).
REMAINING: dict[str, int] = {
    "tests/editor/test_editor.py": 1,
    "tests/files/test_files_stream.py": 1,
    "tests/sdk/test_join_durability.py": 1,
    "tests/sdk/test_key_confirmation.py": 1,
    "tests/sdk/test_lifecycle.py": 2,
    "tests/sdk/test_membership.py": 8,
}


# Suites that never hold a Space (the relay, the core, the witness): a private name there
# (the relay store's ``_write_lock``) belongs to another class.
NO_SPACE = {"relay", "core", "witness"}


def private_fields() -> set[str]:
    tree = ast.parse((ROOT / "encspaces" / "space.py").read_text())
    space = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Space")
    init = next(n for n in space.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    names: set[str] = set()
    for node in ast.walk(init):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            for part in ast.walk(target):
                if (isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) and part.value.id == "self"
                        and part.attr.startswith("_") and not part.attr.startswith("__")):
                    names.add(part.attr)
    # Its private methods too: calling one (``_queue_entry``, ``_fail``) is the same reach inside.
    names |= {n.name for n in space.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
              and n.name.startswith("_") and not n.name.startswith("__")}
    return names


def test_the_private_fields_are_found() -> None:
    assert {"_verifier", "_document", "_box", "_store", "_tasks"} <= private_fields()


def test_no_test_touches_a_private_field_of_space() -> None:
    fields = private_fields()
    found: list[str] = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == Path(__file__).name or path.parent.name in NO_SPACE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in fields and not (
                    isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: ._{node.attr[1:]}")
    counts = Counter(line.partition(":")[0] for line in found)
    new = [line for line in found if counts[line.partition(":")[0]] > REMAINING.get(line.partition(":")[0], 0)]
    assert not new, "tests reach into Space's private fields (use a public seam):\n" + "\n".join(new)
    gone = {f: n for f, n in REMAINING.items() if counts.get(f, 0) < n}
    assert not gone, f"fewer private accesses than REMAINING allows: shrink it to {dict(counts)}"
