"""The refusal codes have one home (encspaces/core/codes.py), and the docs and the code agree with it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from websockets.frames import CloseCode

from encspaces.connection import PERMANENT_REFUSALS
from encspaces.core import codes
from encspaces.core.codes import BlobCode, ProofCode, RefusalCode
from encspaces.core.encoding import pack
from encspaces.core.messages import BlobRefused, Error, decode_message
from encspaces_relay.refusals import Refusal

ROOT = Path(__file__).resolve().parents[2]

# Exactly the wire values of before the enum: a rename here is a protocol change.
WIRE = {
    "malformed", "too_large", "unexpected", "timeout", "bad_auth", "bad_genesis", "wrong_relay",
    "unknown_space", "not_a_member", "rejected", "stale_epoch", "conflict", "gap", "contended",
    "bad_invite", "removed", "internal", "unavailable", "busy", "rate_limited", "create_forbidden",
}
BLOB_WIRE = {"not_a_member", "read_only", "too_large", "quota", "bad_hash", "internal"}
PROOF_WIRE = {"beyond_head", "bad_range", "unavailable"}


def test_wire_values_are_unchanged() -> None:
    assert {code.value for code in RefusalCode} == WIRE
    assert {code.value for code in BlobCode} == BLOB_WIRE
    assert {code.value for code in ProofCode} == PROOF_WIRE


@pytest.mark.parametrize("code", list(RefusalCode))
def test_every_code_has_its_attributes(code: RefusalCode) -> None:
    assert isinstance(code.fatal, bool) and isinstance(code.permanent, bool)
    if code.fatal:
        assert code.close_code in {1001, 1008, 1009, 1011, 1013}
    else:
        # A refusal that keeps the connection answers one submission: resubmit, never fail.
        assert code.close_code is None and not code.permanent


def test_the_attributes_that_the_sdk_and_relay_rely_on() -> None:
    assert {c for c in RefusalCode if not c.fatal} == {
        RefusalCode.STALE_EPOCH, RefusalCode.CONFLICT, RefusalCode.GAP, RefusalCode.CONTENDED}
    assert PERMANENT_REFUSALS == {c for c in RefusalCode if c.permanent} == {
        "not_a_member", "unknown_space", "rejected", "malformed", "unexpected", "bad_auth", "bad_genesis",
        "wrong_relay", "too_large", "bad_invite", "removed", "rate_limited", "create_forbidden"}
    # Transient: reconnect (busy and timeout later, internal and unavailable at once).
    assert {c for c in RefusalCode if c.fatal and not c.permanent} == {
        RefusalCode.TIMEOUT, RefusalCode.BUSY, RefusalCode.INTERNAL, RefusalCode.UNAVAILABLE}


def test_close_codes_are_the_websocket_ones() -> None:
    assert codes.CLOSE_GOING_AWAY == CloseCode.GOING_AWAY
    assert codes.CLOSE_POLICY_VIOLATION == CloseCode.POLICY_VIOLATION
    assert codes.CLOSE_MESSAGE_TOO_BIG == CloseCode.MESSAGE_TOO_BIG
    assert codes.CLOSE_INTERNAL_ERROR == CloseCode.INTERNAL_ERROR
    assert codes.CLOSE_TRY_AGAIN_LATER == CloseCode.TRY_AGAIN_LATER
    assert Refusal(RefusalCode.BUSY, "x").close_code == 1013
    assert Refusal(RefusalCode.TOO_LARGE, "x").close_code == 1009
    assert Refusal(RefusalCode.UNAVAILABLE, "x").close_code == 1001
    assert Refusal(RefusalCode.INTERNAL, "x").close_code == 1011
    assert Refusal(RefusalCode.BAD_AUTH, "x").close_code == 1008


@pytest.mark.parametrize("code", list(RefusalCode))
def test_a_member_encodes_as_its_plain_string(code: RefusalCode) -> None:
    frame = Error(code, "why", fatal=code.fatal).encode()
    assert frame == pack({"t": "error", "code": code.value, "message": "why", "fatal": code.fatal, "ref": None})
    decoded = decode_message(frame)
    assert isinstance(decoded, Error) and decoded.code == code and type(decoded.code) is str


def test_a_blob_code_encodes_as_its_plain_string() -> None:
    frame = BlobRefused(1, bytes(32), BlobCode.QUOTA, "full").encode()
    assert frame == BlobRefused(1, bytes(32), "quota", "full").encode()


# --- docs/PROTOCOL.md, "Refusals" ------------------------------------------------------------


def _refusal_table() -> list[list[str]]:
    text = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    section = text.split("\n### Refusals\n", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "no refusal table under '### Refusals'"
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_the_protocol_docs_list_exactly_the_codes() -> None:
    listed: list[str] = []
    for cells in _refusal_table():
        listed += re.findall(r"`([a-z_]+)`", cells[0])
    assert sorted(listed) == sorted(code.value for code in RefusalCode)  # each once, none missing


def test_the_protocol_docs_say_what_each_code_does() -> None:
    for codes_cell, meaning, client, close in _refusal_table():
        for name in re.findall(r"`([a-z_]+)`", codes_cell):
            code = RefusalCode(name)
            assert ("**not fatal**" in meaning) is (not code.fatal), name
            assert client.startswith("space fails") is code.permanent, name
            assert close == ("none" if code.close_code is None else str(code.close_code)), name


# --- no code spelled twice ------------------------------------------------------------------

# String constants equal to a code's value that are not the code: each with why.
NOT_A_CODE = {
    ("encspaces_relay/metrics.py", "unavailable"): "the /health endpoint's status, not a refusal",
}


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def _attribute_names(tree: ast.AST) -> set[int]:
    """The name argument of getattr/hasattr/setattr (``getattr(args, "timeout")``)."""
    return {id(node.args[1]) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) >= 2}


VALUES = {code.value for code in RefusalCode} | {code.value for code in BlobCode} | {code.value for code in ProofCode}


def _spelled_codes(source: str) -> list[tuple[int, str]]:
    """(line, value) of each string constant equal to a code, docstrings and attribute names aside."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _attribute_names(tree)
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in VALUES
                  and id(node) not in skip)


def test_no_module_spells_a_code_as_a_string() -> None:
    found: set[tuple[str, str]] = set()
    where: list[str] = []
    for package in ("encspaces", "encspaces_relay", "encspaces_clients", "encspaces_witness"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name == "encspaces/core/codes.py":
                continue
            for line, value in _spelled_codes(path.read_text(encoding="utf-8")):
                found.add((name, value))
                where.append(f"{name}:{line}: {value!r}")
    assert found - NOT_A_CODE.keys() == set(), "use encspaces.core.codes instead:\n" + "\n".join(where)
    assert NOT_A_CODE.keys() <= found, "an allowed exception is gone: drop it from NOT_A_CODE"


def test_the_scan_flags_a_literal_and_passes_docstrings_and_attribute_names() -> None:
    source = ('"""A docstring may say stale_epoch."""\n'
              'def f(code: str, args: object) -> bool:\n'
              '    """quota"""\n'
              '    return code == "stale_epoch" or getattr(args, "timeout", None) or code in ("quota", "busy!")\n')
    assert _spelled_codes(source) == [(4, "quota"), (4, "stale_epoch")]
