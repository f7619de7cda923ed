"""``members``, ``add``, ``remove``, ``set-role``, ``rotate-key``, ``invite``, ``invites`` and
``revoke-invite``: who is in a space, with which role, and the keys that follow from it."""

from __future__ import annotations

import argparse
import re

from encspaces.core.devices import CERT_PREFIX, DeviceCertificate
from encspaces.core.identity import PublicIdentity, member_id
from encspaces.core.membership import Role
from encspaces.errors import DeviceCertificateError, IdentityError
from encspaces.space import Space

from ..terminal import printable
from .connecting import opened, run
from .errors import EXIT_OK, EXIT_USAGE, CliError
from .home import Context
from .output import short, time_text, warn


def parse_role(text: str) -> Role:
    try:
        return Role(text.lower())
    except ValueError:
        raise CliError(f"no role {text!r}: use one of {', '.join(r.value for r in Role)}", EXIT_USAGE) from None


def parse_duration(text: str) -> int:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h``, ``7d`` or ``2w``."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text.lower())
    if match is None:
        raise CliError(f"not a duration: {text!r} (examples: 90s, 30m, 12h, 7d, 2w)", EXIT_USAGE)
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    seconds = int(match.group(1)) * unit
    if seconds <= 0:
        raise CliError(f"a duration must be positive, not {text!r}", EXIT_USAGE)
    return seconds


def find_member(space: Space, text: str) -> str:
    """A member id from a member id, an unambiguous prefix of one, or a public identity string."""
    text = text.strip()
    if text.startswith("esid1."):
        return PublicIdentity.parse(text).member_id
    if text.startswith(CERT_PREFIX):
        return member_id(DeviceCertificate.parse(text).person)
    members = space.members
    if text in members:
        return text
    owner = next((mid for mid, m in members.items() if any(d.id == text for d in m.devices)), None)
    if owner is not None:
        return owner  # a device's id names its person
    matches = [mid for mid in members if mid.startswith(text)] if len(text) >= 4 else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CliError(f"{text!r} matches several members: give more of the member id")
    raise CliError(f"{text!r} is not a member of this space: `encspaces members SPACE` lists them")


def member_rows(space: Space, me: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for mid, member in sorted(space.members.items(), key=lambda item: item[1].added_seq):
        added = "created the space" if member.added_by is None else f"added by {short(member.added_by)}"
        rows.append((mid, member.role.value, f"{added} at seq {member.added_seq}", " (you)" if mid == me else ""))
    return rows


def device_rows(space: Space, mid: str) -> list[str]:
    """A person's devices, one line each; none for a member whose only device is the person key."""
    member = space.members[mid]
    if len(member.devices) == 1 and member.devices[0].id == mid:
        return []
    return [f"    device {d.id}  {printable(d.name) or '-'}  since seq {d.added_seq}"
            f"{'  (this device)' if d.id == space.device_id else ''}" for d in member.devices]


def cmd_members(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def members() -> int:
        async with opened(ctx, ref) as space:
            for mid, role, added, you in member_rows(space, space.person_id):
                print(f"{mid}  {role:<6}  {added}{you}")
                for line in device_rows(space, mid):
                    print(line)
        return EXIT_OK

    return run(members())


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    role = parse_role(args.role)
    text = args.identity_string.strip()
    new: PublicIdentity | DeviceCertificate
    try:
        # A person's certified device (`encspaces init` since devices), or a self-certified one (before).
        new = DeviceCertificate.parse(text) if text.startswith(CERT_PREFIX) else PublicIdentity.parse(text)
    except (IdentityError, DeviceCertificateError) as exc:
        raise CliError(f"{exc}: ask them for the line `encspaces whoami` prints", EXIT_USAGE) from exc
    person = member_id(new.person) if isinstance(new, DeviceCertificate) else new.member_id

    async def add() -> int:
        async with opened(ctx, ref, need_relay=True) as space:
            await space.add_member(new, role)
            print(f"added {person} as {role.value} (seq {space.seq})")
        return EXIT_OK

    return run(add())


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def remove() -> int:
        async with opened(ctx, ref, need_relay=True) as space:
            target = find_member(space, args.member)
            await space.remove_member(target)
            print(f"removed {target} (seq {space.seq}, epoch {space.epoch})")
        return EXIT_OK

    return run(remove())


def cmd_set_role(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    role = parse_role(args.role)

    async def set_role() -> int:
        async with opened(ctx, ref, need_relay=True) as space:
            target = find_member(space, args.member)
            await space.set_role(target, role)
            print(f"{target} is now {role.value} (seq {space.seq})")
        return EXIT_OK

    return run(set_role())


def cmd_rotate_key(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def rotate() -> int:
        async with opened(ctx, ref, need_relay=True) as space:
            await space.rotate_key()
            print(f"new key: epoch {space.epoch} (seq {space.seq})")
        return EXIT_OK

    return run(rotate())


def cmd_invite(ctx: Context, args: argparse.Namespace) -> int:
    if args.space == "revoke" and args.revoke_args:  # `encspaces invite revoke SPACE INVITE`
        if len(args.revoke_args) != 2:
            raise CliError("usage: encspaces invite revoke SPACE INVITE", EXIT_USAGE)
        args.space, args.invite = args.revoke_args
        return cmd_revoke_invite(ctx, args)
    if args.revoke_args:
        raise CliError(f"unexpected arguments: {' '.join(args.revoke_args)}", EXIT_USAGE)
    ref = ctx.registry().resolve(args.space)
    role = parse_role(args.role)
    expires = parse_duration(args.expires)
    if args.uses < 1:
        raise CliError("--uses must be at least 1", EXIT_USAGE)

    async def invite() -> int:
        async with opened(ctx, ref, need_relay=True) as space:
            link = await space.create_invite(role=role, uses=args.uses, expires_in=expires,
                                             history=not args.no_history)
        print(link)
        warn(f"send this link to the person you invite (it admits {args.uses} device(s) as {role.value} for "
             f"{args.expires}); they run `encspaces join LINK`")
        return EXIT_OK

    return run(invite())


def cmd_invites(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def invites() -> int:
        async with opened(ctx, ref) as space:
            open_invites = space.invites
        if not open_invites:
            warn(f"no open invites in {ref.name!r}")
        for invite in sorted(open_invites, key=lambda i: i.created_seq):
            if invite.expires_ms is None:
                expires = "never expires"
            else:
                expires = ("expired " if invite.expired else "expires ") + time_text(invite.expires_ms)
            history = "with history" if invite.history else "without history"
            print(f"{invite.id}  {invite.role.value:<6}  {invite.used}/{invite.uses} used  {expires}  {history}  "
                  f"by {short(invite.created_by)} at seq {invite.created_seq}")
        return EXIT_OK

    return run(invites())


def find_invite(space: Space, text: str) -> str:
    """An open invite's id from its id, an unambiguous prefix of it (4+ characters) or its link."""
    text = text.strip()
    if text.startswith("esinv"):
        return text
    ids = [invite.id for invite in space.invites]
    matches = [i for i in ids if i == text] or ([i for i in ids if i.startswith(text)] if len(text) >= 4 else [])
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CliError(f"{text!r} matches several invites: give more of the invite id")
    raise CliError(f"no open invite {text!r} in this space: `encspaces invites SPACE` lists them")


def cmd_revoke_invite(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def revoke() -> int:
        async with opened(ctx, ref, need_relay=True) as space:
            invite = find_invite(space, args.invite)
            await space.revoke_invite(invite)
            print(f"revoked invite {invite[:12]}…; new key, epoch {space.epoch} (seq {space.seq})")
        return EXIT_OK

    return run(revoke())
