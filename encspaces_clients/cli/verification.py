"""``log``, ``verify``, ``safety-code``, ``evidence`` and ``status``: the verified history, re-verified
from genesis on this device, the proof of a relay's misbehaviour that it recorded, and how far the
log is witnessed."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from encspaces.core import evidence
from encspaces.core.entry import Entry, Kind
from encspaces.core.identity import member_id
from encspaces.core.invites import InviteBody, RevokeInviteBody
from encspaces.core.membership import AddDeviceBody, AddMemberBody, GenesisBody, RekeyBody, SetRoleBody
from encspaces.core.safety import safety_code
from encspaces.core.verifier import VerifiedEntry
from encspaces.core.witness_policy import WitnessPolicy
from encspaces.errors import EncspacesError, EvidenceError
from encspaces.local import load_evidence, load_stored_log, reverify_local

from ..terminal import printable
from .connecting import opened, run
from .errors import EXIT_OK, EXIT_USAGE, EXIT_VERIFICATION, CliError
from .home import Context, SpaceRef
from .output import short, time_text, warn


async def refresh(ctx: Context, ref: SpaceRef, offline: bool) -> bool:
    """Bring the local log up to date with the relay (verifying it); False when offline."""
    if offline:
        return False
    async with opened(ctx, ref) as space:
        return space.connected


def describe(result: VerifiedEntry) -> str:
    entry = result.entry
    kind = entry.header.kind
    try:
        if kind is Kind.GENESIS:
            genesis = GenesisBody.decode(entry.body)
            return f"created the space (relay key {member_id(genesis.relay_key)})"
        if kind is Kind.ADD_MEMBER:
            add = AddMemberBody.decode(entry.body)
            return f"added {short(add.member)} as {add.role.value}"
        if kind is Kind.DATA:
            if result.plaintext is not None:
                return f"edit ({len(entry.body)} bytes encrypted)"
            return f"not readable here: {result.problem}"
        return _describe_other(entry)
    except EncspacesError as exc:
        return f"{kind.value} ({exc})"


def _describe_other(entry: Entry) -> str:
    kind = entry.header.kind
    if kind in (Kind.REMOVE_MEMBER, Kind.ROTATE):
        rekey = RekeyBody.decode(entry.body, kind.value)
        if kind is Kind.REMOVE_MEMBER and rekey.member is not None:
            return f"removed {short(rekey.member)}; new key, epoch {rekey.epoch}"
        return f"new key, epoch {rekey.epoch}"
    if kind is Kind.SET_ROLE:
        set_role = SetRoleBody.decode(entry.body)
        return f"made {short(set_role.member)} {set_role.role.value}"
    if kind is Kind.INVITE:
        invite = InviteBody.decode(entry.body)
        expires = "never expires" if invite.expires_ms is None else f"expires {time_text(invite.expires_ms)}"
        history = "with history" if invite.history else "without history"
        return f"invite {short(invite.invite)}: {invite.uses} use(s) as {invite.role.value}, {history}, {expires}"
    if kind is Kind.REVOKE_INVITE:
        return f"revoked invite {short(RevokeInviteBody.decode(entry.body).invite)}"
    if kind is Kind.JOIN:
        return "joined with an invite"
    if kind is Kind.ADD_DEVICE:
        cert = AddDeviceBody.decode(entry.body).cert
        return f"added device {short(cert.device)} ({cert.name or 'unnamed'}) of {short(cert.person)}"
    if kind is Kind.REMOVE_DEVICE:
        rekey = RekeyBody.decode(entry.body, kind.value)
        return f"removed device {short(rekey.device or b'')}; new key, epoch {rekey.epoch}"
    if kind is Kind.WITNESSES:
        return f"witnesses: {WitnessPolicy.decode_body(entry.body).describe()}"
    return kind.value.replace("_", " ")


def cmd_log(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    identity = ctx.identity()

    async def log() -> int:
        await refresh(ctx, ref, args.offline)
        ref.require_local_copy()
        report = await reverify_local(identity, ref.id, data_dir=ref.data_dir)
        shown = report.entries if args.limit is None else report.entries[-args.limit :]
        me = identity.public.sign_key
        for result in shown:
            header = result.entry.header
            who = short(header.author) + ("*" if header.author == me else " ")
            print(f"{result.seq:>6}  {time_text(header.time_ms)}  {who:<11}  {header.kind.value:<13}  "
                  f"{printable(describe(result))}")  # device names and witness URLs are members' text
        if report.error is not None:
            raise report.error
        warn(f"{len(report.entries)} entries, verified from genesis; * marks yours; times are the authors' "
             "own clocks (UTC)")
        return EXIT_OK

    return run(log())


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)
    identity = ctx.identity()

    async def verify() -> int:
        online = await refresh(ctx, ref, args.offline)
        ref.require_local_copy()
        report = await reverify_local(identity, ref.id, data_dir=ref.data_dir)
        entries = report.entries
        data = [r for r in entries if r.kind is Kind.DATA]
        unreadable = [r for r in data if r.plaintext is None and not any(
            late.seq == r.seq and late.plaintext is not None for late in report.results if late.late)]
        print(f"space {ref.name} ({ref.id})")
        if report.error is not None:
            print(printable(f"FAILED at seq {report.seq + 1}: {type(report.error).__name__}: {report.error}"))
            print(f"  seqs 1..{report.seq} verified before the failure")
            raise CliError(f"verification of the local log failed: {type(report.error).__name__}: {report.error}",
                           EXIT_VERIFICATION)
        print(f"re-verified seqs 1..{report.seq} from genesis on this device:")
        print("  genesis against the space id; every author signature and body digest; the hash chain to")
        print("  every stored head; membership, roles, author order, parents and epochs")
        if report.heads_checked:
            print(f"  the relay's signatures over the {report.heads_checked} signed heads this device kept, under the "
                  "relay key the genesis pins, each against the chain at its seq")
        else:
            print("  (not re-checked: the relay's signatures; this store kept none, it predates keeping them)")
        for size, cosigners in report.checkpoints_checked:
            print(f"  the relay's checkpoint of size {size}, cosigned by {', '.join(cosigners)}: its signatures, "
                  "and its root = the stored log's Merkle root at that size")
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
        if await load_evidence(ref.id, data_dir=ref.data_dir) is not None:
            print(f"this space failed with evidence against its relay: `encspaces evidence {ref.name} --out FILE`")
        print("OK")
        return EXIT_OK

    return run(verify())


def cmd_safety_code(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def code() -> int:
        await refresh(ctx, ref, args.offline)
        ref.require_local_copy()
        stored = await load_stored_log(ctx.identity(), ref.id, data_dir=ref.data_dir)
        if not stored.rows:
            raise CliError(f"this device has verified nothing of {ref.name!r} yet: open it online first")
        last = stored.rows[-1][0]
        seq = last if args.seq is None else args.seq
        head = stored.head_at(seq)
        if head is None:
            raise CliError(f"this device has verified seqs 1..{last}; pick a --seq in that range", EXIT_USAGE)
        print(f"seq {seq}: {safety_code(ref.space_bytes, seq, head)}")
        warn("compare this with another member at the same seq (by phone or in person); if the codes differ, "
             "the relay showed you different histories")
        return EXIT_OK

    return run(code())


def cmd_evidence(ctx: Context, args: argparse.Namespace) -> int:
    if args.check is not None:
        return _check_file(Path(args.check))
    if args.space is None:
        raise CliError("name a SPACE to export its evidence, or --check FILE to verify one", EXIT_USAGE)
    ref = ctx.registry().resolve(args.space)
    ref.require_local_copy()

    async def export() -> int:
        data = await load_evidence(ref.id, data_dir=ref.data_dir)
        if data is None:
            raise CliError(f"this device recorded no evidence against the relay of {ref.name!r} (it records one "
                           "when the space fails with a fork, a rollback or withholding)")
        finding = evidence.check(data)  # never hand out a file that does not check
        if args.out is None:
            if sys.stdout.isatty():
                raise CliError("the evidence file is binary: give --out FILE (or redirect stdout)", EXIT_USAGE)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            Path(args.out).write_bytes(data)
            print(f"wrote {args.out} ({len(data)} bytes): {finding.kind.value} at seq {finding.seq}")
        warn(f"proves: {finding.proves}")
        warn("anyone can check it offline: `encspaces evidence --check FILE`")
        return EXIT_OK

    return run(export())


def _check_file(path: Path) -> int:
    """Check an evidence file anyone may have sent: its reporter's note and names are its author's
    text, so every line is printed with control characters shown as stand-ins."""
    try:
        finding = evidence.check(path.read_bytes())
    except EvidenceError as exc:
        _say(f"{path}: REFUSED: {exc}")
        raise CliError(f"the evidence in {path} does not check: {exc}", EXIT_VERIFICATION) from exc
    _say(f"{path}: {finding.kind.value} by the relay of space {member_id(finding.space)}")
    _say(f"  relay key {member_id(finding.relay_key)}"
         + (" (bound to the space: the genesis pins it)" if finding.bound
            else " (NOT bound to the space: no genesis in the file; check the key another way)"))
    _say(f"  proves: {finding.proves}")
    if finding.reported:
        who = member_id(finding.reporter) if finding.reporter is not None else "an unnamed reporter"
        _say(f"  reported by {who}" + (" (signed)" if finding.reporter is not None else "")
             + f": {finding.reported}")
    if finding.cosigners:
        _say(f"  cosigned by: {', '.join(finding.cosigners)} (witnesses of the genesis policy)")
    if finding.ignored:
        _say(f"  not interpreted by this version: {', '.join(finding.ignored)} statements")
    _say("OK")
    return EXIT_OK


def _say(line: str) -> None:
    print(printable(line))


WITNESS_WAIT = 5.0  # seconds ``status`` gives the witnesses to vouch for the newest verified seq


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    ref = ctx.registry().resolve(args.space)

    async def show() -> int:
        async with opened(ctx, ref) as space:
            loop = asyncio.get_running_loop()
            until = loop.time() + min(ctx.timeout, WITNESS_WAIT)
            while (space.connected and space.error is None and space.witnessed_seq is not None
                   and space.witnessed_seq < space.seq and loop.time() < until):
                await asyncio.sleep(0.05)
            status = space.witness_status
            print(f"space {ref.name} ({ref.id})")
            print(f"relay {ref.relay}: {'online' if space.connected else 'offline'}")
            print(f"verified through seq {space.seq}")
            print(status.describe() + ("" if status.seq is None or status.seq >= space.seq
                                       else f"; the witnesses have not yet vouched for seq {space.seq}"))
            if status.seq is None:
                warn("this space names no witnesses: a relay that shows members different logs is noticed only "
                     "through presence or by comparing safety codes (admins: set witnesses)")
            if space.error is not None:
                raise space.error
        return EXIT_OK

    return run(show())
