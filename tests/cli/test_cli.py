"""``encspaces`` end to end, in subprocesses against a relay daemon on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sqlite3
from pathlib import Path

from encspaces import faults
from encspaces.core.identity import decode_space_id
from encspaces.store import LocalStore
from encspaces_clients.cli.errors import EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, EXIT_VERIFICATION
from encspaces_relay.process import RelayProcess

from .conftest import User, member_pair

CODE = re.compile(r"seq (\d+): ((?:\d{4} ){5}\d{4})")

SUBCOMMANDS = ("init", "whoami", "create", "spaces", "invite", "join", "members", "add", "remove", "edit", "cat",
               "log", "verify", "safety-code", "files")


async def safety(user: User, *args: str) -> tuple[int, str]:
    match = CODE.search(await user.ok("safety-code", "notes", *args))
    assert match is not None
    return int(match.group(1)), match.group(2)


async def test_help_exit_codes_and_one_line_errors(alice: User) -> None:
    top = await alice.run("--help")
    assert top.code == 0 and all(name in top.out for name in SUBCOMMANDS) and "exit codes" in top.out
    helps = await asyncio.gather(*(alice.run(name, "--help") for name in SUBCOMMANDS))
    assert [result.code for result in helps] == [0] * len(SUBCOMMANDS)
    assert (await alice.run("frobnicate")).code == EXIT_USAGE
    for args, code, words in [
        (("whoami",), EXIT_ERROR, "encspaces init"),
        (("cat", "nowhere"), EXIT_ERROR, "no space named"),
        (("invite", "notes", "--expires", "soon"), EXIT_ERROR, "no space named"),
    ]:
        result = await alice.run(*args)
        assert result.code == code, result
        assert result.err.count("\n") == 1 and words in result.err and "Traceback" not in result.err, result
    await alice.ok("init")
    assert (await alice.run("init")).code == EXIT_ERROR  # never replaces an identity silently
    await alice.ok("init", "--exist-ok")
    unreachable = await alice.run("create", "notes", "--relay", "ws://127.0.0.1:9", timeout=2)
    assert unreachable.code == EXIT_UNREACHABLE and unreachable.err.count("\n") == 1, unreachable
    assert "relay running" in unreachable.err
    debug = await alice.run("--debug", "create", "notes", "--relay", "ws://127.0.0.1:9", timeout=2)
    assert "Traceback" in debug.err


async def test_create_add_edit_cat_log_verify_and_safety_codes_across_a_fork(
    relay: RelayProcess, alice: User, bob: User, tmp_path: Path
) -> None:
    space_id = await member_pair(relay, alice, bob)
    assert space_id in await alice.ok("spaces") and "notes" in await bob.ok("spaces", "--names")

    await alice.ok("edit", "notes", "--append", "hello from alice\n")
    await bob.ok("edit", "notes", "--append", "-", stdin="and bob\n")
    assert await alice.ok("cat", "notes") == "hello from alice\nand bob\n"
    assert await bob.ok("cat", "notes") == "hello from alice\nand bob\n"

    members = await bob.ok("members", "notes")
    assert "admin" in members and "writer" in members and "(you)" in members

    log = (await alice.ok("log", "notes")).splitlines()
    assert [line.split()[4] for line in log] == ["genesis", "add_member", "data", "data"]
    assert "added" in log[1] and "*" in log[0]
    report = await bob.ok("verify", "notes")
    assert "re-verified seqs 1..4 from genesis" in report and report.rstrip().endswith("OK")
    assert "no fork, no rollback" in report

    seq_a, code_a = await safety(alice)
    seq_b, code_b = await safety(bob)
    assert seq_a == seq_b == 4 and code_a == code_b

    # The relay forks: Alice keeps writing on the real log, Bob on a copy made now.
    await relay.stop()
    shutil.copytree(relay.data_dir, tmp_path / "fork")
    await relay.start()
    await alice.ok("edit", "notes", "--append", "alice, after the fork\n")
    fork_a = await safety(alice)
    await relay.stop()
    fork = RelayProcess(tmp_path / "fork", port=relay.port)
    await fork.start()
    try:
        await bob.ok("edit", "notes", "--append", "bob, after the fork\n")
        fork_b = await safety(bob)
        assert fork_a[0] == fork_b[0] == 5 and fork_a[1] != fork_b[1]  # same seq, different codes
        assert await safety(alice, "--offline", "--seq", "4") == await safety(bob, "--seq", "4") == (4, code_a)
        # Alice meets the other branch: caught at once, and reported as such.
        caught = await alice.run("verify", "notes")
        assert caught.code == EXIT_VERIFICATION and "ForkError" in caught.err, caught
        assert (await alice.run("cat", "notes")).code == EXIT_VERIFICATION
    finally:
        await fork.stop()
    await relay.start()


async def test_verify_catches_a_tampered_local_store(relay: RelayProcess, alice: User, bob: User) -> None:
    space_id = await member_pair(relay, alice, bob)
    await alice.ok("edit", "notes", "--append", "some text")
    assert (await alice.ok("verify", "notes", "--offline")).rstrip().endswith("OK")
    store = next((alice.home / "data").glob("*/space.sqlite3"))
    assert store.parent.name == decode_space_id(space_id).hex()
    with sqlite3.connect(store) as db:
        seq, raw = db.execute("SELECT seq, raw FROM log WHERE seq = 3").fetchone()
        db.execute("UPDATE log SET raw = ? WHERE seq = ?", (raw[:-1] + bytes([raw[-1] ^ 1]), seq))
    result = await alice.run("verify", "notes", "--offline")
    assert result.code == EXIT_VERIFICATION, result
    assert "FAILED at seq 3" in result.out and "BodyDigestError" in result.err
    assert (await alice.run("log", "notes", "--offline")).code == EXIT_VERIFICATION


async def test_a_space_open_elsewhere_is_reported_as_busy_not_damaged(relay: RelayProcess, alice: User) -> None:
    await alice.ok("init")
    await alice.ok("create", "notes", "--relay", relay.url)
    await alice.ok("edit", "notes", "--append", "kept\n")
    folder = next((alice.home / "data").glob("*/space.sqlite3")).parent
    async with await LocalStore.open(alice.home / "data", folder.name):  # as the editor would hold it
        result = await alice.run("cat", "notes")
    assert result.code == EXIT_ERROR, result
    assert "open already" in result.err and "has this space open" in result.err, result.err
    assert "damaged" not in result.err and "move the space" not in result.err, result.err
    assert await alice.ok("cat", "notes") == "kept\n"


async def test_invite_join_edit_and_remove(relay: RelayProcess, alice: User, bob: User, tmp_path: Path) -> None:
    await alice.ok("init")
    await bob.ok("init")
    await alice.ok("create", "notes", "--relay", relay.url)
    await alice.ok("edit", "notes", "--append", "before bob\n")
    link = (await alice.ok("invite", "notes", "--role", "writer", "--uses", "1", "--expires", "1h")).strip()
    assert link.startswith("esinv")
    assert (await bob.ok("join", link, "--name", "team")).strip() == "team"
    assert await bob.ok("cat", "team") == "before bob\n"  # history came with the invite
    await bob.ok("edit", "team", "--append", "bob was here\n")
    report = await bob.ok("verify", "team")  # re-verified from genesis, readable with the invite's keys
    assert report.rstrip().endswith("OK") and "cannot read" not in report
    assert await alice.ok("cat", "notes") == "before bob\nbob was here\n"
    carol = User(tmp_path / "carol")
    await carol.ok("init")
    used_up = await carol.run("join", link)
    assert used_up.code != 0 and "Traceback" not in used_up.err and used_up.err.count("\n") == 1

    bob_id = (await bob.ok("whoami", "--member-id")).strip()
    assert "removed" in await alice.ok("remove", "notes", bob_id[:12])
    assert "removed" in (await alice.ok("log", "notes")).splitlines()[-1]
    refused = await bob.run("edit", "team", "--append", "still here?")
    assert refused.code != 0 and "Traceback" not in refused.err
    assert "still here" not in await alice.ok("cat", "notes")
    assert (await alice.ok("verify", "notes")).rstrip().endswith("OK")


async def test_files_put_ls_get_rm(relay: RelayProcess, alice: User, bob: User, tmp_path: Path) -> None:
    await member_pair(relay, alice, bob)
    source = tmp_path / "report.bin"
    source.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: several chunks
    assert "uploaded report.bin" in await alice.ok("files", "notes", "put", str(source))
    assert "report.bin" in await bob.ok("files", "notes", "ls")
    target = tmp_path / "copy.bin"
    await bob.ok("files", "notes", "get", "report.bin", "-o", str(target))
    assert target.read_bytes() == source.read_bytes()
    again = await bob.run("files", "notes", "get", "report.bin", "-o", str(target))
    assert again.code == EXIT_ERROR and "--force" in again.err
    assert "report.bin" in await alice.ok("files", "notes", "list")  # space.files.list()'s name; ls is an alias
    await alice.ok("files", "notes", "delete", "report.bin")  # and space.files.delete(); rm is an alias
    assert "report.bin" not in await bob.ok("files", "notes", "ls")
    missing = await bob.run("files", "notes", "get", "report.bin")
    assert missing.code == EXIT_ERROR and "no file" in missing.err


async def test_a_download_to_a_path_that_is_not_utf8_reports_success(
    relay: RelayProcess, alice: User, bob: User, tmp_path: Path,
) -> None:
    """A file system path may hold any bytes (Python carries them as surrogates). Before: the file was
    saved, then printing "saved <path>" raised UnicodeEncodeError and the command failed."""
    await member_pair(relay, alice, bob)
    source = tmp_path / "report.bin"
    source.write_bytes(b"x" * 1000)
    await alice.ok("files", "notes", "put", str(source))
    target = tmp_path / os.fsdecode(b"caf\xe9.bin")  # Latin-1, not UTF-8
    out = await bob.ok("files", "notes", "get", "report.bin", "-o", str(target))
    assert out.startswith("saved ") and "\ufffd.bin (1000 bytes)" in out
    assert target.read_bytes() == source.read_bytes()


async def test_a_download_killed_midway_leaves_one_part_file_which_the_next_download_replaces(
    relay: RelayProcess, alice: User, bob: User, tmp_path: Path,
) -> None:
    """``files get`` killed (SIGKILL: no cleanup runs) after its first chunk was written leaves
    its ``.part`` in the user's folder. Before, it had a random name and stayed there for good,
    one more per crash; now the next download of the same file takes it over."""
    await member_pair(relay, alice, bob)
    source = tmp_path / "report.bin"
    source.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: four chunks
    await alice.ok("files", "notes", "put", str(source))
    folder = tmp_path / "downloads"
    folder.mkdir()
    for _ in range(2):
        killed = await bob.run("files", "notes", "get", "report.bin", "-o", str(folder),
                               env={faults.ENV: "downloaded:1"})
        assert killed.code == -signal.SIGKILL, killed
        assert sorted(p.name for p in folder.iterdir()) == [".report.bin.part"]  # the crash's, and only one
    await bob.ok("files", "notes", "get", "report.bin", "-o", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["report.bin"]
    assert (folder / "report.bin").read_bytes() == source.read_bytes()
