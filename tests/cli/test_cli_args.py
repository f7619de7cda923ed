"""Ids are base64url, so one in 64 starts with "-": the command line must still take them.

Whole ids, the prefixes ``invites`` and ``members`` show, and prefixes that look like one of
the command's own short options (``-h``, ``-y``) are values; options still parse beside them.
"""

from __future__ import annotations

import pytest

from encspaces.core.identity import Identity, member_id
from encspaces_clients.cli.main import build_parser
from encspaces_relay.process import RelayProcess

from .conftest import User

DASHED = member_id(bytes([0xF8]) + bytes(31))  # base64url of 0b111110...: starts with "-"
# A fixed device whose member id starts with "-h": read as an option, that is `--help`.
BOB_SEED = (15886).to_bytes(32, "big")
DASHED_BOB = "-hLwc92w1fWNMOoCa7bUd4NimO72Zd1sJDr866CD3CQ"


def test_the_dashed_ids_are_real_member_ids() -> None:
    assert DASHED.startswith("-") and len(DASHED) == 43
    assert Identity(BOB_SEED, bytes(32)).member_id == DASHED_BOB


@pytest.mark.parametrize("value", [DASHED, DASHED[:8], DASHED[:4], DASHED_BOB, DASHED_BOB[:8], "-yAbC",
                                   "--" + DASHED[2:]])
@pytest.mark.parametrize("argv", [
    ["remove", "notes", "{}"],
    ["set-role", "notes", "{}", "admin"],
    ["revoke-invite", "notes", "{}"],
    ["invite", "revoke", "notes", "{}"],
    ["cat", "{}"],
    ["forget", "{}", "--yes"],
    ["join", "{}", "--relay", "ws://127.0.0.1:1"],
    ["members", "{}", "--timeout", "3"],
])
def test_an_id_or_prefix_starting_with_a_dash_is_a_value(argv: list[str], value: str) -> None:
    args = build_parser().parse_args([value if a == "{}" else a for a in argv])
    found = [v for v in vars(args).values() if v == value or (isinstance(v, list) and value in v)]
    assert found, vars(args)


def test_options_still_parse_beside_it() -> None:
    args = build_parser().parse_args(["members", DASHED, "--timeout", "3"])
    assert args.timeout == 3.0 and args.space == DASHED
    forget = build_parser().parse_args(["forget", DASHED_BOB[:8], "-y"])
    assert forget.space == DASHED_BOB[:8] and forget.yes
    get = build_parser().parse_args(["files", "notes", "get", "a.txt", "-oOUT"])  # a short option's value attached
    assert get.output == "OUT"


def test_a_prefix_starting_with_two_dashes_goes_after_the_separator() -> None:
    """``--AbC`` may be a mistyped option: it is a value only after ``--`` (a whole id needs none)."""
    prefix = "--" + DASHED[2:8]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["remove", "notes", prefix])
    assert build_parser().parse_args(["remove", "notes", "--", prefix]).member == prefix
    assert build_parser().parse_args(["set-role", "notes", "--", prefix, "reader"]).role == "reader"


async def test_a_member_whose_id_starts_with_a_dash(relay: RelayProcess, alice: User, bob: User) -> None:
    """End to end, Bob's id starting with "-h": by prefix and whole, in every command naming a member."""
    await alice.ok("init")
    bob.home.mkdir(parents=True)
    identity = Identity(BOB_SEED, bytes(32), name="bob")
    identity.save(bob.home / "identity.key")
    assert (await bob.ok("whoami", "--member-id")).strip() == DASHED_BOB
    space_id = (await alice.ok("create", "notes", "--relay", relay.url)).strip()
    await alice.ok("add", "notes", str(identity.public))
    assert (await bob.ok("join", space_id, "--relay", relay.url, "--name", "notes")).strip() == "notes"
    assert f"{DASHED_BOB} is now reader" in await alice.ok("set-role", "notes", DASHED_BOB[:8], "reader")
    assert f"{DASHED_BOB} is now writer" in await alice.ok("set-role", "notes", DASHED_BOB, "writer")
    assert f"{DASHED_BOB} is now admin" in await alice.ok("set-role", "notes", "--", DASHED_BOB[:6], "admin")
    await alice.ok("set-role", "notes", DASHED_BOB[:4], "writer")
    hint = await bob.run("leave", "notes")  # a writer may not remove itself: the hint names its id
    assert hint.code != 0 and f"encspaces remove SPACE {DASHED_BOB}" in hint.err, hint
    removed = await alice.ok("remove", "notes", DASHED_BOB[:8])
    assert DASHED_BOB[:8] in removed and DASHED_BOB not in await alice.ok("members", "notes")
