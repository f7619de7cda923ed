"""The command line: the parser of every command, and ``main`` (the ``encspaces`` console script)."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

import encspaces

from ..terminal import printable
from .errors import EXIT_CODES_HELP, EXIT_INTERRUPTED, explain
from .home import (
    DEFAULT_DOC,
    DEFAULT_RELAY,
    DEFAULT_TIMEOUT,
    ENV_DATA,
    ENV_HOME,
    ENV_IDENTITY,
    ENV_NAME,
    ENV_RELAY,
    Context,
)
from .output import warn

# A member, space or invite id, or a prefix of one (4+ characters, see membership.find_member),
# that starts with "-": base64url, so one id in 64 does. A whole id may even start with "--".
_DASHED_PREFIX = re.compile(r"-[A-Za-z0-9_][A-Za-z0-9_-]{2,}")
_FULL_ID = re.compile(r"-[A-Za-z0-9_-]{42}")


class _Parser(argparse.ArgumentParser):
    """An argparse parser that takes an id, or a prefix of one, starting with "-" as a value.

    argparse reads every argument that starts with "-" as an option; ids are base64url, so
    without this one id in 64 could not be passed at all, nor could the 8-character prefix
    `encspaces invites` shows. A value is: a whole id (43 characters), or "-" then at least
    three base64url characters that are not one of the command's options (``-y`` stays an
    option; ``-oFILE`` too, since ``-o`` takes a value). A prefix that starts with "--" cannot
    be told from a mistyped option: it goes after ``--`` (``encspaces remove SPACE -- --AbC``),
    which, as everywhere, makes every later argument a value.
    """

    def _parse_optional(self, arg_string: str) -> Any:
        if _FULL_ID.fullmatch(arg_string):
            return None  # a positional value
        if _DASHED_PREFIX.fullmatch(arg_string) and arg_string not in self._option_string_actions:
            short = self._option_string_actions.get(arg_string[:2])
            if short is None or short.nargs == 0:
                return None  # not an option of this command, nor one with its value attached
        return super()._parse_optional(arg_string)


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--home", default=default, help=f"data folder (default: ${ENV_HOME}, else "
                        "$XDG_DATA_HOME/encspaces, else ~/.local/share/encspaces)")
    parser.add_argument("--identity", default=default,
                        help=f"identity file (default: ${ENV_IDENTITY}, else HOME/identity.key)")
    parser.add_argument("--data-dir", default=default,
                        help=f"where spaces' local stores live (default: ${ENV_DATA}, else HOME/data)")
    parser.add_argument("--timeout", type=float, default=default,
                        help=f"seconds to wait for the relay (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--debug", action="store_true", default=default, help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="encspaces", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="End-to-end-encrypted, verifiable collaboration: spaces shared through an untrusted relay.",
        epilog=EXIT_CODES_HELP)
    _common(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"encspaces {encspaces.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
        """A command run by ``handler``, "module:function" of this package (see ``handler_of``)."""
        p = sub.add_parser(name, help=summary, description=textwrap.fill(description or summary, 88),
                           epilog=EXIT_CODES_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, suppress=True)
        p.set_defaults(handler=handler)
        return p

    def space_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("space", metavar="SPACE", help="a space's local name (or its id, or a prefix of the id)")

    def offline_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--offline", action="store_true", help="use this device's copy without asking the relay")

    p = command("init", "identity:cmd_init", "create this device's identity",
                "Create this device's identity (its keys) and print the public identity string that others "
                "use to add it to a space. Your display name is asked (on a terminal) or given with --name, and "
                "kept with the identity.")
    p.add_argument("--force", action="store_true", help="replace an existing identity (it is lost)")
    p.add_argument("--exist-ok", action="store_true", help="succeed, printing it, when an identity exists")
    p.add_argument("--name", help="your display name, shown to other members (asked when run in a terminal); "
                   f"${ENV_NAME} overrides it")
    p.add_argument("--device-name", help="a name for this device (laptop, phone), shown with your devices")

    p = command("whoami", "identity:cmd_whoami", "print this device's public identity")
    p.add_argument("--member-id", action="store_true", help="print the short member id instead")

    p = command("create", "spaces:cmd_create", "create a space on a relay",
                "Create a space on the relay and remember it under NAME on this device; you are its admin.")
    p.add_argument("name", metavar="NAME", help="the local name for the space")
    p.add_argument("--relay", action="append", help=f"relay URL; several (repeated or comma-separated): a cluster's "
                   f"relays, tried in turn (default: ${ENV_RELAY}, else {DEFAULT_RELAY})")
    p.add_argument("--exist-ok", action="store_true", help="succeed when this device already has a space NAME")
    p.add_argument("--witness", nargs=2, action="append", default=[], metavar=("KEY", "URL"),
                   help="a witness of the space: its key as encspaces-witness prints it, and its URL "
                        "(repeatable; strongly recommended, docs/operations.md)")
    p.add_argument("--quorum", type=int, default=None,
                   help="how many of the witnesses must cosign a checkpoint (default: a majority)")

    p = command("spaces", "spaces:cmd_spaces", "list the spaces this device knows")
    p.add_argument("--names", action="store_true", help="print only the names")

    p = command("invite", "membership:cmd_invite", "make an invite link (admins)",
                "Make a link that lets a new device join SPACE. Anyone holding the link can join while it is "
                "valid, so send it privately. `encspaces invites SPACE` lists open invites, `encspaces invite "
                "revoke SPACE INVITE` revokes one.")
    space_arg(p)
    p.add_argument("--role", default="writer", help="role of who joins: admin, writer or reader (default writer)")
    p.add_argument("--uses", type=int, default=1, help="how many devices may join with it (default 1)")
    p.add_argument("--expires", default="7d", help="how long it is valid: 90s, 30m, 12h, 7d, 2w (default 7d)")
    p.add_argument("--no-history", action="store_true", help="who joins cannot read what was written before")
    p.add_argument("revoke_args", nargs="*", metavar="", help=argparse.SUPPRESS)  # `invite revoke SPACE INVITE`

    p = command("invites", "membership:cmd_invites", "list a space's open invites",
                "List the open invites of SPACE (not revoked, not used up; expired ones say so): id, role, "
                "uses, expiry, who made it. `encspaces revoke-invite SPACE INVITE` revokes one.")
    space_arg(p)

    p = command("revoke-invite", "membership:cmd_revoke_invite",
                "revoke an open invite (admins); the space gets a new key",
                "Revoke an open invite of SPACE, named by its id (or a prefix of it, see `encspaces invites`) or "
                "its link; also `encspaces invite revoke SPACE INVITE`. Its link stops working, the relay closes "
                "connections it let in with it, and a new key epoch starts that the link never gets.")
    space_arg(p)
    p.add_argument("invite", metavar="INVITE", help="the invite's id, a prefix of it, or its link")

    p = command("join", "spaces:cmd_join", "join a space with an invite link",
                "Join a space with an invite link, or open a space you were added to by your public identity "
                "(give its space id and --relay), and remember it on this device.")
    p.add_argument("link", metavar="LINK", help="the invite link, or the id of a space you were added to")
    p.add_argument("--name", help="the local name for the space (default: space-<id prefix>)")
    p.add_argument("--relay", action="append", help=f"with a space id: its relay or relays (default: ${ENV_RELAY}, "
                   f"else {DEFAULT_RELAY}); with a link: instead of the link's relays")

    p = command("members", "membership:cmd_members", "list a space's members and roles")
    space_arg(p)

    p = command("add", "membership:cmd_add", "add a member by their public identity (admins)")
    space_arg(p)
    p.add_argument("identity_string", metavar="PUBLIC_IDENTITY", help="the line `encspaces whoami` prints for them")
    p.add_argument("--role", default="writer", help="admin, writer or reader (default writer)")

    p = command("remove", "membership:cmd_remove", "remove a member (admins); the space gets a new key")
    space_arg(p)
    p.add_argument("member", metavar="MEMBER", help="member id (or a prefix of it) or public identity")

    p = command("set-role", "membership:cmd_set_role", "change a member's role (admins)",
                "Make MEMBER of SPACE an admin, a writer or a reader. The space always keeps at least one admin.")
    space_arg(p)
    p.add_argument("member", metavar="MEMBER", help="member id (or a prefix of it) or public identity")
    p.add_argument("role", metavar="ROLE", help="admin, writer or reader")

    p = command("rotate-key", "membership:cmd_rotate_key", "start a new key epoch now (admins)",
                "Give SPACE a new key now: what is written from here on uses a key sealed to the current members "
                "only. Removals and revocations already do this; the policy can also do it on a schedule.")
    space_arg(p)

    p = command("leave", "spaces:cmd_leave", "leave a space (admins; others ask an admin)",
                "Remove yourself from SPACE. Only admins may remove members, so an admin can leave (if another "
                "admin stays); a writer or reader is told whom to ask. `encspaces forget` then drops the copy.")
    space_arg(p)

    p = command("forget", "spaces:cmd_forget", "drop a space from this device",
                "Remove SPACE from this device's list of spaces and delete its local copy (after a confirmation, "
                "or with --yes). The space itself, its members and the relay's copy are untouched; a space you "
                "were removed from is forgotten this way.")
    space_arg(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = command("edit", "content:cmd_edit", "edit a shared text in the terminal editor",
                "Open the collaborative editor on the text DOC of SPACE. Typing goes into the space at once; "
                "others' edits and cursors appear live, each verified before it is shown. Ctrl+Q quits, F1 "
                "lists the keys. For scripts, --append and --replace edit without the editor.")
    space_arg(p)
    p.add_argument("doc", metavar="DOC", nargs="?", default=DEFAULT_DOC, help=f"the text (default {DEFAULT_DOC})")
    p.add_argument("--name", help=f"your display name for others (default: ${ENV_NAME}, else the name given at "
                   "`init`, else your user name)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--append", metavar="TEXT", help="append TEXT ('-' reads stdin) and exit, no editor")
    group.add_argument("--replace", metavar="TEXT", help="replace the whole text with TEXT ('-': stdin) and exit")

    p = command("cat", "content:cmd_cat", "print a shared text",
                "Print the text DOC of SPACE. Control characters in it (terminal escape sequences a member may "
                "have put in) and format characters (bidi overrides and isolates that reorder what a terminal "
                "shows, zero-width characters that hide text; not the joiners U+200C and U+200D) are shown as "
                "visible stand-ins such as \u241b and \ufffd; --raw prints the text exactly.")
    space_arg(p)
    p.add_argument("doc", metavar="DOC", nargs="?", default=DEFAULT_DOC, help=f"the text (default {DEFAULT_DOC})")
    offline_arg(p)
    p.add_argument("--raw", action="store_true", help="print the text exactly, control and format characters included "
                   "(for files and scripts; never to a terminal)")

    p = command("log", "verification:cmd_log", "show the verified history of a space",
                "Catch up with the relay, re-verify this device's log from genesis and print it: seq, time "
                "(the author's clock), author, kind and what the entry did.")
    space_arg(p)
    offline_arg(p)
    p.add_argument("--limit", type=int, help="show only the last N entries")

    p = command("verify", "verification:cmd_verify", "re-verify the whole local log from genesis",
                "Catch up with the relay (checking its signed heads against this log: no fork, no rollback), "
                "then re-verify every stored entry from genesis: the genesis against the space id, author "
                "signatures and body digests, the hash chain to every stored head, membership, roles, author "
                "order, parents and epochs, and the relay's signatures over the signed heads this device kept "
                "(one per frame in the newest 4096 seqs, one per 1024 seqs further back), and the newest "
                "cosigned checkpoints it kept (one per witness: the relay's signature, the cosignatures of the "
                "policy's witnesses, the root against the stored log's Merkle root). Exit code 3 when "
                "anything fails.")
    space_arg(p)
    offline_arg(p)

    p = command("safety-code", "verification:cmd_safety_code", "a short code to compare with another member",
                "Print a code derived from the verified head at one seq. Two members who compare codes at the "
                "same seq (by phone or in person) rule out a relay showing them different histories.")
    space_arg(p)
    offline_arg(p)
    p.add_argument("--seq", type=int, help="the seq to take the code at (default: the newest verified)")

    p = command("evidence", "verification:cmd_evidence", "export, or check, the proof of a relay's misbehaviour",
                "When a space fails with a fork, a rollback or withholding, this device records the relay's "
                "signed statements that show it, with the genesis binding the relay's key to the space, in one "
                "self-contained file. `evidence SPACE --out FILE` exports it (to stdout without --out); "
                "`evidence --check FILE` verifies one offline, and says what it proves. Exit code 3 when a file "
                "does not check.")
    p.add_argument("space", metavar="SPACE", nargs="?", help="a space's local name (or its id, or a prefix of the id)")
    p.add_argument("--out", metavar="FILE", help="where to write the evidence file (default: stdout)")
    p.add_argument("--check", metavar="FILE", help="verify an evidence file instead of exporting one")
    p = command("status", "verification:cmd_status", "show how far a space is verified and witnessed",
                "Open the space, catch up with the relay, and print the seq verified on this device and how far "
                "the space's witnesses vouch for it: 'witnessed through N (k of n)', or 'not witnessed (no "
                "witnesses)'.")
    space_arg(p)

    p = command("files", "files:cmd_files", "share encrypted files in a space")
    space_arg(p)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = actions.add_parser("put", help="upload a file")
    put.add_argument("path", metavar="PATH")
    put.add_argument("--name", help="name in the space (default: the file's name)")
    get = actions.add_parser("get", help="download a file")
    get.add_argument("name", metavar="NAME")
    get.add_argument("-o", "--output", help="where to write it (default: ./NAME)")
    get.add_argument("--force", action="store_true", help="overwrite an existing file")
    actions.add_parser("list", aliases=["ls"], help="list files")
    rm = actions.add_parser("delete", aliases=["rm"], help="remove a file")
    rm.add_argument("name", metavar="NAME")

    p = command("device", "devices:cmd_device", "pair, add, remove and list this person's devices",
                "One person, several devices. On the new device: `device pair` prints a pairing string; on a "
                "device holding the person key: `device add STRING` adds it to every space of this home and "
                "prints an approval; back on the new device: `device pair --accept APPROVAL`. `device remove "
                "DEVICE` removes a lost device from every space (each gets a new key); `device list` shows them.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pair = actions.add_parser("pair", help="on a new device: print its pairing string, or accept an approval")
    pair.add_argument("--device-name", help="a name for this device (laptop, phone), shown to the other members")
    pair.add_argument("--name", help="your display name, as for `init`")
    pair.add_argument("--accept", metavar="APPROVAL", help="the approval `device add` printed on your other device")
    add = actions.add_parser("add", help="add the device whose pairing string is given, to every space")
    add.add_argument("pairing", metavar="PAIRING", help="the esdev1.… line `device pair` printed")
    add.add_argument("--device-name", help="name the device (default: the name it chose)")
    remove = actions.add_parser("remove", help="remove a (lost) device from every space; each gets a new key")
    remove.add_argument("device", metavar="DEVICE", help="a device id (or a prefix of one): `device list`")
    actions.add_parser("list", help="list this person's devices")

    p = command("identity", "devices:cmd_identity", "export or import the person key",
                "The person key certifies your devices; it lives on your first device. `identity export-person` "
                "prints it as a recovery phrase (and with --out writes it to a file); `identity import-person` "
                "gives it to this device, from a file or --phrase.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser("export-person", help="print the person key as a recovery phrase")
    export.add_argument("--out", metavar="FILE", help="also write it to FILE (created 0600)")
    imported = actions.add_parser("import-person", help="give this device the person key")
    imported.add_argument("file", metavar="FILE", nargs="?", help="a file `export-person --out` wrote")
    imported.add_argument("--phrase", help="the recovery phrase instead of a file")
    return parser


def handler_of(name: str) -> Callable[[Context, argparse.Namespace], int]:
    """The function that runs a command, "module:function", its module imported now: only the
    command that runs loads what it needs (the SDK's network code for a command that opens a
    space), and ``--help``, ``--version``, ``whoami`` or ``init`` load none of it."""
    module, _, function = name.partition(":")
    handler: Callable[[Context, argparse.Namespace], int] = getattr(
        importlib.import_module(f"{__package__}.{module}"), function)
    return handler


def _setup_logging(debug: bool) -> None:
    """The SDK logs failures as it meets them; the command reports them itself, once."""
    if debug:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        logging.getLogger("encspaces").addHandler(logging.NullHandler())
        logging.getLogger("encspaces").propagate = False


def main(argv: Iterable[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    ctx = Context.from_args(args)
    _setup_logging(ctx.debug)
    try:
        code: int = handler_of(args.handler)(ctx, args)
    except KeyboardInterrupt:
        if ctx.debug:
            raise
        warn("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if ctx.debug:
            raise
        message, code = explain(exc)
        print(f"error: {printable(message, lines=True)}", file=sys.stderr)  # errors may quote members' values
        return code
    return code


if __name__ == "__main__":
    sys.exit(main())
