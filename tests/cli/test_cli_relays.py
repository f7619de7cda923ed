"""Several relays on the command line and in spaces.json: a cluster's relays, which the space fails over between."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encspaces_clients.cli.home import DEFAULT_RELAY, ENV_RELAY, Registry, SpaceRef, relay_list
from encspaces_clients.cli.main import build_parser

SPACE_ID = "A" * 43


def test_relay_flags_repeated_or_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["create", "notes", "--relay", "ws://a:1, ws://b:2", "--relay", "ws://c:3"])
    assert relay_list(args.relay) == ("ws://a:1", "ws://b:2", "ws://c:3")
    assert relay_list(["ws://a:1", "ws://a:1,ws://b:2"]) == ("ws://a:1", "ws://b:2")  # no repeats
    monkeypatch.setenv(ENV_RELAY, "ws://e:1,ws://f:2")
    assert relay_list(None) == ("ws://e:1", "ws://f:2")
    monkeypatch.delenv(ENV_RELAY)
    assert relay_list(None) == (DEFAULT_RELAY,)


def test_spaces_json_keeps_the_list_and_reads_the_old_single_relay(tmp_path: Path) -> None:
    path = tmp_path / "spaces.json"
    path.write_text(json.dumps({"version": 1, "spaces": {
        "old": {"id": SPACE_ID, "relay": "ws://a:1", "data_dir": str(tmp_path)}}}))
    registry = Registry(path)
    assert registry.spaces["old"].relays == ("ws://a:1",)
    registry.add(SpaceRef("new", SPACE_ID, ("ws://a:1", "ws://b:2"), tmp_path))
    stored = json.loads(path.read_text())["spaces"]["new"]
    assert stored["relays"] == ["ws://a:1", "ws://b:2"] and stored["relay"] == "ws://a:1"  # older CLIs read "relay"
    assert Registry(path).spaces["new"].relays == ("ws://a:1", "ws://b:2")
