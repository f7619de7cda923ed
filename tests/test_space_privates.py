"""Tests drive a space through its public API: none reaches into the private fields of ``Space``.

The rule is deliberately simple: an attribute access ``x._name`` anywhere under tests/ whose
name is one of the private fields ``Space.__init__`` assigns (or a private method of ``Space``),
or a ``setattr(..., "_name", ...)`` naming one (a monkeypatch), fails, listing file:line. There
are no exceptions: a test holds back sends through a lying relay (``tests.support``), reads
state through the public API (``space.state``, ``space.epoch_keys``), and reads a store or the
relay's database as an onlooker would.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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


def reaches(tree: ast.AST, fields: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every access to one of ``fields``: ``x._name``, or ``setattr(x, "_name", ...)``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in fields and not (
                isinstance(node.value, ast.Name) and node.value.id == "self"):
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            target = node.args[1]
            if name == "setattr" and isinstance(target, ast.Constant) and target.value in fields:
                found.append((node.lineno, str(target.value)))
    return found


def test_the_rule_sees_both_ways_in() -> None:
    tree = ast.parse("space._box.entries\nmonkeypatch.setattr(Space, '_flush_batch', f)\nself._box\nspace.box\n")
    assert sorted(reaches(tree, {"_box", "_flush_batch"})) == [(1, "_box"), (2, "_flush_batch")]


def test_no_test_touches_a_private_field_of_space() -> None:
    fields = private_fields()
    found: list[str] = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == Path(__file__).name or path.parent.name in NO_SPACE:
            continue
        for line, name in reaches(ast.parse(path.read_text()), fields):
            found.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not found, "tests reach into Space's private fields (use the public API or tests.support):\n" + "\n".join(
        found)
