"""``files put|get|list|delete``: encrypted files shared in a space (``space.files``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from encspaces.files import SpaceFiles

from ..terminal import printable
from .connecting import opened, run
from .errors import EXIT_OK, CliError
from .home import Context
from .output import progress_bar

FILE_ACTION_ALIASES = {"ls": "list", "rm": "delete"}  # the names of space.files' methods are the primary ones


def cmd_files(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def files() -> int:
        action = FILE_ACTION_ALIASES.get(args.action, args.action)
        async with opened(ctx, ref, need_relay=action != "list") as space:
            if action == "put":
                return await _files_put(space.files, args)
            if action == "get":
                return await _files_get(space.files, args)
            if action == "list":
                for item in space.files.list():
                    print(printable(f"{item.size:>12}  {item.name}  {item.content_type}"))  # names are members' text
                return EXIT_OK
            await space.files.delete(args.name)
            print(f"removed {args.name}")
            return EXIT_OK

    return run(files())


async def _files_put(files: SpaceFiles, args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.is_file():
        raise CliError(f"no file at {path}")
    name = args.name or path.name
    size = path.stat().st_size
    with progress_bar(f"uploading {name}", size, sys.stderr) as progress:
        await files.put(name, path, progress=progress)
    print(f"uploaded {printable(name)} ({size} bytes)")
    return EXIT_OK


async def _files_get(files: SpaceFiles, args: argparse.Namespace) -> int:
    target = Path(args.output) if args.output else Path(Path(args.name).name)
    if target.is_dir():
        target = target / Path(args.name).name
    if target.exists() and not args.force:
        raise CliError(f"{printable(str(target))} exists: use --force to overwrite it, or -o another path")
    ref = files.ref(args.name)
    with progress_bar(f"downloading {args.name}", ref.size, sys.stderr) as progress:
        await files.get(ref, target, progress=progress)
    print(f"saved {printable(str(target))} ({ref.size} bytes)")  # (a path need not be UTF-8)
    return EXIT_OK
