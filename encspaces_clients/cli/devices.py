"""``device pair|add|remove|list`` and ``identity export-person|import-person``: one person, several devices.

Pairing takes two copy-pastes. The new device shows a pairing string (its public keys); a device
holding the person key approves it, adds it to every space this home knows and prints an
acceptance (the certificate and those spaces); the new device accepts it, and from then on opens
those spaces as a device of the same member.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import encspaces
from encspaces.core.devices import DeviceCertificate, PairingRequest, Person, parse_recovery_phrase
from encspaces.core.encoding import as_bytes, as_list, as_map, as_str, field, from_text, pack, to_text, unpack
from encspaces.core.identity import Identity, member_id
from encspaces.core.private_file import replace_private
from encspaces.errors import EncspacesError, ProtocolError
from encspaces.space import Space

from ..terminal import printable
from .connecting import catch_up, connect_space, run
from .errors import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from .home import Context, SpaceRef
from .output import short, warn

ACCEPT_PREFIX = "esdevok1"
PERSON_FILE_VERSION = 1


def cmd_device_pair(ctx: Context, args: argparse.Namespace) -> int:
    """On the new device: make its keys and print the pairing string, or accept the approval."""
    if args.accept:
        return _accept(ctx, args.accept)
    path = ctx.identity_path
    if path.exists():
        identity = Identity.load(path)
        if identity.certificate is not None or ctx.registry().spaces:
            raise CliError(f"{path} already holds a device of {short(identity.person_id)} in use: a device to pair "
                           "is a new one (another machine, or `--identity FILE --home DIR` for a fresh one)")
    else:
        identity = Identity.generate()
        identity.name = args.name
        identity.save(path)
    print(identity.pairing_request(args.device_name or ""))
    warn("on a device holding your person key run `encspaces device add <the line above>`, then here "
         "`encspaces device pair --accept <what it prints>`")
    return EXIT_OK


def _accept(ctx: Context, text: str) -> int:
    cert, spaces = parse_acceptance(text.strip())
    identity = ctx.identity()
    if cert.device != identity.public.sign_key:
        raise CliError(f"this approval is for device {short(member_id(cert.device))}, "
                       f"not this one ({short(identity.member_id)})", EXIT_USAGE)
    identity.with_certificate(cert).save(ctx.identity_path, overwrite=True)
    registry = ctx.registry()
    for name, relays, space_id in spaces:
        if registry.by_id(space_id) is None:
            local = name if name not in registry.spaces else f"{name}-{space_id[:6]}"
            registry.add(SpaceRef(local, space_id, relays, ctx.data_dir))
    print(f"this device now belongs to {identity.with_certificate(cert).person_id}")
    warn(f"{len(spaces)} space(s) registered: `encspaces spaces` lists them")
    return EXIT_OK


def acceptance(cert: DeviceCertificate, spaces: list[SpaceRef]) -> str:
    body = pack([cert.encode(), [[ref.name, list(ref.relays), ref.id] for ref in spaces]])
    return to_text(ACCEPT_PREFIX, body)


def parse_acceptance(text: str) -> tuple[DeviceCertificate, list[tuple[str, tuple[str, ...], str]]]:
    """The certificate and the spaces (name, relays, id) of an approval ``acceptance`` made."""
    try:
        data = from_text(text, ACCEPT_PREFIX, "a device approval (what `encspaces device add` prints)")
    except EncspacesError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    try:
        items = as_list(unpack(data, what="device approval"), "device approval", 2)
        cert = DeviceCertificate.decode(items[0])  # signed: a changed character fails here
        spaces = []
        for item in as_list(items[1], "spaces"):
            name, relays, space_id = as_list(item, "space", 3)
            urls = tuple(as_str(url, "relay", 2048) for url in as_list(relays, "relays"))
            if not urls:
                raise ProtocolError("a space without a relay")
            spaces.append((as_str(name, "space name", 2048), urls, as_str(space_id, "space id", 2048)))
    except (ValueError, ProtocolError, EncspacesError) as exc:
        raise CliError(f"the device approval is damaged ({exc}): copy it again in full", EXIT_USAGE) from exc
    return cert, spaces


@contextlib.asynccontextmanager
async def every_space(ctx: Context) -> AsyncIterator[list[Space]]:
    """Every space this home knows, opened and caught up (closed after)."""
    opened: list[Space] = []
    try:
        for ref in ctx.registry().spaces.values():
            space = await connect_space(ctx, ref)
            opened.append(space)
            if not await catch_up(space, ctx.timeout):
                raise CliError(f"cannot reach the relay of {ref.name!r} at {ref.relay}: devices change in every "
                               "space at once, so every relay must answer", EXIT_UNREACHABLE)
        yield opened
    finally:
        for space in opened:
            await space.close()


def cmd_device_add(ctx: Context, args: argparse.Namespace) -> int:
    """On a device holding the person key: certify the new device and add it to every space."""
    identity = ctx.identity()
    if identity.person is None:
        raise CliError("this device does not hold your person key: run this on your first device, or import the "
                       "key (`encspaces identity import-person`)")
    try:
        request = PairingRequest.parse(args.pairing)
    except ValueError as exc:
        raise CliError(f"{exc}: copy the line `encspaces device pair` printed on the new device", EXIT_USAGE) from exc

    async def add() -> int:
        refs = list(ctx.registry().spaces.values())
        async with every_space(ctx) as spaces:
            cert = await encspaces.add_device(spaces, request, name=args.device_name, timeout=ctx.timeout)
        print(acceptance(cert, refs))
        warn(f"device {short(member_id(cert.device))} ({cert.name or 'unnamed'}) added to "
             f"{len(refs)} space(s); on it run `encspaces device pair --accept <the line above>`")
        return EXIT_OK

    return run(add())


def cmd_device_remove(ctx: Context, args: argparse.Namespace) -> int:
    """Remove a (lost) device from every space it is in; each gets a new key."""

    async def remove() -> int:
        removed = 0
        async with every_space(ctx) as spaces:
            for space in spaces:
                target = _find_device(space, args.device)
                if target is None:
                    continue
                await space.remove_device(target, timeout=ctx.timeout)
                removed += 1
                print(f"{space.id[:12]}…: removed device {short(target)} (epoch {space.epoch})")
        if not removed:
            raise CliError(f"no device {args.device!r} in the spaces of this device: `encspaces device list`")
        return EXIT_OK

    return run(remove())


def _find_device(space: Space, text: str) -> str | None:
    text = text.strip()
    ids = [d.id for m in space.members.values() for d in m.devices]
    matches = [i for i in ids if i == text or (len(text) >= 4 and i.startswith(text))]
    if len(matches) > 1:
        raise CliError(f"{text!r} matches several devices: give more of the device id")
    return matches[0] if matches else None


def cmd_device_list(ctx: Context, args: argparse.Namespace) -> int:
    """This person's devices, as the spaces' logs know them."""
    identity = ctx.identity()
    print(f"person {identity.person_id}{'  (this device holds the person key)' if identity.person else ''}")

    async def listing() -> int:
        seen: dict[str, tuple[str, set[str]]] = {}
        async with every_space(ctx) as spaces:
            for space in spaces:
                member = space.members.get(space.person_id)
                for device in () if member is None else member.devices:
                    seen.setdefault(device.id, (device.name, set()))[1].add(space.id[:8])
        if not seen:
            print(f"  device {identity.member_id}  (this device; in no space yet)")
        for device_id, (name, where) in seen.items():
            this = "  (this device)" if device_id == identity.member_id else ""
            print(f"  device {device_id}  {printable(name) or '-':<12}  in {len(where)} space(s){this}")
        return EXIT_OK

    return run(listing())


def cmd_export_person(ctx: Context, args: argparse.Namespace) -> int:
    """Write the person key to a file (0600) and print it as a recovery phrase."""
    identity = ctx.identity()
    person = identity.person
    if person is None:
        raise CliError("this device does not hold your person key (only your first device does)")
    if args.out is not None:
        out = Path(args.out)
        if out.exists():
            raise CliError(f"{out} exists: pick another file")
        replace_private(out, pack({"v": PERSON_FILE_VERSION, "person": person.seed}))
        warn(f"wrote the person key to {out}: keep it offline; whoever has it can add devices as you")
    print(person.recovery_phrase())
    warn("the line above is your person key as a recovery phrase: write it down and keep it safe")
    return EXIT_OK


def cmd_import_person(ctx: Context, args: argparse.Namespace) -> int:
    """Give this device the person key (from a file or a recovery phrase), so it may add devices."""
    if (args.file is None) == (args.phrase is None):
        raise CliError("give either a FILE or --phrase", EXIT_USAGE)
    try:
        if args.phrase is not None:
            seed = parse_recovery_phrase(args.phrase)
        else:
            record = as_map(unpack(Path(args.file).read_bytes(), what="person key file"), "person key file")
            seed = as_bytes(field(record, "person", "person key file"), "person key", 32)
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from exc
    except (ValueError, ProtocolError) as exc:
        raise CliError(f"not a person key: {exc}", EXIT_USAGE) from exc
    identity = ctx.identity()
    try:
        updated = identity.with_person(seed)
    except EncspacesError as exc:
        raise CliError(f"{exc} ({short(Person(seed).id)} is not {short(identity.person_id)})") from exc
    updated.save(ctx.identity_path, overwrite=True)
    print(f"this device now holds the person key of {updated.person_id}")
    return EXIT_OK


__all__ = [
    "cmd_device_add", "cmd_device_list", "cmd_device_pair", "cmd_device_remove", "cmd_export_person",
    "cmd_import_person",
]


def cmd_device(ctx: Context, args: argparse.Namespace) -> int:
    return {"pair": cmd_device_pair, "add": cmd_device_add, "remove": cmd_device_remove,
            "list": cmd_device_list}[args.action](ctx, args)


def cmd_identity(ctx: Context, args: argparse.Namespace) -> int:
    return {"export-person": cmd_export_person, "import-person": cmd_import_person}[args.action](ctx, args)
