"""The ``encspaces`` command: this device's identity, the spaces it knows, and what is in them.

Defaults live in one folder, the *home* (``--home``, else ``$ENCSPACES_HOME``, else
``$XDG_DATA_HOME/encspaces``, else ``~/.local/share/encspaces``):

- ``identity.key``: this device's identity (``--identity`` / ``$ENCSPACES_IDENTITY``);
- ``spaces.json``: the spaces this device knows, by local name: space id, relay URL, data folder;
- ``data/``: each space's local store, under ``data/<space id hex>/`` (``--data-dir`` /
  ``$ENCSPACES_DATA``).

Every failure prints one line on stderr that says what went wrong and what to do (a traceback
only with ``--debug``), and the exit code tells scripts which kind of failure it was (EXIT_*).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import getpass
import importlib
import inspect
import json
import logging
import os
import re
import shutil
import socket
import sys
import textwrap
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import crypto
from .entry import Entry, Kind
from .errors import (
    ConnectionFailedError,
    EncspacesError,
    HandshakeError,
    IdentityError,
    MembershipRevokedError,
    RelayError,
    RelayTLSError,
    StoreError,
    VerificationError,
)
from .identity import Identity, PublicIdentity, member_id
from .membership import AddMemberBody, GenesisBody, Member, Role
from .private_file import replace_private
from .space import Space, connect, create_space, decode_space_id
from .space import _open_space as open_space
from .store import LocalStore
from .verifier import LogVerifier, VerifiedEntry

# --- exit codes: what scripts can rely on ------------------------------------------------------

EXIT_OK = 0
EXIT_ERROR = 1  # anything else: bad input, unknown space, refused by the relay, ...
EXIT_USAGE = 2  # the command line itself is wrong (argparse)
EXIT_VERIFICATION = 3  # the relay (or the local store) failed verification: do not trust it
EXIT_UNREACHABLE = 4  # the relay could not be reached (the local copy may still be fine)
EXIT_UNAVAILABLE = 5  # the feature is not available in this version of encspaces
EXIT_INTERRUPTED = 130  # Ctrl+C

EXIT_CODES_HELP = """exit codes:
  0  success
  1  error (bad input, unknown space, refused by the relay, ...)
  2  usage error
  3  verification failed: the relay (or this device's store) cannot be trusted
  4  the relay could not be reached
  5  not available in this version of encspaces
"""

ENV_HOME = "ENCSPACES_HOME"
ENV_IDENTITY = "ENCSPACES_IDENTITY"
ENV_DATA = "ENCSPACES_DATA"
ENV_RELAY = "ENCSPACES_RELAY"
ENV_NAME = "ENCSPACES_NAME"
DEFAULT_RELAY = "ws://127.0.0.1:8765"
DEFAULT_DOC = "notes"
DEFAULT_TIMEOUT = 10.0
REGISTRY_FILE = "spaces.json"
REGISTRY_VERSION = 1

# Safety codes: a short code from the verified head at one seq (README, "Safety codes").

SAFETY_GROUPS = 6


class CliError(Exception):
    """A failure the command reports as one line, with the exit code it maps to."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# --- safety codes --------------------------------------------------------------------------------


def safety_code(space: bytes, seq: int, head: bytes) -> str:
    """Six groups of four digits derived from the verified head ``head`` at ``seq`` of ``space``.

    Two members who read the same code at the same seq hold the same history up to it: a relay
    that showed them different logs (a fork) cannot make their codes agree. About 80 bits.
    """
    digest = crypto.hash_parts(crypto.CTX_SAFETY_CODE, space, seq, head)
    groups = [int.from_bytes(digest[4 * i : 4 * i + 4], "big") % 10_000 for i in range(SAFETY_GROUPS)]
    return " ".join(f"{g:04d}" for g in groups)


# --- paths and the registry of known spaces ------------------------------------------------------


def default_home() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "encspaces"


@dataclasses.dataclass(frozen=True)
class SpaceRef:
    """A space this device knows: its local name, id, relay and where its local store lives."""

    name: str
    id: str
    relay: str
    data_dir: Path

    @property
    def space_bytes(self) -> bytes:
        return decode_space_id(self.id)


class Registry:
    """``spaces.json`` in the home folder: local name -> space id, relay URL, data folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spaces: dict[str, SpaceRef] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or raw.get("version") != REGISTRY_VERSION:
                raise ValueError(f"expected version {REGISTRY_VERSION}")
            for name, item in raw["spaces"].items():
                self.spaces[name] = SpaceRef(name, str(item["id"]), str(item["relay"]), Path(item["data_dir"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CliError(f"the list of spaces {self.path} is unreadable ({exc}): fix or move it away") from exc

    def save(self) -> None:
        data = {
            "version": REGISTRY_VERSION,
            "spaces": {
                ref.name: {"id": ref.id, "relay": ref.relay, "data_dir": str(ref.data_dir)}
                for ref in sorted(self.spaces.values(), key=lambda r: r.name)
            },
        }
        replace_private(self.path, (json.dumps(data, indent=2) + "\n").encode())  # 0600 in a 0700 home

    def add(self, ref: SpaceRef) -> None:
        self.spaces[ref.name] = ref
        self.save()

    def by_id(self, space_id: str) -> SpaceRef | None:
        return next((ref for ref in self.spaces.values() if ref.id == space_id), None)

    def resolve(self, text: str) -> SpaceRef:
        """A space by local name, by id, or by an unambiguous prefix of its id."""
        if text in self.spaces:
            return self.spaces[text]
        found = self.by_id(text)
        if found is not None:
            return found
        if len(text) >= 4:
            matches = [ref for ref in self.spaces.values() if ref.id.startswith(text)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise CliError(f"{text!r} matches several spaces ({', '.join(r.name for r in matches)}): use a name")
        known = ", ".join(sorted(self.spaces)) or "none yet"
        raise CliError(f"no space named {text!r} on this device (known: {known}): "
                       "`encspaces create NAME` makes one, `encspaces join LINK` joins one")


@dataclasses.dataclass
class Context:
    """What every command needs: where things live, and how long to wait for the relay."""

    home: Path
    identity_path: Path
    data_dir: Path
    timeout: float
    debug: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        home = Path(getattr(args, "home", None) or default_home())
        identity = getattr(args, "identity", None) or os.environ.get(ENV_IDENTITY) or home / "identity.key"
        data = getattr(args, "data_dir", None) or os.environ.get(ENV_DATA) or home / "data"
        timeout = getattr(args, "timeout", None)
        return cls(home, Path(identity), Path(data).absolute(), DEFAULT_TIMEOUT if timeout is None else timeout,
                   bool(getattr(args, "debug", False)))

    def identity(self) -> Identity:
        if not self.identity_path.exists():
            raise CliError(f"no identity at {self.identity_path}: run `encspaces init` first")
        return Identity.load(self.identity_path)

    def registry(self) -> Registry:
        return Registry(self.home / REGISTRY_FILE)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _short(key: bytes | str) -> str:
    text = key if isinstance(key, str) else member_id(key)
    return text[:10]


def _parse_duration(text: str) -> int:
    """Seconds from ``90``, ``90s``, ``30m``, ``12h``, ``7d`` or ``2w``."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text.lower())
    if match is None:
        raise CliError(f"not a duration: {text!r} (examples: 90s, 30m, 12h, 7d, 2w)", EXIT_USAGE)
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    seconds = int(match.group(1)) * unit
    if seconds <= 0:
        raise CliError(f"a duration must be positive, not {text!r}", EXIT_USAGE)
    return seconds


def _role(text: str) -> Role:
    try:
        return Role(text.lower())
    except ValueError:
        raise CliError(f"no role {text!r}: use one of {', '.join(r.value for r in Role)}", EXIT_USAGE) from None


def _unavailable(what: str) -> NoReturn:
    raise CliError(f"{what} is not available in this version of encspaces", EXIT_UNAVAILABLE)


# --- opening a space -----------------------------------------------------------------------------


class RelayRefusedError(Exception):
    """Nothing listens at the relay's address (or the name does not resolve): no use waiting."""


def _address(url: str) -> tuple[str, int] | None:
    """The host and port a ws:// or wss:// URL names (None when it names none)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.hostname, port if port is not None else (443 if parts.scheme == "wss" else 80)


async def _refusal(url: str) -> str | None:
    """Why a TCP connection to the relay is refused at once (nothing listening, unknown host);
    None when it opens. A slow answer keeps this waiting, like the space itself."""
    address = _address(url)
    if address is None:
        return None
    try:
        _, writer = await asyncio.open_connection(*address)
    except ConnectionRefusedError:
        return f"nothing is listening at {address[0]}:{address[1]}"
    except socket.gaierror as exc:
        return f"cannot resolve {address[0]}: {exc.strerror}"
    except OSError:
        return None  # unreachable networks and the like: the space's own connection reports them
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


PROBE_AFTER = 0.3  # seconds without a connection before checking whether the relay refuses it
CATCH_UP_THRESHOLD = 1000  # entries behind the relay before a catch-up shows a progress bar


async def _catch_up(space: Space, timeout: float, *, progress: TextIO | None = None) -> bool:
    """Wait until the space is live with the relay (caught up and verified); False on timeout.

    A relay that refuses the connection raises RelayRefusedError at once instead of after
    ``timeout``. On a terminal ``progress`` shows a bar while a long log is caught up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    probe_at = loop.time() + PROBE_AFTER  # a relay that answers at once is not probed (no noise in its log)
    probe: asyncio.Task[str | None] | None = None
    try:
        with _catch_up_bar(space, progress) as update:
            while space.error is None and not space.connected:
                if probe is None and loop.time() >= probe_at:
                    probe = asyncio.create_task(_refusal(space.url))
                if probe is not None and probe.done() and (reason := probe.result()) is not None:
                    raise RelayRefusedError(reason)
                if loop.time() >= deadline:
                    return False
                update()
                await asyncio.sleep(0.02)
    finally:
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
    if space.error is not None:
        raise space.error
    return True


@contextlib.contextmanager
def _catch_up_bar(space: Space, stream: TextIO | None) -> Iterator[Callable[[], None]]:
    """A callback that shows (on a terminal) how far a long catch-up is: seq of the relay's head."""
    state: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        def update() -> None:
            target = space.relay_seq
            if "bar" not in state:
                if stream is None or target - space.seq < CATCH_UP_THRESHOLD:
                    return
                state["bar"] = stack.enter_context(_progress("catching up", target, stream, unit="entries"))
            state["bar"](space.seq, target)

        yield update


async def _connect(ctx: Context, ref: SpaceRef) -> Space:
    identity = ctx.identity()

    async def opening() -> Space:
        space: Space = await connect(ref.relay, identity, ref.id, data_dir=ref.data_dir)
        return space

    try:
        return await asyncio.wait_for(opening(), ctx.timeout)
    except TimeoutError:
        raise CliError(f"the relay at {ref.relay} did not answer within {ctx.timeout:g} s and this device holds "
                       f"no copy of {ref.name!r} yet: start the relay or try again with --timeout",
                       EXIT_UNREACHABLE) from None


@contextlib.asynccontextmanager
async def _opened(ctx: Context, ref: SpaceRef, *, need_relay: bool = False) -> AsyncIterator[Space]:
    """The space, caught up with the relay when it answers in time (else the local copy, said so)."""
    space = await _connect(ctx, ref)
    try:
        try:
            online = await _catch_up(space, ctx.timeout, progress=sys.stderr)
            why = f"did not answer within {ctx.timeout:g} s"
        except RelayRefusedError as exc:
            online, why = False, f"refused the connection ({exc})"
        if not online:
            if need_relay:
                raise CliError(f"cannot reach the relay at {ref.relay}: it {why}; is it running? (`make run` or "
                               "`encspaces-relay`)", EXIT_UNREACHABLE)
            _warn(f"offline: the relay at {ref.relay} {why}; "
                  f"showing this device's verified copy (seq {space.seq})")
        yield space
    finally:
        await space.close()


@contextlib.asynccontextmanager
async def _open_offline(ctx: Context, ref: SpaceRef) -> AsyncIterator[Space]:
    """The space as this device holds it (verified log and unsent edits), without the relay."""
    folder = ref.data_dir / ref.space_bytes.hex()
    if not folder.exists():
        raise CliError(f"this device holds no copy of {ref.name!r} in {ref.data_dir}: open it once online")
    space = await open_space(ref.relay, ctx.identity(), ref.space_bytes, ref.data_dir)
    try:
        await space._restore()
        yield space
    finally:
        await space.close()


def _run(coro: Any) -> int:
    result: int = asyncio.run(coro)
    return result


# --- identity ------------------------------------------------------------------------------------


MAX_DISPLAY_NAME = 32


def _display_name(text: str) -> str:
    name = " ".join(text.split())
    if not name or len(name) > MAX_DISPLAY_NAME or not name.isprintable():
        raise CliError(f"a display name is 1 to {MAX_DISPLAY_NAME} printable characters, not {text!r}", EXIT_USAGE)
    return name


def _ask_name() -> str | None:
    """The display name, asked on a terminal (None when not a terminal, or left empty)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    print("Your name, as the other members see it next to your cursor (Enter: none): ", end="", file=sys.stderr,
          flush=True)
    answer = sys.stdin.readline().strip()
    return _display_name(answer) if answer else None


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.identity_path
    name = None if args.name is None else _display_name(args.name)
    if path.exists() and not args.force:
        if args.exist_ok:
            identity = Identity.load(path)
            if name is not None and name != identity.name:
                identity.name = name
                identity.save(path, overwrite=True)
                _warn(f"your display name is now {name!r}")
            print(identity.public)
            return EXIT_OK
        raise CliError(f"{path} already exists (`encspaces whoami` shows it; --force replaces it and loses "
                       "that identity; `init --exist-ok --name NAME` changes your display name)")
    if name is None:
        name = _ask_name()
    identity = Identity.generate()
    identity.name = name
    identity.save(path, overwrite=args.force)
    print(identity.public)
    _warn(f"created this device's identity in {path}; others add you with the line above")
    if name is None:
        _warn(f"no display name set: others see {_user_name()!r}; `encspaces init --exist-ok --name NAME` sets one")
    return EXIT_OK


def cmd_whoami(ctx: Context, args: argparse.Namespace) -> int:
    identity = ctx.identity()
    print(identity.member_id if args.member_id else identity.public)
    return EXIT_OK


# --- spaces --------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise CliError(f"{name!r} is not a usable space name: letters, digits, '.', '_' and '-', "
                       "up to 64 characters", EXIT_USAGE)
    return name


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    name = _check_name(args.name)
    registry = ctx.registry()
    if name in registry.spaces:
        if args.exist_ok:
            print(registry.spaces[name].id)
            return EXIT_OK
        raise CliError(f"this device already has a space named {name!r} ({registry.spaces[name].id[:12]}…): "
                       "pick another name")
    identity = ctx.identity()
    relay = args.relay or os.environ.get(ENV_RELAY) or DEFAULT_RELAY

    async def run() -> int:
        space = await create_space(relay, identity, data_dir=ctx.data_dir)
        try:
            registry.add(SpaceRef(name, space.id, relay, ctx.data_dir))
            await space.flush()
        finally:
            await space.close()
        print(space.id)
        _warn(f"created space {name!r} on {relay}. Next: `encspaces invite {name}` (send the link), or "
              f"`encspaces add {name} THEIR_IDENTITY`; then `encspaces edit {name}`")
        return EXIT_OK

    return _run(run())


def cmd_spaces(ctx: Context, args: argparse.Namespace) -> int:
    refs = sorted(ctx.registry().spaces.values(), key=lambda r: r.name)
    if args.names:
        for ref in refs:
            print(ref.name)
        return EXIT_OK
    if not refs:
        _warn("no spaces on this device yet: `encspaces create NAME` or `encspaces join LINK`")
        return EXIT_OK
    width = max(len(r.name) for r in refs)
    for ref in refs:
        print(f"{ref.name:<{width}}  {ref.id}  {ref.relay}")
    return EXIT_OK


def cmd_invite(ctx: Context, args: argparse.Namespace) -> int:
    if args.space == "revoke" and args.revoke_args:  # `encspaces invite revoke SPACE INVITE`
        if len(args.revoke_args) != 2:
            raise CliError("usage: encspaces invite revoke SPACE INVITE", EXIT_USAGE)
        args.space, args.invite = args.revoke_args
        return cmd_revoke_invite(ctx, args)
    if args.revoke_args:
        raise CliError(f"unexpected arguments: {' '.join(args.revoke_args)}", EXIT_USAGE)
    ref = ctx.registry().resolve(args.space)
    role = _role(args.role)
    expires = _parse_duration(args.expires)
    if args.uses < 1:
        raise CliError("--uses must be at least 1", EXIT_USAGE)

    async def run() -> int:
        async with _opened(ctx, ref, need_relay=True) as space:
            create_invite = getattr(space, "create_invite", None)
            if create_invite is None:
                _unavailable("inviting with a link")
            link = await create_invite(role=role, uses=args.uses, expires_in=expires, history=not args.no_history)
        print(link)
        _warn(f"send this link to the person you invite (it admits {args.uses} device(s) as {role.value} for "
              f"{args.expires}); they run `encspaces join LINK`")
        return EXIT_OK

    return _run(run())


def cmd_join(ctx: Context, args: argparse.Namespace) -> int:
    identity = ctx.identity()
    registry = ctx.registry()
    if args.name is not None:
        _check_name(args.name)
        if args.name in registry.spaces:
            raise CliError(f"this device already has a space named {args.name!r}: pick another --name")
    link = args.link.strip()
    join: Any = getattr(importlib.import_module("encspaces"), "join", None)  # checked now: it may not exist yet
    if link.startswith("esinv"):
        if join is None:
            _unavailable("joining with an invite link")
    else:  # a space id: this device was added by its public identity (`encspaces add`)
        decode_space_id(link)
    relay = args.relay or os.environ.get(ENV_RELAY) or DEFAULT_RELAY

    async def run() -> int:
        async def opened() -> Space:
            if link.startswith("esinv"):
                joined: Space = await join(link, identity, data_dir=ctx.data_dir)
                return joined
            space: Space = await connect(relay, identity, link, data_dir=ctx.data_dir)
            return space

        try:
            space = await asyncio.wait_for(opened(), ctx.timeout)
        except TimeoutError:
            raise CliError("the relay did not answer in time: check the link or --relay, or try again with "
                           "--timeout", EXIT_UNREACHABLE) from None
        try:
            existing = registry.by_id(space.id)
            name = existing.name if existing else args.name or f"space-{space.id[:6]}"
            registry.add(SpaceRef(name, space.id, space.url, ctx.data_dir))
            await space.flush()
        finally:
            await space.close()
        print(name)
        _warn(f"joined space {space.id[:12]}… as {name!r}; `encspaces edit {name}` opens it")
        return EXIT_OK

    return _run(run())


# --- members -------------------------------------------------------------------------------------


def _find_member(space: Space, text: str) -> str:
    """A member id from a member id, an unambiguous prefix of one, or a public identity string."""
    text = text.strip()
    if text.startswith("esid1."):
        return PublicIdentity.parse(text).member_id
    members = space.members
    if text in members:
        return text
    matches = [mid for mid in members if mid.startswith(text)] if len(text) >= 4 else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CliError(f"{text!r} matches several members: give more of the member id")
    raise CliError(f"{text!r} is not a member of this space: `encspaces members SPACE` lists them")


def _member_rows(space: Space, me: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for mid, member in sorted(space.members.items(), key=lambda item: item[1].added_seq):
        added = "created the space" if member.added_by is None else f"added by {_short(member.added_by)}"
        rows.append((mid, member.role.value, f"{added} at seq {member.added_seq}", " (you)" if mid == me else ""))
    return rows


def cmd_members(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def run() -> int:
        async with _opened(ctx, ref) as space:
            for mid, role, added, you in _member_rows(space, space.identity.member_id):
                print(f"{mid}  {role:<6}  {added}{you}")
        return EXIT_OK

    return _run(run())


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    role = _role(args.role)
    try:
        new = PublicIdentity.parse(args.identity_string)
    except IdentityError as exc:
        raise CliError(f"{exc}: ask them for the line `encspaces whoami` prints", EXIT_USAGE) from exc

    async def run() -> int:
        async with _opened(ctx, ref, need_relay=True) as space:
            await space.add_member(new, role)
            print(f"added {new.member_id} as {role.value} (seq {space.seq})")
        return EXIT_OK

    return _run(run())


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def run() -> int:
        async with _opened(ctx, ref, need_relay=True) as space:
            remove = getattr(space, "remove_member", None)
            if remove is None:
                _unavailable("removing members")
            target = _find_member(space, args.member)
            await remove(target)
            print(f"removed {target} (seq {space.seq}, epoch {space.epoch})")
        return EXIT_OK

    return _run(run())


def cmd_set_role(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    role = _role(args.role)

    async def run() -> int:
        async with _opened(ctx, ref, need_relay=True) as space:
            target = _find_member(space, args.member)
            await space.set_role(target, role)
            print(f"{target} is now {role.value} (seq {space.seq})")
        return EXIT_OK

    return _run(run())


def cmd_rotate_key(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def run() -> int:
        async with _opened(ctx, ref, need_relay=True) as space:
            await space.rotate_key()
            print(f"new key: epoch {space.epoch} (seq {space.seq})")
        return EXIT_OK

    return _run(run())


def cmd_invites(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def run() -> int:
        async with _opened(ctx, ref) as space:
            invites = space.invites
        if not invites:
            _warn(f"no open invites in {ref.name!r}")
        for invite in sorted(invites, key=lambda i: i.created_seq):
            if invite.expires_ms is None:
                expires = "never expires"
            else:
                expires = ("expired " if invite.expired else "expires ") + _time(invite.expires_ms)
            history = "with history" if invite.history else "without history"
            print(f"{invite.id}  {invite.role.value:<6}  {invite.used}/{invite.uses} used  {expires}  {history}  "
                  f"by {_short(invite.created_by)} at seq {invite.created_seq}")
        return EXIT_OK

    return _run(run())


def _find_invite(space: Space, text: str) -> str:
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

    async def run() -> int:
        async with _opened(ctx, ref, need_relay=True) as space:
            invite = _find_invite(space, args.invite)
            await space.revoke_invite(invite)
            print(f"revoked invite {invite[:12]}…; new key, epoch {space.epoch} (seq {space.seq})")
        return EXIT_OK

    return _run(run())


def cmd_leave(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def run() -> int:
        async with _opened(ctx, ref, need_relay=True) as space:
            me = space.identity.member_id
            member = space.members.get(me)
            if member is None:
                raise CliError(f"this device is no longer a member of {ref.name!r}: `encspaces forget {ref.name}` "
                               "drops it from this device")
            admins = sorted(mid for mid, m in space.members.items() if m.role is Role.ADMIN)
            if member.role is not Role.ADMIN:
                raise CliError(f"only admins can remove members, and you are a {member.role.value}: ask an admin "
                               f"({', '.join(_short(a) for a in admins)}) to run `encspaces remove SPACE {me}`; "
                               f"`encspaces forget {ref.name}` drops the space from this device")
            if admins == [me]:
                raise CliError("you are the last admin of this space, and it needs one: make another member admin "
                               f"first (`encspaces set-role {ref.name} MEMBER admin`)")
            with contextlib.suppress(MembershipRevokedError):  # our own removal is in the verified log: left
                await space.remove_member(me)
            print(f"left {ref.name!r} (seq {space.seq}); the others now use a key this device never gets")
        _warn(f"`encspaces forget {ref.name}` deletes this device's copy")
        return EXIT_OK

    return _run(run())


def cmd_forget(ctx: Context, args: argparse.Namespace) -> int:
    registry = ctx.registry()
    ref = registry.resolve(args.space)
    folder = ref.data_dir / ref.space_bytes.hex()
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(f"forgetting deletes this device's copy of {ref.name!r}: confirm with --yes", EXIT_USAGE)
        answer = input(f"Forget {ref.name!r} ({ref.id[:12]}…) and delete this device's copy in {folder}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            _warn("nothing changed")
            return EXIT_ERROR
    del registry.spaces[ref.name]
    registry.save()
    shutil.rmtree(folder, ignore_errors=True)
    print(f"forgot {ref.name} ({ref.id})")
    _warn("the space itself is untouched: its other members and the relay keep it")
    return EXIT_OK


# --- texts ---------------------------------------------------------------------------------------


def _read_arg(value: str) -> str:
    return sys.stdin.read() if value == "-" else value


def cmd_cat(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def run() -> int:
        async with _open_offline(ctx, ref) if args.offline else _opened(ctx, ref) as space:
            texts = [name for name, kind in space.objects() if kind == "text"]
            if args.doc not in texts:
                others = ", ".join(texts) or "none"
                _warn(f"no text named {args.doc!r} in {ref.name!r} yet (texts: {others})")
                return EXIT_OK
            content = str(space.text(args.doc))
        sys.stdout.write(content)
        if content and not content.endswith("\n"):
            sys.stdout.write("\n")
        return EXIT_OK

    return _run(run())


def cmd_edit(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    if args.append is not None or args.replace is not None:
        return _run(_scripted_edit(ctx, ref, args))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the editor needs a terminal; in scripts use --append TEXT or --replace TEXT", EXIT_USAGE)
    try:
        editor = importlib.import_module("clients.editor")
    except ImportError as exc:
        raise CliError(f"the editor is not installed ({exc}): reinstall encspaces with its dependencies") from exc
    name = args.name or os.environ.get(ENV_NAME) or ctx.identity().name or _user_name()

    async def run() -> int:
        space = await _connect(ctx, ref)
        try:
            code: int = await editor.run_editor(space, args.doc, name=name, space_name=ref.name)
        finally:
            await space.close()
        if space.error is not None:
            raise space.error
        if space.unsent:
            _warn(f"{space.unsent} edit(s) saved on this device and not sent yet: they are sent the next time "
                  f"{ref.name!r} is opened online")
        return code

    return _run(run())


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "me"


async def _scripted_edit(ctx: Context, ref: SpaceRef, args: argparse.Namespace) -> int:
    text_value = _read_arg(args.append if args.append is not None else args.replace)
    space = await _connect(ctx, ref)
    try:
        try:
            online = await _catch_up(space, ctx.timeout, progress=sys.stderr)
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
            await asyncio.wait_for(space.sync(), ctx.timeout)
        except TimeoutError:
            raise CliError("the relay did not confirm the edit in time: it is saved on this device and is sent "
                           "the next time the space is opened online", EXIT_UNREACHABLE) from None
        _warn(f"saved; verified through seq {space.seq}")
    finally:
        await space.close()
    return EXIT_OK


# --- the verified history, re-verification and safety codes ---------------------------------------


@dataclasses.dataclass
class Reverification:
    seq: int
    head: bytes
    results: list[VerifiedEntry]
    members: dict[bytes, Member]
    error: EncspacesError | None = None

    @property
    def entries(self) -> list[VerifiedEntry]:
        return [r for r in self.results if not r.late]


def reverify(space: bytes, identity: Identity, rows: list[tuple[int, bytes, bytes]],
             keys: dict[int, bytes] | None = None) -> Reverification:
    """Verify stored rows (seq, raw entry, head) from genesis, one frame per entry (so a failure
    names its seq, and every stored head is checked against the chain); stops at the first failure.

    ``keys`` are epoch keys this device already holds (from its checkpoint): a member who joined
    with an invite got them through the invite's secret, which is not kept, and needs them to
    open what was written before.
    """
    verifier = LogVerifier(space, identity)
    verifier.epoch_keys.update(keys or {})
    results: list[VerifiedEntry] = []
    report = Reverification(0, crypto.ZERO_HASH, results, {})
    try:
        for seq, raw, head in rows:
            if seq != verifier.seq + 1:
                raise StoreError(f"the local log has no entry at seq {verifier.seq + 1} (the next is at seq {seq})")
            results.extend(verifier.reverify_stored(seq, raw, head))
    except EncspacesError as exc:
        report.error = exc
    report.seq, report.head = verifier.seq, verifier.head
    report.members = dict(verifier.state.members)
    return report


async def _load_local(ref: SpaceRef, identity: Identity) -> tuple[list[tuple[int, bytes, bytes]], dict[int, bytes]]:
    """This device's stored log, and the epoch keys its newest checkpoint holds."""
    folder = ref.data_dir / ref.space_bytes.hex()
    if not folder.exists():
        raise CliError(f"this device holds no copy of {ref.name!r} in {ref.data_dir}: open it once online")
    store = await LocalStore.open(ref.data_dir, ref.space_bytes.hex())
    try:
        rows = await store.load_log()
        checkpoint = await store.load_checkpoint()
    finally:
        await store.close()
    keys: dict[int, bytes] = {}
    if checkpoint is not None and checkpoint[0] <= len(rows):
        heads = [crypto.ZERO_HASH, *(head for _, _, head in rows[: checkpoint[0]])]
        with contextlib.suppress(EncspacesError):  # an unusable checkpoint only costs readability here
            keys = dict(LogVerifier.from_checkpoint(ref.space_bytes, identity, checkpoint[1], heads)[0].epoch_keys)
    return rows, keys


async def _refresh(ctx: Context, ref: SpaceRef, offline: bool) -> bool:
    """Bring the local log up to date with the relay (verifying it); False when offline."""
    if offline:
        return False
    async with _opened(ctx, ref) as space:
        return space.connected


def _describe(result: VerifiedEntry) -> str:
    entry = result.entry
    kind = entry.header.kind
    try:
        if kind is Kind.GENESIS:
            genesis = GenesisBody.decode(entry.body)
            return f"created the space (relay key {member_id(genesis.relay_key)})"
        if kind is Kind.ADD_MEMBER:
            add = AddMemberBody.decode(entry.body)
            return f"added {_short(add.member)} as {add.role.value}"
        if kind is Kind.DATA:
            if result.plaintext is not None:
                return f"edit ({len(entry.body)} bytes encrypted)"
            return f"not readable here: {result.problem}"
        return _describe_other(entry)
    except EncspacesError as exc:
        return f"{kind.value} ({exc})"


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _describe_other(entry: Entry) -> str:
    """Entry kinds of later protocol versions, described when this version can decode them."""
    membership, invites = _module("encspaces.membership"), _module("encspaces.invites")
    kind = entry.header.kind.value
    rekey = getattr(membership, "RekeyBody", None)
    set_role = getattr(membership, "SetRoleBody", None)
    invite = getattr(invites, "InviteBody", None)
    revoke = getattr(invites, "RevokeInviteBody", None)
    if kind in ("remove_member", "rotate") and rekey is not None:
        body = rekey.decode(entry.body, kind)
        if kind == "remove_member" and body.member is not None:
            return f"removed {_short(body.member)}; new key, epoch {body.epoch}"
        return f"new key, epoch {body.epoch}"
    if kind == "set_role" and set_role is not None:
        body = set_role.decode(entry.body)
        return f"made {_short(body.member)} {body.role.value}"
    if kind == "invite" and invite is not None:
        body = invite.decode(entry.body)
        expires = "never expires" if body.expires_ms is None else f"expires {_time(body.expires_ms)}"
        history = "with history" if body.history else "without history"
        return f"invite {_short(body.invite)}: {body.uses} use(s) as {body.role.value}, {history}, {expires}"
    if kind == "revoke_invite" and revoke is not None:
        return f"revoked invite {_short(revoke.decode(entry.body).invite)}"
    if kind == "join":
        return "joined with an invite"
    return kind.replace("_", " ")


def _time(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def cmd_log(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    identity = ctx.identity()

    async def run() -> int:
        await _refresh(ctx, ref, args.offline)
        rows, keys = await _load_local(ref, identity)
        report = reverify(ref.space_bytes, identity, rows, keys)
        shown = report.entries if args.limit is None else report.entries[-args.limit :]
        me = identity.public.sign_key
        for result in shown:
            header = result.entry.header
            who = _short(header.author) + ("*" if header.author == me else " ")
            print(f"{result.seq:>6}  {_time(header.time_ms)}  {who:<11}  {header.kind.value:<13}  "
                  f"{_describe(result)}")
        if report.error is not None:
            raise report.error
        _warn(f"{len(report.entries)} entries, verified from genesis; * marks yours; times are the authors' "
              "own clocks (UTC)")
        return EXIT_OK

    return _run(run())


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    identity = ctx.identity()

    async def run() -> int:
        online = await _refresh(ctx, ref, args.offline)
        rows, keys = await _load_local(ref, identity)
        report = reverify(ref.space_bytes, identity, rows, keys)
        entries = report.entries
        data = [r for r in entries if r.kind is Kind.DATA]
        unreadable = [r for r in data if r.plaintext is None and not any(
            late.seq == r.seq and late.plaintext is not None for late in report.results if late.late)]
        print(f"space {ref.name} ({ref.id})")
        if report.error is not None:
            print(f"FAILED at seq {report.seq + 1}: {type(report.error).__name__}: {report.error}")
            print(f"  seqs 1..{report.seq} verified before the failure")
            raise CliError(f"verification of the local log failed: {type(report.error).__name__}: {report.error}",
                           EXIT_VERIFICATION)
        print(f"re-verified seqs 1..{report.seq} from genesis on this device:")
        print("  genesis against the space id; every author signature and body digest; the hash chain to")
        print("  every stored head; membership, roles, author order, parents and epochs")
        print("  (not re-checked: the relay's signatures over heads, which the local store does not keep)")
        print(f"  {len(entries)} entries: {len(data)} edits, {len(entries) - len(data)} membership and key entries; "
              f"{len(report.members)} members")
        if unreadable:
            print(f"  {len(unreadable)} edits this device cannot read (no key, or they do not open)")
        print(f"  head at seq {report.seq}: {report.head.hex()}")
        print(f"  safety code at seq {report.seq}: {safety_code(ref.space_bytes, report.seq, report.head)}")
        if online:
            print("relay: caught up; its signed heads matched this log (no fork, no rollback)")
        else:
            print("relay: not contacted" + ("" if args.offline else " (offline)"))
        print("OK")
        return EXIT_OK

    return _run(run())


def cmd_safety_code(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def run() -> int:
        await _refresh(ctx, ref, args.offline)
        rows, _ = await _load_local(ref, ctx.identity())
        if not rows:
            raise CliError(f"this device has verified nothing of {ref.name!r} yet: open it online first")
        seq = rows[-1][0] if args.seq is None else args.seq
        if not 1 <= seq <= rows[-1][0] or rows[seq - 1][0] != seq:
            raise CliError(f"this device has verified seqs 1..{rows[-1][0]}; pick a --seq in that range", EXIT_USAGE)
        print(f"seq {seq}: {safety_code(ref.space_bytes, seq, rows[seq - 1][2])}")
        _warn("compare this with another member at the same seq (by phone or in person); if the codes differ, "
              "the relay showed you different histories")
        return EXIT_OK

    return _run(run())


# --- files ---------------------------------------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


PROGRESS_THRESHOLD = 1 << 20  # bytes: smaller transfers are quick enough to need no bar


@contextlib.contextmanager
def _progress(label: str, total: int | None, stream: TextIO, unit: str = "bytes") -> Any:
    """A progress bar on a terminal for long transfers (``unit`` bytes) or catch-ups (``unit``
    entries); yields a callback (done, total) -> None."""
    if (unit == "bytes" and total is not None and total < PROGRESS_THRESHOLD) or not stream.isatty():
        yield lambda done, total=None: None
        return
    from rich.console import Console  # only for long transfers on a terminal
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TransferSpeedColumn

    columns = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),)
    with Progress("[progress.description]{task.description}", BarColumn(), *columns,
                  console=Console(file=stream), transient=True) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, new_total: int | None = None) -> None:
            bar.update(task, completed=done, total=new_total if new_total is not None else total)

        yield update


def _file_field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, dict) and name in item:
            return item[name]
        if hasattr(item, name):
            return getattr(item, name)
    return None


FILE_ACTION_ALIASES = {"ls": "list", "rm": "delete"}  # the names of space.files' methods are the primary ones


def cmd_files(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def run() -> int:
        action = FILE_ACTION_ALIASES.get(args.action, args.action)
        async with _opened(ctx, ref, need_relay=action != "list") as space:
            files = getattr(space, "files", None)
            if files is None:
                _unavailable("sharing files")
            if action == "put":
                return await _files_put(files, args)
            if action == "get":
                return await _files_get(files, args)
            if action == "list":
                for item in await _maybe_await(files.list()):
                    name = item if isinstance(item, str) else _file_field(item, "name")
                    size = _file_field(item, "size")
                    kind = _file_field(item, "content_type")
                    print("  ".join(str(part) for part in (f"{size:>12}" if size is not None else None, name, kind)
                                    if part is not None))
                return EXIT_OK
            await _maybe_await(files.delete(args.name))
            print(f"removed {args.name}")
            return EXIT_OK

    return _run(run())


async def _files_put(files: Any, args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.is_file():
        raise CliError(f"no file at {path}")
    name = args.name or path.name
    size = path.stat().st_size
    with _progress(f"uploading {name}", size, sys.stderr) as progress:
        kwargs = {"progress": progress} if _accepts(files.put, "progress") else {}
        await _maybe_await(files.put(name, path, **kwargs))
    print(f"uploaded {name} ({size} bytes)")
    return EXIT_OK


async def _files_get(files: Any, args: argparse.Namespace) -> int:
    target = Path(args.output) if args.output else Path(Path(args.name).name)
    if target.is_dir():
        target = target / Path(args.name).name
    if target.exists() and not args.force:
        raise CliError(f"{target} exists: use --force to overwrite it, or -o another path")
    ref = files.ref(args.name) if hasattr(files, "ref") else None
    size = _file_field(ref, "size") if ref is not None else None
    with _progress(f"downloading {args.name}", size, sys.stderr) as progress:
        kwargs = {"progress": progress} if _accepts(files.get, "progress") else {}
        data = await _maybe_await(files.get(args.name, target, **kwargs))
    if isinstance(data, bytes | bytearray):
        target.write_bytes(data)
    print(f"saved {target}" + ("" if size is None else f" ({size} bytes)"))
    return EXIT_OK


# --- the parser ----------------------------------------------------------------------------------


def _version() -> str:
    return str(importlib.import_module("encspaces").__version__)


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
    parser = argparse.ArgumentParser(
        prog="encspaces", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="End-to-end-encrypted, verifiable collaboration: spaces shared through an untrusted relay.",
        epilog=EXIT_CODES_HELP)
    _common(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"encspaces {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[Context, argparse.Namespace], int], summary: str,
                description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=textwrap.fill(description or summary, 88),
                           epilog=EXIT_CODES_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, suppress=True)
        p.set_defaults(func=func)
        return p

    def space_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("space", metavar="SPACE", help="a space's local name (or its id, or a prefix of the id)")

    def offline_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--offline", action="store_true", help="use this device's copy without asking the relay")

    p = command("init", cmd_init, "create this device's identity",
                "Create this device's identity (its keys) and print the public identity string that others "
                "use to add it to a space. Your display name is asked (on a terminal) or given with --name, and "
                "kept with the identity.")
    p.add_argument("--force", action="store_true", help="replace an existing identity (it is lost)")
    p.add_argument("--exist-ok", action="store_true", help="succeed, printing it, when an identity exists")
    p.add_argument("--name", help="your display name, shown to other members (asked when run in a terminal); "
                   f"${ENV_NAME} overrides it")

    p = command("whoami", cmd_whoami, "print this device's public identity")
    p.add_argument("--member-id", action="store_true", help="print the short member id instead")

    p = command("create", cmd_create, "create a space on a relay",
                "Create a space on the relay and remember it under NAME on this device; you are its admin.")
    p.add_argument("name", metavar="NAME", help="the local name for the space")
    p.add_argument("--relay", help=f"relay URL (default: ${ENV_RELAY}, else {DEFAULT_RELAY})")
    p.add_argument("--exist-ok", action="store_true", help="succeed when this device already has a space NAME")

    p = command("spaces", cmd_spaces, "list the spaces this device knows")
    p.add_argument("--names", action="store_true", help="print only the names")

    p = command("invite", cmd_invite, "make an invite link (admins)",
                "Make a link that lets a new device join SPACE. Anyone holding the link can join while it is "
                "valid, so send it privately. `encspaces invites SPACE` lists open invites, `encspaces invite "
                "revoke SPACE INVITE` revokes one.")
    space_arg(p)
    p.add_argument("--role", default="writer", help="role of who joins: admin, writer or reader (default writer)")
    p.add_argument("--uses", type=int, default=1, help="how many devices may join with it (default 1)")
    p.add_argument("--expires", default="7d", help="how long it is valid: 90s, 30m, 12h, 7d, 2w (default 7d)")
    p.add_argument("--no-history", action="store_true", help="who joins cannot read what was written before")
    p.add_argument("revoke_args", nargs="*", metavar="", help=argparse.SUPPRESS)  # `invite revoke SPACE INVITE`

    p = command("invites", cmd_invites, "list a space's open invites",
                "List the open invites of SPACE (not revoked, not used up; expired ones say so): id, role, "
                "uses, expiry, who made it. `encspaces revoke-invite SPACE INVITE` revokes one.")
    space_arg(p)

    p = command("revoke-invite", cmd_revoke_invite, "revoke an open invite (admins); the space gets a new key",
                "Revoke an open invite of SPACE, named by its id (or a prefix of it, see `encspaces invites`) or "
                "its link; also `encspaces invite revoke SPACE INVITE`. Its link stops working, the relay closes "
                "connections it let in with it, and a new key epoch starts that the link never gets.")
    space_arg(p)
    p.add_argument("invite", metavar="INVITE", help="the invite's id, a prefix of it, or its link")

    p = command("join", cmd_join, "join a space with an invite link",
                "Join a space with an invite link, or open a space you were added to by your public identity "
                "(give its space id and --relay), and remember it on this device.")
    p.add_argument("link", metavar="LINK", help="the invite link, or the id of a space you were added to")
    p.add_argument("--name", help="the local name for the space (default: space-<id prefix>)")
    p.add_argument("--relay", help=f"with a space id: its relay (default: ${ENV_RELAY}, else {DEFAULT_RELAY})")

    p = command("members", cmd_members, "list a space's members and roles")
    space_arg(p)

    p = command("add", cmd_add, "add a member by their public identity (admins)")
    space_arg(p)
    p.add_argument("identity_string", metavar="PUBLIC_IDENTITY", help="the line `encspaces whoami` prints for them")
    p.add_argument("--role", default="writer", help="admin, writer or reader (default writer)")

    p = command("remove", cmd_remove, "remove a member (admins); the space gets a new key")
    space_arg(p)
    p.add_argument("member", metavar="MEMBER", help="member id (or a prefix of it) or public identity")

    p = command("set-role", cmd_set_role, "change a member's role (admins)",
                "Make MEMBER of SPACE an admin, a writer or a reader. The space always keeps at least one admin.")
    space_arg(p)
    p.add_argument("member", metavar="MEMBER", help="member id (or a prefix of it) or public identity")
    p.add_argument("role", metavar="ROLE", help="admin, writer or reader")

    p = command("rotate-key", cmd_rotate_key, "start a new key epoch now (admins)",
                "Give SPACE a new key now: what is written from here on uses a key sealed to the current members "
                "only. Removals and revocations already do this; the policy can also do it on a schedule.")
    space_arg(p)

    p = command("leave", cmd_leave, "leave a space (admins; others ask an admin)",
                "Remove yourself from SPACE. Only admins may remove members, so an admin can leave (if another "
                "admin stays); a writer or reader is told whom to ask. `encspaces forget` then drops the copy.")
    space_arg(p)

    p = command("forget", cmd_forget, "drop a space from this device",
                "Remove SPACE from this device's list of spaces and delete its local copy (after a confirmation, "
                "or with --yes). The space itself, its members and the relay's copy are untouched; a space you "
                "were removed from is forgotten this way.")
    space_arg(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = command("edit", cmd_edit, "edit a shared text in the terminal editor",
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

    p = command("cat", cmd_cat, "print a shared text")
    space_arg(p)
    p.add_argument("doc", metavar="DOC", nargs="?", default=DEFAULT_DOC, help=f"the text (default {DEFAULT_DOC})")
    offline_arg(p)

    p = command("log", cmd_log, "show the verified history of a space",
                "Catch up with the relay, re-verify this device's log from genesis and print it: seq, time "
                "(the author's clock), author, kind and what the entry did.")
    space_arg(p)
    offline_arg(p)
    p.add_argument("--limit", type=int, help="show only the last N entries")

    p = command("verify", cmd_verify, "re-verify the whole local log from genesis",
                "Catch up with the relay (checking its signed heads against this log: no fork, no rollback), "
                "then re-verify every stored entry from genesis: the genesis against the space id, author "
                "signatures and body digests, the hash chain to every stored head, membership, roles, author "
                "order, parents and epochs. The relay's signatures over heads are checked on arrival but not "
                "stored, so they are not re-checked. Exit code 3 when anything fails.")
    space_arg(p)
    offline_arg(p)

    p = command("safety-code", cmd_safety_code, "a short code to compare with another member",
                "Print a code derived from the verified head at one seq. Two members who compare codes at the "
                "same seq (by phone or in person) rule out a relay showing them different histories.")
    space_arg(p)
    offline_arg(p)
    p.add_argument("--seq", type=int, help="the seq to take the code at (default: the newest verified)")

    p = command("files", cmd_files, "share encrypted files in a space")
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
    return parser


# --- errors --------------------------------------------------------------------------------------


def explain(exc: BaseException) -> tuple[str, int]:
    """One line for an error (what went wrong and what to do) and the exit code it maps to."""
    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, VerificationError):
        return (f"verification failed: {type(exc).__name__}: {exc}. The relay served something this device "
                "refuses to trust; nothing of it was applied. Compare `encspaces safety-code` with another "
                "member and tell the relay's operator", EXIT_VERIFICATION)
    if isinstance(exc, RelayTLSError):
        return str(exc), EXIT_UNREACHABLE  # it answered: "is it running?" would mislead
    if isinstance(exc, ConnectionFailedError):
        return f"{exc}: is the relay running? (`make run` or `encspaces-relay`)", EXIT_UNREACHABLE
    if isinstance(exc, RelayError):
        if exc.code == "not_a_member":
            return f"{exc}: this device is not a member (ask an admin to add or invite you)", EXIT_ERROR
        return str(exc), EXIT_ERROR
    if isinstance(exc, HandshakeError):
        return f"the relay refused the connection: {exc}", EXIT_ERROR
    if isinstance(exc, StoreError):
        return f"{exc}: the local copy is damaged; move the space's data folder away to fetch it again", EXIT_ERROR
    if isinstance(exc, EncspacesError):
        return str(exc), EXIT_ERROR
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), EXIT_ERROR
    return f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", EXIT_ERROR


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
        code: int = args.func(ctx, args)
    except KeyboardInterrupt:
        if ctx.debug:
            raise
        _warn("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if ctx.debug:
            raise
        message, code = explain(exc)
        print(f"error: {message}", file=sys.stderr)
        return code
    return code


if __name__ == "__main__":
    sys.exit(main())
