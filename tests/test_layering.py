"""Which way imports go: the SDK loads no client, the editor no CLI, the CLI the editor only for ``edit``.

And the editor's toolkit (textual) is an extra: ``pip install encspaces`` does not pull it.
"""

from __future__ import annotations

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
    return {m for m in modules if m.partition(".")[0] in ("clients", "textual")}


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
    loaded = _loaded_after("import clients.editor")
    assert "clients.editor.app" in loaded and "textual" in loaded
    assert {m for m in loaded if m.startswith(("clients.cli", "encspaces.cli"))} == set()


def test_the_cli_loads_the_editor_only_to_edit() -> None:
    loaded = _loaded_after("import clients.cli.main")
    assert "clients.cli.content" in loaded
    assert {m for m in loaded if m.startswith("clients.editor") or m.partition(".")[0] == "textual"} == set()


def test_textual_is_an_extra_not_a_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("textual") for dep in project["dependencies"])
    assert any(dep.startswith("textual") for dep in project["optional-dependencies"]["editor"])
    assert project["scripts"]["encspaces"] == "clients.cli.main:main"


def test_edit_without_textual_says_how_to_install_it(tmp_path: Path) -> None:
    # textual made unimportable, as in an installation without the editor extra.
    code = ("import sys; sys.modules['textual'] = None; from clients.cli.main import main; "
            "sys.exit(main(['--home', sys.argv[1], 'edit', 'notes']))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 5, result  # EXIT_UNAVAILABLE
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "pip install 'encspaces[editor]'" in result.stderr
