"""``encspaces device`` and ``encspaces identity``: pairing a second device, as a user would, in subprocesses."""

from __future__ import annotations

from pathlib import Path

from encspaces_relay.process import RelayProcess

from .conftest import User, member_pair


async def test_a_second_device_is_paired_writes_and_is_removed(relay: RelayProcess, alice: User, bob: User,
                                                               tmp_path: Path) -> None:
    await member_pair(relay, alice, bob)
    phone = User(tmp_path / "bob-phone")
    pairing = (await phone.ok("device", "pair", "--device-name", "phone")).strip()
    assert pairing.startswith("esdev1.")
    approval = (await bob.ok("device", "add", pairing)).strip()
    assert approval.startswith("esdevok1.")
    assert "now belongs to" in await phone.ok("device", "pair", "--accept", approval)
    assert (await phone.ok("whoami", "--member-id")) == (await bob.ok("whoami", "--member-id"))
    # The phone writes in the space it was added to; alice sees one member, bob, with two devices.
    await phone.ok("cat", "notes")  # opens it: the registry came with the approval
    members = await alice.ok("members", "notes")
    bob_id = (await bob.ok("whoami", "--member-id")).strip()
    assert members.count(bob_id) == 1 and "phone" in members
    assert members.count("    device ") == 3  # alice's one, bob's two
    listing = await bob.ok("device", "list")
    assert "phone" in listing and "(this device)" in listing
    # The phone is lost: bob removes it; the space gets a new key and bob keeps his role.
    phone_id = next(line.split()[1] for line in listing.splitlines() if "phone" in line)
    assert "removed device" in await bob.ok("device", "remove", phone_id)
    members = await alice.ok("members", "notes")
    assert "phone" not in members and f"{bob_id}  writer" in members


async def test_the_person_key_is_exported_and_imported(alice: User, tmp_path: Path) -> None:
    await alice.ok("init")
    phrase = (await alice.ok("identity", "export-person", "--out", str(tmp_path / "person.key"))).strip()
    assert len(phrase.split("-")) == 14
    other = User(tmp_path / "other")
    await other.ok("device", "pair")
    # Another person's key does not fit this device: refused.
    refused = await other.run("identity", "import-person", "--phrase", phrase)
    assert refused.code != 0 and "not the person" in refused.err
    assert (await alice.ok("identity", "import-person", str(tmp_path / "person.key"))).startswith("this device")
