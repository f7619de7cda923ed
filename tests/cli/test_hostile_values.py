"""What another member wrote, shown by our ``encspaces`` commands: a writer's terminal escape
sequences (in a text, a text's name, a file's name, a device's name) must never reach the
reader's terminal raw; each shows as a visible stand-in, and the honest text around it stays.

Bob, a writer, posts the values through his own client over the real relay; Alice reads them
with the real commands, in subprocesses, as a user would.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from pathlib import Path

import pycrdt

from encspaces import Identity
from encspaces.core import crypto
from encspaces.core.entry import Kind
from encspaces.core.evidence import Role
from encspaces.core.withholding import WithholdingWatch
from encspaces_relay.process import RelayProcess
from tests.core.fakes import FakeSpace
from tests.support import AuthoredDoc, RawMember

from .conftest import User, member_pair

# Retitle the window, clear the screen, colour, set the clipboard (OSC 52), a lone carriage
# return that would overwrite the line, BEL, and an 8-bit CSI (U+009B).
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31m\x1b]52;c;ZXZpbA==\x07\rover\x9b6n\x08"
# Any control character but the line breaks and tabs a text's layout needs.
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")


def assert_inert(*outputs: str) -> None:
    for output in outputs:
        assert not RAW_CONTROL.search(output), f"a control character reached the terminal: {output!r}"
        hidden = [char for char in output if unicodedata.category(char) == "Cf" and char not in "\u200c\u200d"]
        assert not hidden, f"a format character reached the terminal: {hidden!r} in {output!r}"


# Trojan Source: a right-to-left override and isolates make a terminal show the line in another
# order than it is ("admin only" looks commented out); a zero-width space and a BOM hide in it.
TROJAN = "access = \"user\u202e \u2066// admin only\u2069 \u2066\" \u200b\ufeff"
TROJAN_SHOWN = "access = \"user\ufffd \ufffd// admin only\ufffd \ufffd\" \ufffd\ufffd"
JOINED = "\U0001f469\u200d\U0001f4bb \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # ZWJ emoji, ZWNJ Persian


async def test_a_writers_bidi_and_invisible_characters_are_shown_as_stand_ins(
    relay: RelayProcess, alice: User, bob: User, tmp_path: Path,
) -> None:
    await member_pair(relay, alice, bob)
    await bob.ok("edit", "notes", "--append", f"{TROJAN}\n{JOINED}\n")
    await bob.ok("edit", "notes", "ad\u202emin", "--append", "x")  # a text whose name is reordered
    upload = tmp_path / "report.txt"
    upload.write_text("contents")
    await bob.ok("files", "notes", "put", str(upload), "--name", "report\u202etxt.exe")
    phone = User(tmp_path / "bob-phone")
    pairing = (await phone.ok("device", "pair", "--device-name", "ph\u202eone\u2066")).strip()
    await bob.ok("device", "add", pairing)

    shown = await alice.run("cat", "notes")
    assert shown.code == 0 and shown.out == f"{TROJAN_SHOWN}\n{JOINED}\n", shown  # joiners stay
    assert_inert(shown.out, shown.err)
    raw = await alice.run("cat", "notes", "--raw")
    assert raw.code == 0 and raw.out == f"{TROJAN}\n{JOINED}\n", raw
    missing = await alice.run("cat", "notes", "no-such-text")
    assert missing.code == 0 and "no text named 'no-such-text'" in missing.err, missing
    assert_inert(missing.out, missing.err)
    for args in (("log", "notes"), ("members", "notes"), ("files", "notes", "ls")):
        result = await alice.run(*args)
        assert result.code == 0, result
        assert_inert(result.out, result.err)
    assert "report\ufffdtxt.exe" in (await alice.ok("files", "notes", "ls"))
    assert "ph\ufffdone\ufffd" in (await alice.ok("members", "notes"))
    assert "ph\ufffdone\ufffd" in (await alice.ok("log", "notes"))


async def test_a_writers_escape_sequences_never_reach_the_terminal(relay: RelayProcess, alice: User, bob: User,
                                                                  tmp_path: Path) -> None:
    await member_pair(relay, alice, bob)
    await bob.ok("edit", "notes", "--append", f"honest line\r\nbefore {HOSTILE} after\n\tindented\n")
    await bob.ok("edit", "notes", f"evil{HOSTILE}", "--append", "x")  # a text whose name is the attack
    upload = tmp_path / "report.txt"
    upload.write_text("contents")
    await bob.ok("files", "notes", "put", str(upload), "--name", f"report{HOSTILE}.txt")
    phone = User(tmp_path / "bob-phone")  # a device of bob's, named by him
    pairing = (await phone.ok("device", "pair", "--device-name", f"ph{HOSTILE}"[:64])).strip()
    await bob.ok("device", "add", pairing)

    shown = await alice.run("cat", "notes")
    assert shown.code == 0, shown
    assert_inert(shown.out, shown.err)
    assert shown.out.startswith("honest line\r\nbefore \u241b]0;pwned\u2407\u241b[2J") and "\tindented\n" in shown.out
    assert " after\n" in shown.out and "\u240dover\ufffd6n\u2408" in shown.out
    raw = await alice.run("cat", "notes", "--raw")  # for files and scripts: the text exactly
    assert raw.code == 0 and raw.out == f"honest line\r\nbefore {HOSTILE} after\n\tindented\n", raw

    missing = await alice.run("cat", "notes", "no-such-text")  # lists the texts, by name
    assert missing.code == 0 and "no text named 'no-such-text'" in missing.err, missing
    assert_inert(missing.out, missing.err)
    assert "evil" in missing.err and "'notes'" in missing.err

    for args in (("log", "notes"), ("members", "notes"), ("files", "notes", "ls")):
        result = await alice.run(*args)
        assert result.code == 0, result
        assert_inert(result.out, result.err)
    assert "report\u241b]0;pwned" in (await alice.ok("files", "notes", "ls"))
    assert "ph\u241b]0;pwned" in (await alice.ok("members", "notes"))
    assert "ph\u241b]0;pwned" in (await alice.ok("log", "notes"))


async def test_an_evidence_files_note_is_shown_inert(alice: User, tmp_path: Path) -> None:
    """``evidence --check`` reads a file anyone may send: its reporter's note is their text."""
    fs = FakeSpace()
    fs.write(fs.alice)
    v = fs.verifier(through=fs.seq)
    watch = WithholdingWatch()
    watch.connected(0.0)
    ahead = fs.signed(fs.seq, crypto.hash_parts(b"never served"))
    watch.saw(ahead.create(fs.relay_key, fs.space, fs.seq + 2, ahead.head), Role.ACK, fs.seq, 5.0)
    error = watch.overdue(fs.seq, v.verified_head, 36.0, 30.0)
    assert error is not None and error.proof is not None
    proof = error.proof.replace(relay_key=fs.relay_pk, genesis=fs.genesis.raw, note=f"see {HOSTILE} here")
    (tmp_path / "evidence.bin").write_bytes(proof.encode(fs.bob))
    checked = await alice.run("evidence", "--check", str(tmp_path / "evidence.bin"))
    assert checked.code == 0 and "(see \u241b]0;pwned" in checked.out, checked
    assert_inert(checked.out, checked.err)


async def test_an_entry_dated_past_any_calendar_is_listed(relay: RelayProcess, alice: User, bob: User) -> None:
    """An entry's time is its author's clock, and a writer's own client may put any time in it:
    ``log`` lists it, its time shown as out of range. Before: datetime raised, and ``log`` failed
    on "unexpected ValueError" for every member, for good."""
    space_id = await member_pair(relay, alice, bob)
    await bob.ok("edit", "notes", "--append", "honest\n")
    identity = Identity.load(bob.home / "identity.key")
    authored = AuthoredDoc(identity)
    crafted = authored.doc
    crafted.get("text:crafted", type=pycrdt.Text).insert(0, "from the far future")
    space = base64.urlsafe_b64decode(space_id + "=" * (-len(space_id) % 4))
    async with RawMember(relay.url, identity, space) as raw:
        for time_ms in (253_402_300_800_000, 2**62):  # the year 10000; past datetime's range
            await raw.commit(raw.entry(Kind.DATA, authored.payload(crafted.get_update()), time_ms=time_ms))
    log = await alice.run("log", "notes")
    assert log.code == 0, log
    lines = log.out.splitlines()
    assert [line.split()[2:5] for line in lines[-2:]] == [["out", "of", "range)"]] * 2
    column = re.compile(r" *\d+  (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\(time out of range\))  \S{10}[* ]  \S")
    assert all(column.match(line) for line in lines), lines  # the columns stay
    assert (await alice.ok("cat", "notes", "crafted")) == "from the far future\n"
