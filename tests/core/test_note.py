"""C2SP signed-note, tlog-checkpoint and tlog-cosignature (encspaces/core/note.py), checked both ways
against tlog-scales, an independent implementation installed from PyPI (dev extra)."""

from __future__ import annotations

import hashlib

import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tlog_scales.signing import PlainEd25519Signer, Vkey, VkeySet
from tlog_scales.tlog import Checkpoint as TsCheckpoint

from encspaces.core import note
from encspaces.errors import MalformedNoteError, NoteSignatureError

SEED = bytes(range(32))
WSEED = bytes(range(32, 64))
SPACE = hashlib.sha256(b"space").digest()
ORIGIN = note.space_origin(SPACE)
ROOT = hashlib.sha256(b"root").digest()


def log_signer() -> note.Ed25519Signer:
    return note.Ed25519Signer(ORIGIN, nacl.signing.SigningKey(SEED))


def witness_signer() -> note.CosignatureSigner:
    return note.CosignatureSigner("witness.example/w1", nacl.signing.SigningKey(WSEED))


def signed() -> note.SignedCheckpoint:
    return note.SignedCheckpoint.sign(note.Checkpoint(ORIGIN, 20852163, ROOT), log_signer())


def test_origin_form_round_trips() -> None:
    assert "encspaces/space/" + SPACE.hex() == ORIGIN
    assert note.space_of_origin(ORIGIN) == SPACE
    assert note.space_of_origin("example.com/log") is None
    assert note.space_of_origin(ORIGIN.upper()) is None


def test_key_ids_and_vkeys_match_tlog_scales() -> None:
    pub = bytes(nacl.signing.SigningKey(SEED).verify_key)
    for sig_type, make in [(1, note.Ed25519Verifier), (4, note.CosignatureVerifier)]:
        ours = make("example.com/foo", pub)
        theirs = Vkey("example.com/foo", None, sig_type, pub)
        assert int.from_bytes(ours.key_id, "big") == theirs.key_id
        assert ours.vkey() == theirs.serialize()
        assert note.parse_vkey(theirs.serialize()) == ours


def test_our_checkpoint_verifies_with_tlog_scales() -> None:
    sc = signed()
    text = sc.encode().decode()
    parsed = TsCheckpoint.from_text(text)
    assert (parsed.origin, parsed.size, parsed.root_hash) == (ORIGIN, 20852163, ROOT)
    assert parsed.serialize() == text  # the exact same bytes
    parsed.verify(Vkey.from_string(log_signer().verifier().vkey()))


def test_tlog_scales_checkpoint_verifies_with_us() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    cp = TsCheckpoint.make_signed(ORIGIN, 7, ROOT, [PlainEd25519Signer(ORIGIN, key)])
    sc = note.SignedCheckpoint.parse(cp.serialize().encode())
    assert sc.checkpoint == note.Checkpoint(ORIGIN, 7, ROOT)
    [(verifier, _)] = sc.verify([log_signer().verifier()])
    assert verifier.name == ORIGIN


def test_our_cosignature_verifies_with_tlog_scales() -> None:
    sc = signed()
    cosig = sc.cosign(witness_signer(), 1679315147)
    assert note.cosignature_time(cosig) == 1679315147
    both = sc.with_signatures([cosig])
    theirs = TsCheckpoint.from_text(both.encode().decode())
    wkey = Vkey.from_string(witness_signer().verifier().vkey())
    valid = VkeySet(wkey, Vkey.from_string(log_signer().verifier().vkey())).verify(theirs.signatures, theirs)
    assert {v.name for v, _ in valid} == {ORIGIN, "witness.example/w1"}
    # and the message is the cosignature/v1 form over the checkpoint text
    message = b"cosignature/v1\ntime 1679315147\n" + sc.note.text.encode()
    nacl.signing.VerifyKey(bytes(nacl.signing.SigningKey(WSEED).verify_key)).verify(message, cosig.signature[8:])
    good = both.verify([witness_signer().verifier()])
    assert [s for _, s in good] == [cosig]


def test_unknown_signatures_are_ignored_and_a_bad_known_one_fails() -> None:
    sc = signed()
    stranger = note.Ed25519Signer(ORIGIN, nacl.signing.SigningKey(bytes(32)))  # same name, other id
    other = sc.with_signatures([stranger.sign(sc.note.text.encode())])
    assert len(other.verify([log_signer().verifier()])) == 1
    with pytest.raises(NoteSignatureError, match="not signed by any known key"):
        sc.verify([witness_signer().verifier()])
    forged = note.NoteSignature(ORIGIN, log_signer().verifier().key_id, bytes(64))
    bad = note.SignedCheckpoint(sc.checkpoint, note.Note(sc.note.text, (forged,)))
    with pytest.raises(NoteSignatureError, match="does not verify"):
        bad.verify([log_signer().verifier()])
    # a cosignature verifier never accepts a plain Ed25519 signature (different key id)
    with pytest.raises(NoteSignatureError):
        sc.verify([note.CosignatureVerifier(ORIGIN, bytes(log_signer().key.verify_key))])


def test_multi_paragraph_text_splits_at_the_last_blank_line() -> None:
    signer = note.Ed25519Signer("example.com/foo", nacl.signing.SigningKey(SEED))
    text = "one\n\ntwo\n"
    data = text.encode() + b"\n" + signer.sign(text.encode()).line().encode()
    parsed = note.parse_note(data)
    assert parsed.text == text
    note.verify_note(parsed, [signer.verifier()])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"text\n", "no blank line"),
        (b"text\n\n", "no signature lines"),
        (b"text\n\nnot a signature\n", "em dash"),
        ("text\n\n\u2014 name AAAA\n".encode(), "shorter than a key ID"),
        ("text\n\n\u2014 na+me AAAAAAAAAAAA\n".encode(), "without spaces or"),
        ("text\n\n\u2014 name AAAAAAAA AAAA\n".encode(), "is not '— name signature'"),
        ("text\n\n\u2014 name !!!!\n".encode(), "not standard base64"),
        ("te\txt\n\n\u2014 name AAAAAAAAAAAA\n".encode(), "control character"),
        (b"\xff\n\n", "not valid UTF-8"),
        ("text\n\n\u2014 name AAAAAAAAAAAA".encode(), "does not end with a newline"),
    ],
)
def test_malformed_notes_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(MalformedNoteError, match=match):
        note.parse_note(data)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("o\n1\n", "at least 3"),
        ("\n1\n" + note.b64(ROOT) + "\n", "origin line is empty"),
        ("o\n01\n" + note.b64(ROOT) + "\n", "leading zeroes"),
        ("o\n-1\n" + note.b64(ROOT) + "\n", "leading zeroes"),
        ("o\n1\n" + note.b64(ROOT[:31]) + "\n", "31 bytes"),
        ("o\n1\n" + note.b64(ROOT) + "\n\n", "empty extension"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, match: str) -> None:
    with pytest.raises(MalformedNoteError, match=match):
        note.Checkpoint.parse(text)


def test_extension_lines_are_kept_and_signed() -> None:
    cp = note.Checkpoint(ORIGIN, 3, ROOT, ("chain abc",))
    sc = note.SignedCheckpoint.sign(cp, log_signer())
    again = note.SignedCheckpoint.parse(sc.encode())
    assert again.checkpoint.extensions == ("chain abc",)
    again.verify([log_signer().verifier()])


def test_response_signature_lines_parse() -> None:
    cosig = signed().cosign(witness_signer(), 5)
    assert note.parse_signature_lines(cosig.line().encode() * 2) == [cosig, cosig]
    with pytest.raises(MalformedNoteError):
        note.parse_signature_lines(cosig.line().encode()[:-1])
