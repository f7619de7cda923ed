"""The package as an application imports it: its exports, version, logging and import cost."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import encspaces
import encspaces.errors
import encspaces_relay

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_pyprojects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert encspaces.__version__ == project["version"]


def test_every_export_resolves() -> None:
    for name in encspaces.__all__:
        assert getattr(encspaces, name) is not None, name
    assert set(encspaces.__all__) <= set(dir(encspaces))
    with pytest.raises(AttributeError):
        encspaces.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_every_error_is_exported_and_an_encspaces_error() -> None:
    classes = {name for name, obj in vars(encspaces.errors).items()
               if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == "encspaces.errors"}
    assert classes <= set(encspaces.__all__), classes - set(encspaces.__all__)
    for name in classes:
        assert issubclass(getattr(encspaces, name), encspaces.EncspacesError), name


def test_the_types_the_api_returns_are_exported() -> None:
    from encspaces.files import FileRef, SpaceFiles
    from encspaces.history import HistoryEntry, SpaceView
    from encspaces.presence_channel import PresenceChange, PresenceChannel
    from encspaces.shared.feed import ChangeStream
    from encspaces.shared.query import Row
    from encspaces.space import Space
    from encspaces.streams import EventStream

    for cls in (FileRef, SpaceFiles, HistoryEntry, SpaceView, PresenceChange, PresenceChannel, ChangeStream, Row,
                Space, EventStream):
        assert getattr(encspaces, cls.__name__) is cls


def test_the_library_logs_nowhere_by_itself() -> None:
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("encspaces").handlers)


def _loaded_after(statement: str) -> set[str]:
    code = f"{statement}; import sys; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


HEAVY = {"pycrdt", "aiosqlite", "encspaces.space", "encspaces.document", "websockets.asyncio.client",
         "websockets.client"}


def test_the_relay_does_not_load_the_client() -> None:
    loaded = _loaded_after("import encspaces_relay.server")
    assert "encspaces_relay.server" in loaded
    # The relay keeps its own store in aiosqlite and serves websockets: only the client side is absent.
    assert loaded & (HEAVY - {"aiosqlite"}) == set()


def test_the_rule_engine_loads_no_io() -> None:
    loaded = _loaded_after("import encspaces.core.log_state")
    assert "encspaces.core.log_state" in loaded
    assert loaded & (HEAVY | {"websockets"}) == set()


def test_a_lazy_name_loads_its_module() -> None:
    loaded = _loaded_after("import encspaces; encspaces.Space")
    assert "encspaces.space" in loaded


def _module_loggers() -> dict[str, logging.Logger]:
    """Every module of the SDK and the relay that has a logger, by module name."""
    import importlib
    import pkgutil


    found = {}
    for package in (encspaces, encspaces_relay):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            log = getattr(module, "log", None)
            if isinstance(log, logging.Logger):
                found[info.name] = log
    return found


def test_one_logger_per_module_named_after_it() -> None:
    loggers = _module_loggers()
    assert "encspaces.space" in loggers and "encspaces_relay.server" in loggers
    for module, log in loggers.items():
        assert log.name == module


def test_every_logger_is_documented() -> None:
    guide = (ROOT / "docs" / "logging.md").read_text()
    for module in _module_loggers():
        assert f"`{module}`" in guide, f"{module} logs but docs/logging.md does not list it"
