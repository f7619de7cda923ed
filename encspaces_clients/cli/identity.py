"""``init`` and ``whoami``: this person's and this device's identity, and the display name others see."""

from __future__ import annotations

import argparse
import getpass
import sys

from encspaces.core.identity import Identity

from .errors import EXIT_OK, EXIT_USAGE, CliError
from .home import Context
from .output import warn

MAX_DISPLAY_NAME = 32


def display_name(text: str) -> str:
    name = " ".join(text.split())
    if not name or len(name) > MAX_DISPLAY_NAME or not name.isprintable():
        raise CliError(f"a display name is 1 to {MAX_DISPLAY_NAME} printable characters, not {text!r}", EXIT_USAGE)
    return name


def ask_name() -> str | None:
    """The display name, asked on a terminal (None when not a terminal, or left empty)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    print("Your name, as the other members see it next to your cursor (Enter: none): ", end="", file=sys.stderr,
          flush=True)
    answer = sys.stdin.readline().strip()
    return display_name(answer) if answer else None


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "me"


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.identity_path
    name = None if args.name is None else display_name(args.name)
    if path.exists() and not args.force:
        if args.exist_ok:
            identity = Identity.load(path)
            if name is not None and name != identity.name:
                identity.name = name
                identity.save(path, overwrite=True)
                warn(f"your display name is now {name!r}")
            print(identity.public_string)
            return EXIT_OK
        raise CliError(f"{path} already exists (`encspaces whoami` shows it; --force replaces it and loses "
                       "that identity; `init --exist-ok --name NAME` changes your display name)")
    if name is None:
        name = ask_name()
    # A person (the key that certifies your devices) and this first device of theirs.
    identity = Identity.generate_person(name, args.device_name or "")
    identity.save(path, overwrite=args.force)
    print(identity.public_string)
    warn(f"created your identity and this device's in {path}; others add you with the line above; "
         "`encspaces device pair` on another device of yours, `encspaces identity export-person` to back up")
    if name is None:
        warn(f"no display name set: others see {user_name()!r}; `encspaces init --exist-ok --name NAME` sets one")
    return EXIT_OK


def cmd_whoami(ctx: Context, args: argparse.Namespace) -> int:
    identity = ctx.identity()
    print(identity.person_id if args.member_id else identity.public_string)
    return EXIT_OK
