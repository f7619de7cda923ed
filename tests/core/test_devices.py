"""Several devices of one person: certificates, pairing strings, recovery phrases, and the log's rules.

Every rule is checked twice over the same bytes: by the honest sequencer (``FakeSpace.sequence``,
the relay's ``LogState.check``) and by a client verifying a lying relay's frame (``force``), which
must raise the same error class and leave its state untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from encspaces.core import crypto
from encspaces.core.devices import (
    DeviceCertificate,
    PairingRequest,
    Person,
    parse_recovery_phrase,
    recovery_phrase,
)
from encspaces.core.encoding import pack
from encspaces.core.entry import Entry, Kind
from encspaces.core.identity import Identity
from encspaces.core.log_state import LogState
from encspaces.core.membership import Role, add_device_body, add_member_body
from encspaces.core.rekey import rekey_body
from encspaces.errors import (
    DeviceCertificateError,
    DeviceNotPermittedError,
    DeviceRemovedError,
    IdentityError,
    MalformedIdError,
    MembershipChangeError,
    MembershipError,
    RemovedPersonError,
    RuleError,
)

from .fakes import FakeSpace, snapshot


def _device(person: Person, name: str = "") -> Identity:
    device = Identity.generate()
    return device.with_certificate(person.certify(device.public, name))


class People:
    """alice (admin, v1 self-certified) and bob (writer, v1) from FakeSpace; erin, a person with two devices."""

    def __init__(self) -> None:
        self.fs = FakeSpace()
        self.erin = Person.generate()
        self.laptop = _device(self.erin, "laptop")
        self.phone = _device(self.erin, "phone")
        fs = self.fs
        fs.sequence(fs.make(fs.alice, add_member_body(self.laptop.public, Role.WRITER, {1: fs.epoch_key},
                                                      cert=self.laptop.certificate), kind=Kind.ADD_MEMBER))

    def add_device(self, author: Identity, cert: DeviceCertificate | None) -> Entry:
        fs = self.fs
        assert cert is not None
        return fs.make(author, add_device_body(cert, {fs.state.epoch: fs.epoch_key}), kind=Kind.ADD_DEVICE,
                       epoch=fs.state.epoch)

    def remove_device(self, author: Identity, device: bytes, revocation: bytes | None = None) -> Entry:
        fs = self.fs
        return fs.make(author, rekey_body(fs.state, device=device, revocation=revocation),
                       kind=Kind.REMOVE_DEVICE, epoch=fs.state.epoch)

    def refused_alike(self, entry: Entry, error: type[RuleError], match: str) -> None:
        """The relay refuses ``entry`` and a client fed it by a lying relay fails the same way, untouched."""
        fs = self.fs
        with pytest.raises(error, match=match):
            fs.state.check(entry, fs.seq + 1)
        client = fs.verifier(fs.carol, through=fs.seq)
        before = snapshot(client)
        with pytest.raises(error, match=match):
            client.verify_frame(fs.frame_of(fs.seq + 1, [entry.raw]))
        assert snapshot(client) == before
        fs.next_seqs[entry.header.author] = entry.header.author_seq  # the refused entry's number is free again


# --- certificates, pairing strings, recovery phrases ------------------------------------------------


def test_a_certificate_verifies_under_its_person_and_round_trips() -> None:
    person = Person.generate()
    device = Identity.generate()
    cert = person.certify(device.public, "phone", issued_ms=1234)
    assert (cert.person, cert.device, cert.device_box, cert.name, cert.issued_ms) == (
        person.key, device.public.sign_key, device.public.box_key, "phone", 1234)
    assert DeviceCertificate.from_bytes(cert.to_bytes()) == cert
    assert DeviceCertificate.decode(cert.encode()) == cert


def test_a_forged_certificate_is_refused() -> None:
    person, mallory = Person.generate(), Person.generate()
    device = Identity.generate()
    cert = person.certify(device.public)
    # Signed by someone else but naming the person: the signature does not verify under the person key.
    forged = pack([1, person.key, device.public.sign_key, device.public.box_key, 0, ""])
    with pytest.raises(DeviceCertificateError, match="does not verify under person"):
        DeviceCertificate.verify(forged, crypto.sign(mallory.signing_key, crypto.CTX_DEVICE_CERT, forged))
    # The right signature over other bytes (another device key).
    other = pack([1, person.key, Identity.generate().public.sign_key, device.public.box_key, 0, ""])
    with pytest.raises(DeviceCertificateError, match="does not verify"):
        DeviceCertificate.verify(other, cert.signature)
    # A signature under another context (a revocation's) is not a certificate's.
    with pytest.raises(DeviceCertificateError, match="does not verify"):
        DeviceCertificate.verify(cert.raw, crypto.sign(person.signing_key, crypto.CTX_DEVICE_REVOKE, cert.raw))
    with pytest.raises(DeviceCertificateError, match="malformed"):
        DeviceCertificate.decode([cert.raw])
    with pytest.raises(DeviceCertificateError, match="version"):
        raw = pack([2, person.key, device.public.sign_key, device.public.box_key, 0, ""])
        DeviceCertificate.verify(raw, crypto.sign(person.signing_key, crypto.CTX_DEVICE_CERT, raw))
    with pytest.raises(DeviceCertificateError, match="person key itself"):
        raw = pack([1, person.key, person.key, device.public.box_key, 0, ""])
        DeviceCertificate.verify(raw, crypto.sign(person.signing_key, crypto.CTX_DEVICE_CERT, raw))


def test_a_pairing_string_round_trips_and_refuses_a_typo() -> None:
    device = Identity.generate()
    request = PairingRequest(device.public, "phone ☎")
    text = str(request)
    assert text.startswith("esdev1.")
    assert PairingRequest.parse(text) == request
    assert PairingRequest.parse(str(PairingRequest(device.public))) == PairingRequest(device.public, "")
    mangled = text[:20] + ("A" if text[20] != "A" else "B") + text[21:]
    with pytest.raises(MalformedIdError, match="checksum"):
        PairingRequest.parse(mangled)
    with pytest.raises(MalformedIdError, match="checksum"):
        PairingRequest.parse(text[:-3])
    with pytest.raises(MalformedIdError, match="not a pairing string"):
        PairingRequest.parse("esid1." + text[7:])


def test_a_recovery_phrase_round_trips_and_refuses_a_typo() -> None:
    seed = os.urandom(32)
    phrase = recovery_phrase(seed)
    assert len(phrase.split("-")) == 14 and all(len(group) == 4 for group in phrase.split("-"))
    assert parse_recovery_phrase(phrase) == seed
    assert parse_recovery_phrase(phrase.lower().replace("-", " ")) == seed
    assert Person.from_recovery_phrase(phrase).key == Person(seed).key
    typo = ("B" if phrase[0] != "B" else "C") + phrase[1:]
    with pytest.raises(MalformedIdError, match="checksum"):
        parse_recovery_phrase(typo)
    with pytest.raises(MalformedIdError):
        parse_recovery_phrase(phrase[:-5])


# --- identity files ----------------------------------------------------------------------------------


def test_a_v1_identity_file_loads_unchanged_as_a_self_certified_device(tmp_path: Path) -> None:
    old = Identity.generate()
    old.save(tmp_path / "id")
    before = (tmp_path / "id").read_bytes()
    loaded = Identity.load(tmp_path / "id")
    assert loaded.certificate is None and loaded.person_key == loaded.public.sign_key
    assert loaded.person is not None and loaded.person.key == loaded.public.sign_key  # it may certify devices
    loaded.save(tmp_path / "id", overwrite=True)
    assert (tmp_path / "id").read_bytes() == before  # still a v1 file, byte for byte


def test_a_person_identity_keeps_its_secret_and_certificate(tmp_path: Path) -> None:
    first = Identity.generate_person("Erin", "laptop")
    assert first.certificate is not None and first.person is not None
    assert first.person_key == first.certificate.person != first.public.sign_key
    first.save(tmp_path / "id")
    loaded = Identity.load(tmp_path / "id")
    assert loaded.certificate == first.certificate and loaded.person_key == first.person_key
    assert loaded.person is not None and loaded.person.key == first.person_key
    # A paired device holds a certificate but not the person secret.
    phone = _device(first.person, "phone")
    assert phone.person is None and phone.person_key == first.person_key
    with pytest.raises(IdentityError, match="not the person"):
        phone.with_person(Person.generate().seed)
    with pytest.raises(IdentityError, match="not this device"):
        Identity.generate().with_certificate(phone.certificate)  # type: ignore[arg-type]


# --- the log's rules ---------------------------------------------------------------------------------


def test_a_person_with_a_certified_device_is_one_member_whose_devices_write() -> None:
    p = People()
    fs, erin = p.fs, p.erin.key
    assert erin in fs.state.members and p.laptop.public.sign_key not in fs.state.members
    assert fs.state.role_of(p.laptop.public.sign_key) is Role.WRITER
    fs.write(p.laptop)
    seq = fs.sequence(p.add_device(p.laptop, p.phone.certificate))  # type: ignore[arg-type]
    member = fs.state.members[erin]
    assert [d.key for d in member.devices] == [p.laptop.public.sign_key, p.phone.public.sign_key]
    assert member.devices[1].added_seq == seq and member.devices[1].name == "phone"
    fs.write(p.phone)
    assert fs.state.role_of(p.phone.public.sign_key) is Role.WRITER
    recipients = fs.state.key_recipients()
    assert p.laptop.public.sign_key in recipients and p.phone.public.sign_key in recipients
    assert erin not in recipients  # the person key is no device: it receives nothing
    # A client replaying the log agrees.
    client = fs.verifier(fs.carol, through=fs.seq)
    assert client.state.members == fs.state.members


def test_a_device_added_by_someone_elses_device_is_refused() -> None:
    p = People()
    entry = p.add_device(p.fs.bob, p.phone.certificate)
    p.refused_alike(entry, DeviceNotPermittedError, "someone else's device")


def test_an_admin_cannot_add_a_device_to_someone_else_either() -> None:
    p = People()
    entry = p.add_device(p.fs.alice, p.phone.certificate)
    p.refused_alike(entry, DeviceNotPermittedError, "someone else's device")


def test_a_forged_certificate_in_the_log_is_refused() -> None:
    p = People()
    fs = p.fs
    mallory = Person.generate()
    stranger = Identity.generate()
    # The relay (or anyone) forges erin's certificate for a device it holds: signed by another key.
    raw = pack([1, p.erin.key, stranger.public.sign_key, stranger.public.box_key, 0, "evil"])
    body = pack({"v": 1, "cert": [raw, crypto.sign(mallory.signing_key, crypto.CTX_DEVICE_CERT, raw)],
                 "keys": [[1, crypto.seal_to(stranger.public.box_key, fs.epoch_key)]], "history": True})
    entry = fs.make(p.laptop, body, kind=Kind.ADD_DEVICE)
    p.refused_alike(entry, DeviceCertificateError, "does not verify under person")
    # An add_member naming erin with a certificate for another box key.
    cert = p.erin.certify(stranger.public)
    body = pack({"v": 1, "member": p.erin.key, "box": Identity.generate().public.box_key, "role": "writer",
                 "keys": [[1, b"x" * 80]], "history": True, "cert": cert.encode()})
    fresh = People()
    fresh.refused_alike(fresh.fs.make(fresh.fs.alice, body, kind=Kind.ADD_MEMBER), DeviceCertificateError,
                        "another box key")


def test_a_removed_device_reads_nothing_after_and_writes_nothing_more() -> None:
    p = People()
    fs = p.fs
    fs.sequence(p.add_device(p.laptop, p.phone.certificate))  # type: ignore[arg-type]
    phone = p.phone.public.sign_key
    removal = p.remove_device(fs.alice, phone)  # an admin removes the lost phone
    seq = fs.sequence(removal)
    assert fs.state.epoch == 2 and fs.state.removed_devices == {phone: seq}
    assert fs.state.members[p.erin.key].role is Role.WRITER  # the person keeps the role
    assert [d.key for d in fs.state.members[p.erin.key].devices] == [p.laptop.public.sign_key]
    assert phone not in fs.state.key_recipients()
    # The phone's device is no longer a recipient of the new epoch's key: it cannot read what follows.
    laptop_view = fs.verifier(p.laptop, through=fs.seq)
    phone_view = fs.verifier(p.phone, through=fs.seq)
    assert 2 in laptop_view.epoch_keys and 2 not in phone_view.epoch_keys
    assert phone_view.removed_at == seq
    p.refused_alike(fs.make(p.phone, epoch=2), DeviceRemovedError, "was removed from the space at seq")


def test_a_replayed_certificate_of_a_removed_device_is_refused() -> None:
    p = People()
    fs = p.fs
    cert = p.phone.certificate
    assert cert is not None
    fs.sequence(p.add_device(p.laptop, cert))
    fs.sequence(p.remove_device(fs.alice, p.phone.public.sign_key))
    # The laptop (or a relay replaying the old body through any of erin's devices) adds it again.
    p.refused_alike(p.add_device(p.laptop, cert), DeviceRemovedError, "cannot bring it back")


def test_a_certificate_for_a_removed_person_is_refused() -> None:
    p = People()
    fs = p.fs
    fs.sequence(p.add_device(p.laptop, p.phone.certificate))  # type: ignore[arg-type]
    fs.sequence(fs.make(fs.alice, rekey_body(fs.state, remove=p.erin.key), kind=Kind.REMOVE_MEMBER))
    assert p.erin.key in fs.state.removed_people and not fs.state.device_owner.keys() & {
        p.laptop.public.sign_key, p.phone.public.sign_key}
    tablet = _device(p.erin, "tablet")
    # Erin's (removed) laptop tries to bring a new device in.
    p.refused_alike(p.add_device(p.laptop, tablet.certificate), RemovedPersonError, "who was removed from the space")
    # So does any member's device posting her certificate.
    p.refused_alike(p.add_device(fs.bob, tablet.certificate), RemovedPersonError, "who was removed from the space")
    # An admin adding her again is a new admission: her certificates count again.
    fs.sequence(fs.make(fs.alice, add_member_body(tablet.public, Role.READER, {2: fs.epoch_key},
                                                  cert=tablet.certificate), kind=Kind.ADD_MEMBER, epoch=2))
    assert p.erin.key not in fs.state.removed_people and fs.state.role_of(tablet.public.sign_key) is Role.READER


def test_a_sibling_removes_a_device_only_with_the_persons_revocation() -> None:
    p = People()
    fs = p.fs
    fs.sequence(p.add_device(p.laptop, p.phone.certificate))  # type: ignore[arg-type]
    phone = p.phone.public.sign_key
    p.refused_alike(p.remove_device(p.laptop, phone), DeviceNotPermittedError, "removed by someone else's device")
    wrong = Person.generate().revoke(fs.space, phone)
    p.refused_alike(p.remove_device(p.laptop, phone, wrong), DeviceNotPermittedError, "does not verify")
    other_space = p.erin.revoke(crypto.hash_parts(b"x", b"other space"), phone)
    p.refused_alike(p.remove_device(p.laptop, phone, other_space), DeviceNotPermittedError, "does not verify")
    p.refused_alike(p.remove_device(fs.bob, phone, p.erin.revoke(fs.space, phone)), DeviceNotPermittedError,
                    "removed by someone else's device")
    fs.sequence(p.remove_device(p.laptop, phone, p.erin.revoke(fs.space, phone)))
    assert fs.state.device_owner.get(phone) is None and fs.state.role_of(p.laptop.public.sign_key) is Role.WRITER


def test_the_last_device_cannot_be_removed_and_rekeys_must_reach_every_device() -> None:
    p = People()
    fs = p.fs
    laptop = p.laptop.public.sign_key
    p.refused_alike(p.remove_device(fs.alice, laptop), MembershipChangeError, "remove the member instead")
    fs.sequence(p.add_device(p.laptop, p.phone.certificate))  # type: ignore[arg-type]
    # A rotation that leaves out erin's phone is refused: every device of every member gets the key.
    key = crypto.random_key()
    recipients = fs.state.key_recipients(without_device=p.phone.public.sign_key)
    from encspaces.core.membership import RekeyBody, seal_grants

    body = RekeyBody(2, seal_grants(recipients, key), crypto.key_commitment(fs.space, 2, key)).encode()
    p.refused_alike(fs.make(fs.alice, body, kind=Kind.ROTATE), MembershipChangeError, "missing")
    # A removal that still gives the removed device the key is refused too.
    body = RekeyBody(2, seal_grants(fs.state.key_recipients(), key), crypto.key_commitment(fs.space, 2, key),
                     device=p.phone.public.sign_key).encode()
    p.refused_alike(fs.make(fs.alice, body, kind=Kind.REMOVE_DEVICE), MembershipChangeError, "not entitled")


def test_a_device_already_in_the_space_is_not_added_twice() -> None:
    p = People()
    fs = p.fs
    fs.sequence(p.add_device(p.laptop, p.phone.certificate))  # type: ignore[arg-type]
    p.refused_alike(p.add_device(p.laptop, p.phone.certificate), MembershipChangeError,  # type: ignore[arg-type]
                    "already in the space")


def test_a_non_member_device_cannot_write_even_with_a_certificate() -> None:
    p = People()
    fs = p.fs
    stray = _device(p.erin, "not added")
    p.refused_alike(fs.make(stray), MembershipError, "is not a member")


def test_a_reader_adds_its_own_device() -> None:
    fs = FakeSpace()
    frank = Person.generate()
    first, second = _device(frank), _device(frank)
    fs.sequence(fs.make(fs.alice, add_member_body(first.public, Role.READER, {1: fs.epoch_key},
                                                  cert=first.certificate), kind=Kind.ADD_MEMBER))
    fs.sequence(fs.make(first, add_device_body(second.certificate, {1: fs.epoch_key}),  # type: ignore[arg-type]
                        kind=Kind.ADD_DEVICE))
    assert fs.state.role_of(second.public.sign_key) is Role.READER


def test_a_v1_member_certifies_devices_with_its_own_key() -> None:
    fs = FakeSpace()
    assert fs.bob.person is not None
    tablet = _device(fs.bob.person, "tablet")
    fs.sequence(fs.make(fs.bob, add_device_body(tablet.certificate, {1: fs.epoch_key}),  # type: ignore[arg-type]
                        kind=Kind.ADD_DEVICE))
    bob = fs.state.members[fs.bob.public.sign_key]
    assert [d.key for d in bob.devices] == [fs.bob.public.sign_key, tablet.public.sign_key]
    assert bob.devices[0].cert is None  # self-certified
    fs.write(tablet)
    # The self-certified device can be removed (it was lost); the person stays with the tablet.
    fs.sequence(fs.make(tablet, rekey_body(fs.state, device=fs.bob.public.sign_key,
                                           revocation=fs.bob.person.revoke(fs.space, fs.bob.public.sign_key)),
                        kind=Kind.REMOVE_DEVICE))
    assert fs.state.role_of(tablet.public.sign_key) is Role.WRITER
    assert fs.state.role_of(fs.bob.public.sign_key) is Role.WRITER  # the person key names the member still
    with pytest.raises(DeviceRemovedError):
        fs.state.check(fs.make(fs.bob, epoch=2), fs.seq + 1)


def test_a_space_created_by_a_certified_device() -> None:
    creator = Identity.generate_person("Gil", "desk")
    from encspaces.core.entry import build_entry
    from encspaces.core.log_state import space_id_of
    from encspaces.core.membership import genesis_body

    relay = Identity.generate()
    genesis = build_entry(creator, space=b"", author_seq=1, epoch=1, kind=Kind.GENESIS, parent_seq=0,
                          parent_hash=crypto.ZERO_HASH, epoch_key=None, time_ms=1,
                          payload=genesis_body(creator.public, relay.public.sign_key, crypto.random_key(),
                                               cert=creator.certificate))
    state = LogState(space_id_of(genesis.raw))
    state.check(genesis, 1)
    state.apply(genesis, 1, crypto.ZERO_HASH)
    assert list(state.members) == [creator.person_key]
    assert state.role_of(creator.public.sign_key) is Role.ADMIN
    # A genesis carrying someone else's device certificate is refused.
    other = Identity.generate_person()
    bad = build_entry(creator, space=b"", author_seq=1, epoch=1, kind=Kind.GENESIS, parent_seq=0,
                      parent_hash=crypto.ZERO_HASH, epoch_key=None, time_ms=1,
                      payload=genesis_body(creator.public, relay.public.sign_key, crypto.random_key(),
                                           cert=other.certificate))
    with pytest.raises(DeviceCertificateError):
        LogState(space_id_of(bad.raw)).check(bad, 1)


def test_devices_survive_a_checkpoint_and_a_rollback() -> None:
    p = People()
    fs = p.fs
    fs.sequence(p.add_device(p.laptop, p.phone.certificate))  # type: ignore[arg-type]
    fs.sequence(p.remove_device(fs.alice, p.phone.public.sign_key))
    restored = LogState.restore(fs.space, fs.state.export(), list(fs.state.heads))
    assert restored.members == fs.state.members
    assert restored.device_owner == fs.state.device_owner
    assert restored.removed_devices == fs.state.removed_devices
    tablet = _device(p.erin)
    before = (dict(restored.members), dict(restored.device_owner))
    restored.begin()
    entry = p.add_device(p.laptop, tablet.certificate)
    restored.check(entry, fs.seq + 1)
    restored.apply(entry, fs.seq + 1, crypto.ZERO_HASH)
    assert tablet.public.sign_key in restored.device_owner
    restored.rollback()
    assert (restored.members, restored.device_owner) == before


def test_attestations_count_once_per_person() -> None:
    from encspaces.core.attestation import AttestBody
    from encspaces.errors import AttestationError

    p = People()
    fs = p.fs
    fs.sequence(p.add_device(p.laptop, p.phone.certificate))
    from encspaces.core.entry import build_entry

    fs.sequence(build_entry(p.laptop, space=fs.space, author_seq=fs._take(p.laptop), epoch=1, kind=Kind.SNAPSHOT,
                            parent_seq=fs.seq, parent_hash=fs.heads[fs.seq], payload=b"state",
                            epoch_key=fs.epoch_key))
    seq = fs.seq
    assert seq in fs.state.snapshots
    tag = bytes(32)
    # Erin's phone may not attest her laptop's snapshot: it is her own.
    p.refused_alike(fs.make(p.phone, AttestBody(seq, tag, True).encode(), kind=Kind.ATTEST), AttestationError,
                    "its author's own snapshot")
    fs.sequence(fs.make(fs.bob, AttestBody(seq, tag, True).encode(), kind=Kind.ATTEST))
    # Bob attests once, from whichever device: a second device of his is refused too.
    assert fs.bob.person is not None
    tablet = _device(fs.bob.person)
    fs.sequence(fs.make(fs.bob, add_device_body(tablet.certificate, {1: fs.epoch_key}),  # type: ignore[arg-type]
                        kind=Kind.ADD_DEVICE))
    p.refused_alike(fs.make(tablet, AttestBody(seq, tag, False).encode(), kind=Kind.ATTEST), AttestationError,
                    "already attested")


def test_a_checkpoint_from_before_devices_restores_as_self_certified_members() -> None:
    from encspaces.core.encoding import unpack

    fs = FakeSpace()
    exported = unpack(fs.state.export())
    exported["members"] = [item[:5] for item in exported["members"]]  # the old form: no devices
    del exported["removed_devices"], exported["removed_people"]
    restored = LogState.restore(fs.space, pack(exported), list(fs.state.heads))
    assert restored.members == fs.state.members
    assert restored.role_of(fs.bob.public.sign_key) is Role.WRITER
    assert restored.device_owner == {k: k for k in fs.state.members}
