"""Every relay flag from the command line, the environment or a TOML file, documented in --help and README."""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import pytest

from encspaces.errors import RelayConfigError
from encspaces_relay.__main__ import build_parser, config_of, main, parse_args
from encspaces_relay.config import RelayConfig
from encspaces_relay.logs import JsonFormatter
from encspaces_relay.settings import env_name, settable_actions

README = Path(__file__).resolve().parents[2] / "README.md"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_is_flag_then_env_then_file_then_default(tmp_path: Path) -> None:
    toml = _write(tmp_path / "relay.toml", f'data-dir = "{tmp_path}"\nport = 1111\nmax-frame = 70000\n'
                                           'idle-room-seconds = 9\n')
    env = {"ENCSPACES_RELAY_PORT": "2222", "ENCSPACES_RELAY_MAX_FRAME": "80000"}
    args = parse_args(["--config", str(toml), "--max-frame", "90000"], environ=env)
    config = config_of(args)
    assert config.max_frame == 90000  # the flag
    assert config.port == 2222  # the environment over the file
    assert config.idle_room_seconds == 9.0  # the file over the default
    assert config.data_dir == tmp_path
    assert config.blob_quota == RelayConfig.blob_quota  # the default


def test_config_file_named_by_the_environment(tmp_path: Path) -> None:
    toml = _write(tmp_path / "relay.toml", f'data_dir = "{tmp_path}"\nexempt-addresses = ["10.0.0.1", "10.0.0.2"]\n'
                                           'create-policy = "closed"\n')
    config = config_of(parse_args([], environ={"ENCSPACES_RELAY_CONFIG": str(toml)}))
    assert config.exempt_addresses == frozenset({"10.0.0.1", "10.0.0.2"})
    assert config.create_policy.value == "closed"


def test_unknown_key_in_the_file_is_an_error_naming_it(tmp_path: Path) -> None:
    toml = _write(tmp_path / "relay.toml", f'data-dir = "{tmp_path}"\nmax-frames = 5\n')
    with pytest.raises(RelayConfigError, match="unknown key 'max-frames'"):
        parse_args(["--config", str(toml)], environ={})


@pytest.mark.parametrize(("text", "match"), [
    ('port = "80"', r"key 'port': expected an integer, found '80'"),
    ("log-format = 'xml'", r"'xml' is not one of text, json"),
    ("port = [", "not valid TOML"),
])
def test_bad_values_in_the_file_name_the_key(tmp_path: Path, text: str, match: str) -> None:
    toml = _write(tmp_path / "relay.toml", f'data-dir = "{tmp_path}"\n{text}\n')
    with pytest.raises(RelayConfigError, match=match):
        parse_args(["--config", str(toml)], environ={})


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(RelayConfigError, match="ENCSPACES_RELAY_MAX_CONNECTIONS: 'many' is not a valid value"):
        parse_args(["--data-dir", str(tmp_path)], environ={"ENCSPACES_RELAY_MAX_CONNECTIONS": "many"})


def test_data_dir_is_required_from_somewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args([], environ={})
    assert exited.value.code == 2
    assert "--data-dir is required (or ENCSPACES_RELAY_DATA_DIR" in capsys.readouterr().err
    assert parse_args([], environ={"ENCSPACES_RELAY_DATA_DIR": str(tmp_path)}).data_dir == tmp_path


def test_main_reports_a_bad_config_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = _write(tmp_path / "relay.toml", "nonsense = 1\n")
    assert main(["--config", str(toml)]) == 1
    assert "unknown key 'nonsense'" in capsys.readouterr().err


def test_every_flag_has_help_and_the_subcommands_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for name, action in settable_actions(parser).items():
        assert action.help and action.help != argparse.SUPPRESS, f"--{name} has no help text"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "encspaces-relay compact" in out and "encspaces-relay backup" in out
    assert "ENCSPACES_RELAY_" in out


def test_readme_table_lists_every_flag_with_its_variable_and_default() -> None:
    text = README.read_text()
    section = text[text.index("## Running a relay"):]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `--([a-z-]+)` \|.*$", section, re.M)}
    parser = build_parser()
    for name, action in settable_actions(parser).items():
        assert name in rows, f"README's relay table does not list --{name}"
        assert f"`{env_name(name)}`" in rows[name], f"README's row of --{name} does not name {env_name(name)}"
        default = action.default
        if default is not None:
            shown = f"`{default}`" if isinstance(default, str) else f"{default:g}" if isinstance(default, float) \
                else str(default)
            assert f"| {shown} " in rows[name], f"README's row of --{name} does not give its default {shown}"


def test_json_log_lines_carry_the_fields() -> None:
    record = logging.LogRecord("encspaces_relay.session", logging.INFO, __file__, 1, "conn#%d: admitted", (3,), None)
    record.__dict__.update(peer="conn#3", space="abc", seq=7)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == "encspaces_relay.session"
    assert line["message"] == "conn#3: admitted"
    assert (line["peer"], line["space"], line["seq"]) == ("conn#3", "abc", 7)
    assert line["time"].endswith("+00:00")
