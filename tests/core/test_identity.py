"""Identities: key files, public identity strings and member ids."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from encspaces.core import crypto
from encspaces.core.encoding import pack
from encspaces.core.identity import PUBLIC_PREFIX, Identity, PublicIdentity, member_id, parse_member_id
from encspaces.errors import IdentityError

_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_save_load_round_trip(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = tmp_path / "nested" / "id.key"
    ident.save(path)
    loaded = Identity.load(path)
    assert loaded.public == ident.public
    assert bytes(loaded.signing_key) == bytes(ident.signing_key)
    assert bytes(loaded.box_private) == bytes(ident.box_private)
    # the loaded keys work: a signature verifies, a sealed secret opens
    sig = loaded.sign(crypto.CTX_AUTH, b"msg")
    assert crypto.verify(ident.public.sign_key, crypto.CTX_AUTH, b"msg", sig)
    assert loaded.open_sealed(crypto.seal_to(ident.public.box_key, b"k" * 32)) == b"k" * 32
    assert not (tmp_path / "nested" / "id.key.tmp").exists()


def test_saved_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    old = os.umask(0)
    try:
        Identity.generate().save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_replaces_and_tightens_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    (tmp_path / "id.key.tmp").write_bytes(b"stale temp")
    (tmp_path / "id.key.tmp").chmod(0o666)
    ident = Identity.generate()
    ident.save(path, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Identity.load(path).public == ident.public


def test_save_never_replaces_an_identity_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    first = Identity.generate()
    first.save(path)
    with pytest.raises(IdentityError, match="already holds an identity"):
        Identity.generate().save(path)
    assert Identity.load(path).public == first.public
    assert [p.name for p in tmp_path.iterdir()] == ["id.key"]  # no temporary file left behind


def test_the_display_name_is_kept_with_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    Identity(bytes(32), bytes(range(32)), name="Ada").save(path)
    assert Identity.load(path).name == "Ada"
    Identity(bytes(32), bytes(range(32))).save(path, overwrite=True)
    assert Identity.load(path).name is None


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_an_identity_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "id.key"
    Identity.generate().save(path)
    path.chmod(mode)
    with pytest.raises(IdentityError, match=f"open to other users \\(mode 0{mode:o}\\).*chmod 600"):
        Identity.load(path)
    path.chmod(0o600)
    Identity.load(path)


def test_signatures_are_bound_to_their_context() -> None:
    ident = Identity.generate()
    sig = ident.sign(crypto.CTX_AUTH, b"msg")
    assert not crypto.verify(ident.public.sign_key, crypto.CTX_HEAD_SIG, b"msg", sig)
    assert not crypto.verify(ident.public.sign_key, crypto.CTX_AUTH, b"msh", sig)
    assert not crypto.verify(Identity.generate().public.sign_key, crypto.CTX_AUTH, b"msg", sig)
    assert not crypto.verify(ident.public.sign_key[:31], crypto.CTX_AUTH, b"msg", sig)
    assert not crypto.verify(ident.public.sign_key, crypto.CTX_AUTH, b"msg", sig[:63])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "corrupt"),
        (b"\xc1garbage", "corrupt"),
        (pack([1, 2, 3]), "corrupt"),
        (pack({"v": 1, "sign": bytes(32)}), "box"),
        (pack({"v": 1, "sign": bytes(31), "box": bytes(32)}), "signing seed"),
        (pack({"v": 1, "sign": "x" * 32, "box": bytes(32)}), "signing seed"),
        (pack({"v": 3, "sign": bytes(32), "box": bytes(32)}), "version 3"),
        (pack({"v": True, "sign": bytes(32), "box": bytes(32)}), "version"),
    ],
)
def test_corrupt_file_is_identity_error(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "id.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match=fragment):
        Identity.load(path)


def test_truncated_file_is_identity_error(tmp_path: Path) -> None:
    path = tmp_path / "id.key"
    Identity.generate().save(path)
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(IdentityError):
            Identity.load(path)


def test_missing_file_is_identity_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot read"):
        Identity.load(tmp_path / "absent.key")


def test_public_identity_string_round_trip() -> None:
    pub = Identity.generate().public
    text = str(pub)
    assert text.startswith(PUBLIC_PREFIX + ".")
    assert PublicIdentity.parse(text) == pub
    assert PublicIdentity.parse(f"  {text}\n") == pub  # pasted with whitespace around it


def test_checksum_catches_every_changed_character() -> None:
    pub = Identity.generate().public
    text = str(pub)
    start = len(PUBLIC_PREFIX) + 1
    for i in range(start, len(text)):
        for c in _B64URL:
            if c == text[i]:
                continue
            changed = text[:i] + c + text[i + 1 :]
            with pytest.raises(IdentityError):
                PublicIdentity.parse(changed)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t + "A",  # extended
        lambda t: t.replace(PUBLIC_PREFIX, "esid2", 1),
        lambda t: t.replace(".", ":", 1),
        lambda t: PUBLIC_PREFIX + ".",
        lambda t: t[:10] + "!" + t[11:],  # not base64url
        lambda t: t[:10] + "\u00e9" + t[11:],  # not ascii
        lambda t: t[:10] + " " + t[10:],  # stray whitespace inside
        lambda t: t.replace("-", "+").replace("_", "/") if ("-" in t or "_" in t) else t + "+",
    ],
)
def test_malformed_public_identity(mangle: Callable[[str], str]) -> None:
    text = str(Identity.generate().public)
    with pytest.raises(IdentityError):
        PublicIdentity.parse(mangle(text))


def test_public_identity_needs_32_byte_keys() -> None:
    with pytest.raises(IdentityError):
        PublicIdentity(bytes(31), bytes(32))
    with pytest.raises(IdentityError):
        Identity(bytes(32), bytes(33))


def test_member_id_round_trip() -> None:
    pub = Identity.generate().public
    assert parse_member_id(pub.member_id) == pub.sign_key
    assert member_id(pub.sign_key) == pub.member_id
    with pytest.raises(IdentityError, match="expected 32 bytes"):
        parse_member_id(pub.member_id[:-4])
    with pytest.raises(IdentityError):
        parse_member_id("\u00e9\u00e9\u00e9\u00e9")
