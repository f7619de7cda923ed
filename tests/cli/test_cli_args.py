"""Ids are base64url, so one in 64 starts with "-": the command line must still take them."""

from __future__ import annotations

import pytest

from encspaces.core.identity import member_id
from encspaces_clients.cli.main import build_parser

DASHED = member_id(bytes([0xF8]) + bytes(31))  # base64url of 0b111110...: starts with "-"


def test_the_dashed_id_is_a_real_member_id() -> None:
    assert DASHED.startswith("-") and len(DASHED) == 43


@pytest.mark.parametrize("argv", [
    ["remove", "notes", DASHED],
    ["set-role", "notes", DASHED, "admin"],
    ["revoke-invite", "notes", DASHED],
    ["cat", DASHED],
    ["members", DASHED, "--timeout", "3"],
])
def test_an_id_starting_with_a_dash_is_a_value(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert DASHED in vars(args).values()


def test_options_still_parse_beside_it() -> None:
    args = build_parser().parse_args(["members", DASHED, "--timeout", "3"])
    assert args.timeout == 3.0 and args.space == DASHED
