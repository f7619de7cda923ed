"""``create``, ``join``, ``spaces``, ``leave`` and ``forget``: the spaces this device knows."""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
from typing import TYPE_CHECKING

from encspaces.core.identity import decode_space_id
from encspaces.core.membership import Role
from encspaces.core.witness_policy import Witness, WitnessPolicy
from encspaces.errors import InvalidArgumentError, MembershipRevokedError

from .errors import EXIT_ERROR, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from .home import Context, SpaceRef, relay_list
from .output import short, warn

if TYPE_CHECKING:
    from encspaces.space import Space

# The SDK's network side (encspaces.space, .connecting) is imported by the commands that open a
# space, not at import: `spaces` and `forget` only read this device's files, and start in a third
# of the CPU time (bench/README.md, "CLI start-up").


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise CliError(f"{name!r} is not a usable space name: letters, digits, '.', '_' and '-', "
                       "up to 64 characters", EXIT_USAGE)
    return name


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    from encspaces.space import create_space

    from .connecting import run

    name = check_name(args.name)
    registry = ctx.registry()
    if name in registry.spaces:
        if args.exist_ok:
            print(registry.spaces[name].id)
            return EXIT_OK
        raise CliError(f"this device already has a space named {name!r} ({registry.spaces[name].id[:12]}…): "
                       "pick another name")
    identity = ctx.identity()
    relays = relay_list(args.relay)
    try:
        witnesses = [Witness.from_vkey(key, url) for key, url in args.witness]
        WitnessPolicy.of(witnesses, args.quorum)
    except InvalidArgumentError as exc:
        raise CliError(f"--witness/--quorum: {exc}", EXIT_USAGE) from None

    async def create() -> int:
        space = await create_space(relays, identity, data_dir=ctx.data_dir, witnesses=witnesses, quorum=args.quorum)
        try:
            registry.add(SpaceRef(name, space.id, space.urls, ctx.data_dir))
            await space.flush()
        finally:
            await space.close()
        print(space.id)
        warn(f"witnesses: {space.witness_policy.describe()}")
        warn(f"created space {name!r} on {space.url}. Next: `encspaces invite {name}` (send the link), or "
             f"`encspaces add {name} THEIR_IDENTITY`; then `encspaces edit {name}`")
        return EXIT_OK

    return run(create())


def cmd_spaces(ctx: Context, args: argparse.Namespace) -> int:
    refs = sorted(ctx.registry().spaces.values(), key=lambda r: r.name)
    if args.names:
        for ref in refs:
            print(ref.name)
        return EXIT_OK
    if not refs:
        warn("no spaces on this device yet: `encspaces create NAME` or `encspaces join LINK`")
        return EXIT_OK
    width = max(len(r.name) for r in refs)
    for ref in refs:
        print(f"{ref.name:<{width}}  {ref.id}  {','.join(ref.relays)}")
    return EXIT_OK


def cmd_join(ctx: Context, args: argparse.Namespace) -> int:
    from encspaces.space import connect, join

    from .connecting import run

    identity = ctx.identity()
    registry = ctx.registry()
    if args.name is not None:
        check_name(args.name)
        if args.name in registry.spaces:
            raise CliError(f"this device already has a space named {args.name!r}: pick another --name")
    link = args.link.strip()
    with_invite = link.startswith("esinv")
    if not with_invite:  # a space id: this device was added by its public identity (`encspaces add`)
        decode_space_id(link)
    relays = relay_list(args.relay)

    async def open_joined() -> Space:
        try:
            if with_invite:  # the link names its relays; --relay replaces them
                return await join(link, identity, data_dir=ctx.data_dir, timeout=ctx.timeout,
                                  relays=relays if args.relay else None)
            return await connect(relays, identity, link, data_dir=ctx.data_dir, timeout=ctx.timeout)
        except TimeoutError:
            raise CliError("the relay did not answer in time: check the link or --relay, or try again with "
                           "--timeout", EXIT_UNREACHABLE) from None

    async def joined() -> int:
        space = await open_joined()
        try:
            existing = registry.by_id(space.id)
            name = existing.name if existing else args.name or f"space-{space.id[:6]}"
            registry.add(SpaceRef(name, space.id, space.urls, ctx.data_dir))
            await space.flush()
        finally:
            await space.close()
        print(name)
        warn(f"joined space {space.id[:12]}… as {name!r}; `encspaces edit {name}` opens it")
        return EXIT_OK

    return run(joined())


def cmd_leave(ctx: Context, args: argparse.Namespace) -> int:
    from .connecting import opened, run

    ref = ctx.registry().resolve(args.space)

    async def leave() -> int:
        async with opened(ctx, ref, need_relay=True) as space:
            me = space.person_id
            member = space.members.get(me)
            if member is None:
                raise CliError(f"this device is no longer a member of {ref.name!r}: `encspaces forget {ref.name}` "
                               "drops it from this device")
            admins = sorted(mid for mid, m in space.members.items() if m.role is Role.ADMIN)
            if member.role is not Role.ADMIN:
                raise CliError(f"only admins can remove members, and you are a {member.role.value}: ask an admin "
                               f"({', '.join(short(a) for a in admins)}) to run `encspaces remove SPACE {me}`; "
                               f"`encspaces forget {ref.name}` drops the space from this device")
            if admins == [me]:
                raise CliError("you are the last admin of this space, and it needs one: make another member admin "
                               f"first (`encspaces set-role {ref.name} MEMBER admin`)")
            with contextlib.suppress(MembershipRevokedError):  # our own removal is in the verified log: left
                await space.remove_member(me)
            print(f"left {ref.name!r} (seq {space.seq}); the others now use a key this device never gets")
        warn(f"`encspaces forget {ref.name}` deletes this device's copy")
        return EXIT_OK

    return run(leave())


def cmd_forget(ctx: Context, args: argparse.Namespace) -> int:
    registry = ctx.registry()
    ref = registry.resolve(args.space)
    folder = ref.folder
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"forgetting deletes this device's copy of {ref.name!r}: confirm with --yes", EXIT_USAGE)
        answer = input(f"Forget {ref.name!r} ({ref.id[:12]}…) and delete this device's copy in {folder}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            warn("nothing changed")
            return EXIT_ERROR
    del registry.spaces[ref.name]
    registry.save()
    shutil.rmtree(folder, ignore_errors=True)
    print(f"forgot {ref.name} ({ref.id})")
    warn("the space itself is untouched: its other members and the relay keep it")
    return EXIT_OK
