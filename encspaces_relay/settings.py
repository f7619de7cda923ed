"""Where a flag's value comes from: the command line, then the environment, then a config file, then its default.

Every flag ``--some-flag`` of a command can also be given as the environment variable
``ENCSPACES_RELAY_SOME_FLAG`` or as the key ``some-flag`` (``some_flag`` works too) of a TOML
file named by ``--config`` (or ``ENCSPACES_RELAY_CONFIG``). A key the command does not know is
an error naming it, so a typo never silently leaves a limit at its default.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from encspaces.errors import RelayConfigError as SettingsError

ENV_PREFIX = "ENCSPACES_RELAY_"
CONFIG_FLAG = "--config"



def env_name(flag: str) -> str:
    """``--max-frame`` -> ``ENCSPACES_RELAY_MAX_FRAME``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def settable_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's flags that take a value (or are switches), by their long name without dashes."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse has no public accessor for its actions
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or isinstance(action, argparse._HelpAction | argparse._VersionAction) or longs[0] == CONFIG_FLAG:
            continue
        found[longs[0][2:]] = action
    return found


def resolve(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    *,
    environ: Mapping[str, str] | None = None,
    also_known: Collection[str] = (),
    required: Collection[str] = (),
) -> argparse.Namespace:
    """Parse ``argv`` with defaults taken from the environment and the config file.

    ``also_known``: keys the config file may hold for other commands (ignored here, not an
    error), so one file serves the daemon and its subcommands. ``required``: flags (long names
    without dashes) that must come from somewhere; argparse cannot require them itself, since
    a value from the file or the environment is as good as one on the command line.
    """
    environ = os.environ if environ is None else environ
    actions = settable_actions(parser)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument(CONFIG_FLAG, type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    config_path: Path | None = known.config
    if config_path is None and environ.get(ENV_PREFIX + "CONFIG"):
        config_path = Path(environ[ENV_PREFIX + "CONFIG"])
    defaults: dict[str, Any] = {}
    if config_path is not None:
        for key, value in _read_file(config_path).items():
            name = key.replace("_", "-")
            if name not in actions:
                if name in also_known:
                    continue
                raise SettingsError(f"{config_path}: unknown key {key!r} (known: {', '.join(sorted(actions))})")
            action = actions[name]
            defaults[action.dest] = _from_file(action, value, f"{config_path}: key {key!r}")
    for name, action in actions.items():
        variable = env_name(name)
        if variable in environ:
            defaults[action.dest] = _from_text(action, environ[variable], f"environment variable {variable}")
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    for name in required:
        if getattr(args, actions[name].dest) is None:
            parser.error(f"--{name} is required (or {env_name(name)}, or '{name}' in the --config file)")
    return args


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"the config file {path} is not valid TOML: {exc}") from exc


def _from_text(action: argparse.Action, text: str, where: str) -> Any:
    """A value given as text (the environment), converted as the flag's own parsing would."""
    if action.nargs == 0:  # a switch: true/false
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{where}: {text!r} is not a boolean (true or false)")
    convert = action.type if callable(action.type) else str
    try:
        value = convert(text)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise SettingsError(f"{where}: {text!r} is not a valid value: {exc}") from exc
    _check_choice(action, value, where)
    return value


def _from_file(action: argparse.Action, value: Any, where: str) -> Any:
    """A value from TOML: it must already have the flag's type (a number for a number...)."""
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, found {value!r}")
        return value
    if action.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif action.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        value, ok = ",".join(value), True  # a list of strings for a comma-separated flag
    else:
        ok = isinstance(value, str)
    if not ok:
        raise SettingsError(f"{where}: expected {_type_name(action)}, found {value!r}")
    if isinstance(value, str) and callable(action.type):
        value = action.type(value)
    _check_choice(action, value, where)
    return value


def _check_choice(action: argparse.Action, value: Any, where: str) -> None:
    if action.choices is not None and value not in action.choices:
        raise SettingsError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")


def _type_name(action: argparse.Action) -> str:
    if action.type is int:
        return "an integer"
    return "a number" if action.type is float else "a string"
