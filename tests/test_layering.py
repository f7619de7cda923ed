"""Which way imports go: the SDK loads no client, the editor no CLI, the CLI the editor only for ``edit``.

And the editor's toolkit (textual) is an extra: ``pip install encspaces`` does not pull it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(statement: str) -> set[str]:
    code = f"{statement}; import sys; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


def _clients_or_textual(modules: set[str]) -> set[str]:
    return {m for m in modules if m.partition(".")[0] in ("encspaces_clients", "textual")}


@pytest.mark.parametrize("statement", [
    "import encspaces",
    "import encspaces.space",
    "import encspaces; encspaces.Space; encspaces.safety_code; encspaces.open_local; encspaces.reverify_local",
])
def test_the_sdk_loads_no_client_and_no_textual(statement: str) -> None:
    loaded = _loaded_after(statement)
    assert "encspaces" in loaded
    assert _clients_or_textual(loaded) == set()


def test_the_editor_does_not_import_the_cli() -> None:
    loaded = _loaded_after("import encspaces_clients.editor")
    assert "encspaces_clients.editor.app" in loaded and "textual" in loaded
    assert {m for m in loaded if m.startswith(("encspaces_clients.cli", "encspaces.cli"))} == set()


def test_the_cli_loads_the_editor_only_to_edit() -> None:
    loaded = _loaded_after("import encspaces_clients.cli.main, encspaces_clients.cli.content")  # as `cat` does
    assert "encspaces_clients.cli.content" in loaded and "encspaces.space" in loaded
    assert {m for m in loaded if m.startswith("encspaces_clients.editor") or m.partition(".")[0] == "textual"} == set()


def test_the_cli_loads_a_commands_module_only_to_run_it() -> None:
    """``--help``, ``--version``, ``init`` and ``whoami`` load no network code: each command's
    module, and the SDK it needs, is imported when that command runs (``main.handler_of``)."""
    heavy = {"encspaces.space", "encspaces.files", "encspaces_clients.cli.connecting", "websockets", "pycrdt"}
    for module in ("identity", "spaces"):  # (`spaces` and `forget` read this device's files alone)
        loaded = _loaded_after(f"import encspaces_clients.cli.main, encspaces_clients.cli.{module}")
        assert "encspaces_clients.cli.main" in loaded and "encspaces.core.identity" in loaded
        assert heavy & loaded == set(), module


def test_every_commands_handler_names_a_function() -> None:
    from encspaces_clients.cli.main import build_parser, handler_of

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert len(commands) > 20
    for name, command in commands.items():
        assert callable(handler_of(command.get_default("handler"))), name


def test_textual_is_an_extra_not_a_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("textual") for dep in project["dependencies"])
    assert any(dep.startswith("textual") for dep in project["optional-dependencies"]["editor"])
    assert project["scripts"]["encspaces"] == "encspaces_clients.cli.main:main"


def test_edit_without_textual_says_how_to_install_it(tmp_path: Path) -> None:
    # textual made unimportable, as in an installation without the editor extra.
    code = ("import sys; sys.modules['textual'] = None; from encspaces_clients.cli.main import main; "
            "sys.exit(main(['--home', sys.argv[1], 'edit', 'notes']))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 5, result  # EXIT_UNAVAILABLE
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "pip install 'encspaces[editor]'" in result.stderr


# --- the protocol core: pure, and what the relay and the witness build on -----------------------

CORE_DIR = ROOT / "encspaces" / "core"
IO_MODULES = ("asyncio", "websockets", "aiosqlite", "pycrdt", "socket", "ssl", "selectors")


def _encspaces_imports(path: Path, package: str) -> set[str]:
    """Every ``encspaces`` module ``path`` imports (relative imports resolved against ``package``)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [f"{base}.{alias.name}" for alias in node.names]
            found |= {base} | {n for n in names if (ROOT / Path(*n.split("."))).with_suffix(".py").exists()}
    return {m for m in found if m.partition(".")[0] == "encspaces"}


def test_the_core_loads_no_io() -> None:
    modules = sorted(p.stem for p in CORE_DIR.glob("*.py") if p.stem != "__init__")
    loaded = _loaded_after("; ".join(f"import encspaces.core.{m}" for m in modules))
    assert {f"encspaces.core.{m}" for m in modules} <= loaded
    assert {m for m in loaded if m.partition(".")[0] in IO_MODULES} == set()
    assert {m for m in loaded if m.startswith("encspaces.") and not m.startswith("encspaces.core")} == {
        "encspaces.errors"}


def test_the_core_imports_only_itself_and_the_errors() -> None:
    for path in CORE_DIR.glob("*.py"):
        outside = {m for m in _encspaces_imports(path, "encspaces.core")
                   if not m.startswith("encspaces.core") and m not in ("encspaces", "encspaces.errors")}
        assert outside == set(), f"{path.name} imports {outside}: the core must not depend on the SDK"


@pytest.mark.parametrize("folder", ["encspaces_relay", "encspaces_witness"])
def test_the_relay_and_the_witness_build_on_the_core_only(folder: str) -> None:
    for path in (ROOT / folder).glob("*.py"):
        outside = {m for m in _encspaces_imports(path, folder)
                   if not m.startswith("encspaces.core") and m not in ("encspaces", "encspaces.errors")}
        assert outside == set(), f"{folder}/{path.name} imports {outside}: only encspaces.core and encspaces.errors"
