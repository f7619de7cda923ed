"""The commands for roles, keys, invites, leaving and forgetting, in subprocesses against a relay."""

from __future__ import annotations

import asyncio
import os
import select
import sys
import time
from pathlib import Path

import pytest

from encspaces import Identity
from encspaces_clients.cli.errors import EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE
from encspaces_relay.process import RelayProcess

from .conftest import COMMAND, User, member_pair

NEW_COMMANDS = ("set-role", "rotate-key", "invites", "revoke-invite", "leave", "forget")


async def test_version_and_help_of_the_new_commands(alice: User) -> None:
    import encspaces

    version = await alice.run("--version")
    assert version.code == 0 and version.out.strip() == f"encspaces {encspaces.__version__}"
    relay = await asyncio.create_subprocess_exec(
        str(Path(COMMAND[0]).with_name("encspaces-relay")) if len(COMMAND) == 1 else sys.executable,
        *(["--version"] if len(COMMAND) == 1 else ["-m", "encspaces_relay", "--version"]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await relay.communicate()
    assert relay.returncode == 0 and out.decode().strip() == f"encspaces-relay {encspaces.__version__}"
    top = await alice.run("--help")
    assert all(name in top.out for name in NEW_COMMANDS)
    for name in NEW_COMMANDS:
        result = await alice.run(name, "--help")
        assert result.code == 0 and "SPACE" in result.out, result
    files = await alice.run("files", "x", "--help")
    assert "list (ls)" in files.out and "delete (rm)" in files.out
    assert "--offline" in (await alice.run("cat", "--help")).out


async def test_roles_key_rotation_and_invites(relay: RelayProcess, alice: User, bob: User) -> None:
    await member_pair(relay, alice, bob)
    bob_id = (await bob.ok("whoami", "--member-id")).strip()
    assert f"{bob_id} is now reader" in await alice.ok("set-role", "notes", bob_id[:8], "reader")
    refused = await bob.run("edit", "notes", "--append", "a reader writes?")
    assert refused.code != 0 and "Traceback" not in refused.err
    await alice.ok("set-role", "notes", bob_id, "writer")
    same = await alice.run("set-role", "notes", bob_id, "writer")
    assert same.code == EXIT_ERROR and "already has role writer" in same.err, same
    bad = await alice.run("set-role", "notes", bob_id, "owner")
    assert bad.code == EXIT_USAGE and "admin, writer, reader" in bad.err
    assert "epoch 2" in await alice.ok("rotate-key", "notes")
    assert "new key, epoch 2" in (await alice.ok("log", "notes")).splitlines()[-1]
    not_admin = await bob.run("rotate-key", "notes")
    assert not_admin.code == EXIT_ERROR and "Traceback" not in not_admin.err and not_admin.err.count("\n") == 1

    empty = await alice.run("invites", "notes")
    assert empty.code == 0 and empty.out == "" and "no open invites" in empty.err
    first = (await alice.ok("invite", "notes", "--uses", "3", "--expires", "1h")).strip()
    second = (await alice.ok("invite", "notes", "--role", "reader", "--no-history")).strip()
    listed = (await bob.ok("invites", "notes")).splitlines()  # anyone can see them
    assert len(listed) == 2 and "0/3 used" in listed[0] and "reader" in listed[1] and "without history" in listed[1]
    first_id = listed[0].split()[0]
    revoked = await alice.ok("invite", "revoke", "notes", first_id[:8])
    assert f"revoked invite {first_id[:12]}" in revoked and "epoch 3" in revoked
    assert "revoked invite" in await alice.ok("revoke-invite", "notes", second)  # by its link
    assert (await alice.ok("invites", "notes")) == ""
    gone = await alice.run("revoke-invite", "notes", first_id)
    assert gone.code == EXIT_ERROR and "no open invite" in gone.err
    carol = User(alice.home.parent / "carol")
    await carol.ok("init")
    assert (await carol.run("join", first)).code != 0  # a revoked link admits nobody


async def test_leave_and_forget(relay: RelayProcess, alice: User, bob: User, tmp_path: Path) -> None:
    space_id = await member_pair(relay, alice, bob)
    await alice.ok("edit", "notes", "--append", "hello\n")
    bob_id = (await bob.ok("whoami", "--member-id")).strip()
    writer = await bob.run("leave", "notes")
    assert writer.code == EXIT_ERROR and "only admins can remove members" in writer.err
    assert f"encspaces remove SPACE {bob_id}" in writer.err and writer.err.count("\n") == 1
    last = await alice.run("leave", "notes")
    assert last.code == EXIT_ERROR and "last admin" in last.err and "set-role" in last.err

    await alice.ok("set-role", "notes", bob_id, "admin")
    assert "left 'notes'" in await bob.ok("leave", "notes")
    assert bob_id not in await alice.ok("members", "notes")
    # A removed member's space stays listed, and commands on it fail: forget drops it.
    assert (await bob.run("edit", "notes", "--append", "still here?")).code != 0
    store = bob.home / "data" / bytes.fromhex(_hex(space_id)).hex()
    assert store.exists()
    unconfirmed = await bob.run("forget", "notes")  # stdin is not a terminal: no prompt, nothing done
    assert unconfirmed.code == EXIT_USAGE and "--yes" in unconfirmed.err
    assert "notes" in await bob.ok("spaces", "--names")
    assert space_id in await bob.ok("forget", "notes", "--yes")
    assert "notes" not in await bob.ok("spaces", "--names") and not store.exists()
    unknown = await bob.run("cat", "notes")
    assert unknown.code == EXIT_ERROR and "no space named" in unknown.err
    assert await alice.ok("cat", "notes") == "hello\n"  # the space itself is untouched


def _hex(space_id: str) -> str:
    from encspaces.core.identity import decode_space_id

    return decode_space_id(space_id).hex()


async def test_a_refusing_relay_fails_fast_and_cat_offline(relay: RelayProcess, alice: User, bob: User) -> None:
    await member_pair(relay, alice, bob)
    await alice.ok("edit", "notes", "--append", "kept on this device\n")
    await relay.stop()  # nothing listens on its port now
    # A long --timeout: only the fast path says "refused" (the slow one says "did not answer within").
    added = await alice.run("set-role", "notes", "whoever", "reader", timeout=60)
    assert added.code == EXIT_UNREACHABLE and "refused the connection" in added.err, added
    assert added.err.count("\n") == 1
    members = await alice.run("members", "notes", timeout=60)
    assert members.code == 0 and "admin" in members.out and "refused the connection" in members.err, members
    offline = await alice.run("cat", "notes", "--offline")
    assert offline.code == 0 and offline.out == "kept on this device\n" and offline.err == "", offline
    never = await bob.run("cat", "nowhere", "--offline")
    assert never.code == EXIT_ERROR and "no space named" in never.err
    await relay.start()


async def test_init_names_the_device(tmp_path: Path) -> None:
    named = User(tmp_path / "named")
    await named.ok("init", "--name", "Ada  Lovelace")
    path = named.home / "identity.key"
    assert Identity.load(path).name == "Ada Lovelace"
    public = Identity.load(path).public
    shown = Identity.load(path).public_string  # a person's first device: its certificate (escert1.…)
    renamed = await named.run("init", "--exist-ok", "--name", "Ada L.")
    assert renamed.code == 0 and renamed.out.strip() == shown and "display name is now" in renamed.err
    assert Identity.load(path).name == "Ada L." and Identity.load(path).public == public
    refused = await named.run("init")
    assert refused.code == EXIT_ERROR and "already exists" in refused.err
    unnamed = User(tmp_path / "unnamed")
    result = await unnamed.run("init")  # no terminal and no --name: no prompt, a hint
    assert result.code == 0 and "no display name set" in result.err
    assert Identity.load(unnamed.home / "identity.key").name is None
    bad = await unnamed.run("init", "--force", "--name", " ")
    assert bad.code == EXIT_USAGE


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
async def test_init_asks_the_name_on_a_terminal(tmp_path: Path) -> None:
    pty = pytest.importorskip("pty")
    home = tmp_path / "asked"

    def drive() -> tuple[int, bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCSPACES_")}
        env["ENCSPACES_HOME"] = str(home)
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execve(COMMAND[0], [*COMMAND, "init"], env)
            finally:
                os._exit(127)
        screen = b""
        deadline = time.monotonic() + 30
        answered = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            screen += data
            if not answered and b"Your name" in screen:
                os.write(fd, b"Grace H\n")
                answered = True
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), screen

    code, screen = await asyncio.to_thread(drive)
    assert code == 0, screen
    assert Identity.load(home / "identity.key").name == "Grace H"


async def test_status_says_how_far_the_space_is_witnessed(relay: RelayProcess, alice: User, tmp_path: Path) -> None:
    await alice.ok("init")
    space_id = (await alice.ok("create", "notes", "--relay", relay.url)).strip()
    out = await alice.ok("status", "notes")
    assert out.splitlines() == [f"space notes ({space_id})", f"relay {relay.url}: online", "verified through seq 1",
                                "not witnessed (no witnesses)"]


async def test_create_with_a_witness(relay: RelayProcess, alice: User, tmp_path: Path) -> None:
    from encspaces_witness.process import WitnessProcess

    await alice.ok("init")
    async with WitnessProcess(tmp_path / "witness", [relay.public_key], name="witness.test") as witness:
        result = await alice.run("create", "notes", "--relay", relay.url, "--witness", witness.vkey, witness.url)
        assert result.code == 0, str(result)
        assert "witnesses: 1 of 1 witnesses (witness.test)" in result.err
        log = await alice.ok("log", "notes")
        assert "genesis" in log
    bad = await alice.run("create", "other", "--relay", relay.url, "--witness", witness.vkey, witness.url,
                          "--quorum", "2")
    assert bad.code == EXIT_USAGE and "quorum of 2 with 1 witnesses" in bad.err


async def test_status_of_a_witnessed_space(alice: User, tmp_path: Path) -> None:
    from encspaces_witness.process import WitnessProcess

    await alice.ok("init")
    async with (RelayProcess(tmp_path / "witnessed-relay", extra_args=["--allow-private-witnesses"]) as relay,
                WitnessProcess(tmp_path / "witness", [relay.public_key], name="witness.test") as witness):
        await alice.ok("create", "notes", "--relay", relay.url, "--witness", witness.vkey, witness.url)
        for _ in range(20):  # the relay checkpoints once a second; status waits up to 5 s each time
            out = await alice.ok("status", "notes")
            if "witnessed through 1 (1 of 1)" in out:
                break
        assert "witnessed through 1 (1 of 1)" in out, out
