"""``edit`` and ``cat``: the shared texts of a space, in the editor, from scripts, or printed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable

from encspaces.space import Space, open_local

from ..terminal import printable
from .connecting import RelayRefusedError, catch_up, connect_space, opened, run
from .errors import EXIT_OK, EXIT_UNAVAILABLE, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from .home import ENV_NAME, Context, SpaceRef
from .identity import user_name
from .output import warn

# What the editor needs beyond the SDK: the ``editor`` extra (textual, which brings rich).
EDITOR_NEEDS = ("textual", "rich")
EDITOR_INSTALL = "pip install 'encspaces[editor]'"

RunEditor = Callable[..., Awaitable[int]]


def _read_arg(value: str) -> str:
    return sys.stdin.read() if value == "-" else value


def cmd_cat(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def cat() -> int:
        if args.offline:
            ref.require_local_copy()
            view = await open_local(ctx.identity(), ref.id, data_dir=ref.data_dir)
            texts = [name for name, kind in view.objects() if kind == "text"]
            content = str(view.text(args.doc)) if args.doc in texts else None
        else:
            async with opened(ctx, ref) as space:
                texts = [name for name, kind in space.objects() if kind == "text"]
                content = str(space.text(args.doc)) if args.doc in texts else None
        if content is None:
            others = ", ".join(repr(name) for name in texts) or "none"  # quoted: members chose them
            warn(f"no text named {args.doc!r} in {ref.name!r} yet (texts: {others})")
            return EXIT_OK
        if not args.raw:  # another member's escape sequences never reach the terminal
            content = printable(content, lines=True)
        sys.stdout.write(content)
        if content and not content.endswith("\n"):
            sys.stdout.write("\n")
        return EXIT_OK

    return run(cat())


def load_editor() -> RunEditor:
    """The editor's entry point, imported only now: the ``editor`` extra may not be installed."""
    try:
        from encspaces_clients.editor import run_editor
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in EDITOR_NEEDS:
            raise
        raise CliError(f"the editor is an extra that is not installed here (no module {exc.name!r}): "
                       f"{EDITOR_INSTALL}", EXIT_UNAVAILABLE) from exc
    editor: RunEditor = run_editor
    return editor


def cmd_edit(ctx: Context, args: argparse.Namespace) -> int:
    if args.append is not None or args.replace is not None:
        ref = ctx.registry().resolve(args.space)
        return run(_scripted_edit(ctx, ref, args))
    run_editor = load_editor()
    ref = ctx.registry().resolve(args.space)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the editor needs a terminal; in scripts use --append TEXT or --replace TEXT", EXIT_USAGE)
    name = args.name or os.environ.get(ENV_NAME) or ctx.identity().name or user_name()

    async def edit() -> int:
        space = await connect_space(ctx, ref)
        try:
            code = await run_editor(space, args.doc, name=name, space_name=ref.name)
        finally:
            await space.close()
        if space.error is not None:
            raise space.error
        if space.unsent:
            warn(f"{space.unsent} edit(s) saved on this device and not sent yet: they are sent the next time "
                 f"{ref.name!r} is opened online")
        return code

    return run(edit())


async def _scripted_edit(ctx: Context, ref: SpaceRef, args: argparse.Namespace) -> int:
    text_value = _read_arg(args.append if args.append is not None else args.replace)
    space: Space = await connect_space(ctx, ref)
    try:
        try:
            online = await catch_up(space, ctx.timeout, progress=sys.stderr)
        except RelayRefusedError:
            online = False
        text = space.text(args.doc)
        with space.transaction():
            if args.replace is not None and len(text):
                text.delete(0, len(text))
            text.insert(len(text), text_value)
        await space.flush()
        if not online:
            raise CliError(f"the relay at {ref.relay} did not answer: the edit is saved on this device and is sent "
                           "the next time the space is opened online", EXIT_UNREACHABLE)
        try:
            await space.sync(timeout=ctx.timeout)
        except TimeoutError:
            raise CliError("the relay did not confirm the edit in time: it is saved on this device and is sent "
                           "the next time the space is opened online", EXIT_UNREACHABLE) from None
        warn(f"saved; verified through seq {space.seq}")
    finally:
        await space.close()
    return EXIT_OK
