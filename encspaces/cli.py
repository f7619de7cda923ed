"""The ``encspaces`` command. This first part manages the device identity; later parts add spaces."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import EncspacesError
from .identity import Identity


def default_home() -> Path:
    env = os.environ.get("ENCSPACES_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "encspaces"


def _identity_path(args: argparse.Namespace) -> Path:
    return Path(args.identity) if args.identity else Path(args.home) / "identity.key"


def _init(args: argparse.Namespace) -> int:
    path = _identity_path(args)
    if path.exists() and not args.force:
        print(f"error: {path} already exists (use --force to replace it, which loses that identity)", file=sys.stderr)
        return 1
    identity = Identity.generate()
    identity.save(path)
    print(identity.public)
    return 0


def _whoami(args: argparse.Namespace) -> int:
    print(Identity.load(_identity_path(args)).public)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encspaces", description="End-to-end-encrypted, verifiable collaboration.")
    parser.add_argument("--home", default=str(default_home()), help="data folder (default: $ENCSPACES_HOME or "
                        "$XDG_DATA_HOME/encspaces)")
    parser.add_argument("--identity", help="identity file (default: HOME/identity.key)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create this device's identity")
    init.add_argument("--force", action="store_true", help="replace an existing identity")
    init.set_defaults(func=_init)
    sub.add_parser("whoami", help="print this device's public identity").set_defaults(func=_whoami)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except EncspacesError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
