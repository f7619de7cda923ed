"""Device certificates through a lying relay (colluding with a member): caught, named, nothing applied."""

from __future__ import annotations

import encspaces
from encspaces import errors
from encspaces.core import crypto
from encspaces.core.encoding import pack
from encspaces.core.entry import Kind
from encspaces.core.membership import add_device_body

from .test_malicious_relay import LyingRelay, assert_stays_failed, crafted_entry, inject, lying, run_attack

__all__ = ["lying"]  # the fixture, shared with test_malicious_relay


async def test_a_device_added_by_someone_elses_device(lying) -> None:  # type: ignore[no-untyped-def]
    _, _, bob, carol_id = lying
    bob_space = bob
    assert bob.identity.person is not None
    # Bob's own person key certified this device, but the relay posts it through carol's device.
    device = encspaces.Identity.generate()
    cert = bob.identity.person.certify(device.public)

    def added_by_carol(r: LyingRelay) -> bytes:
        return crafted_entry(carol_id, bob_space, kind=Kind.ADD_DEVICE,
                             payload=add_device_body(cert, {1: crypto.random_key()}))

    bob, _ = await run_attack(lying, inject(added_by_carol))
    await assert_stays_failed(bob, errors.DeviceNotPermittedError)
    assert "someone else's device" in str(bob.error)
    assert device.member_id not in {d.id for m in bob.members.values() for d in m.devices}


async def test_a_forged_device_certificate(lying) -> None:  # type: ignore[no-untyped-def]
    server, _, bob, carol_id = lying
    bob_space = bob
    device = encspaces.Identity.generate()
    # A certificate naming carol's person, signed by the relay's own key instead of hers.
    raw = pack([1, carol_id.public.sign_key, device.public.sign_key, device.public.box_key, 0, "forged"])
    forged = [raw, bytes(server.signing_key.sign(b"\x00\x00\x00\x1fencspaces/v1/device-certificate" + raw)
                         .signature)]

    def forged_cert(r: LyingRelay) -> bytes:
        body = pack({"v": 1, "cert": forged, "keys": [[1, crypto.seal_to(device.public.box_key, b"k" * 32)]],
                     "history": True})
        return crafted_entry(carol_id, bob_space, kind=Kind.ADD_DEVICE, payload=body)

    bob, _ = await run_attack(lying, inject(forged_cert))
    await assert_stays_failed(bob, errors.DeviceCertificateError)
    assert "does not verify under person" in str(bob.error)
