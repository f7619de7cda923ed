"""``make demo``: two members edit one text through a real relay, and what the relay holds.

It starts a relay daemon and a witness of its spaces in the background, lets Alice create a
space that names the witness and add Bob, has both type at once, then prints the relay's stored
entries (ciphertext, as the relay sees them) beside the text each member sees, and the
checkpoint the witness cosigned: fetched from the witness itself (not through the relay), its
relay signature and cosignature checked, its root recomputed from the log. Then it stops both.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import encspaces
from encspaces.core import merkle, note
from encspaces.core.entry import Entry
from encspaces.core.identity import decode_space_id, parse_member_id
from encspaces_relay.process import RelayProcess
from encspaces_relay.store import DB_FILE
from encspaces_witness.process import WitnessProcess

DEMO_DIR = Path(".encspaces-demo")


async def type_slowly(text: encspaces.SharedText, at_end: bool, words: str) -> None:
    """Type at the end (Alice) or at the start, left to right (Bob)."""
    for i, ch in enumerate(words):
        text.insert(len(text) if at_end else i, ch)
        await asyncio.sleep(0.002)


def relay_view(data_dir: Path) -> list[tuple[int, str, int, str]]:
    """What the relay stored, read straight from its database file: seq, kind, size, bytes."""
    with sqlite3.connect(f"file:{data_dir / DB_FILE}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT seq, raw FROM entries ORDER BY seq").fetchall()
    view = []
    for seq, raw in rows:
        entry = Entry.decode(bytes(raw))
        view.append((seq, entry.header.kind.value, len(entry.body), entry.body[:24].hex()))
    return view


def _witness_checkpoint(url: str, origin: str) -> bytes | None:
    """GET the witness's latest cosigned checkpoint of ``origin`` (None: it has none yet)."""
    path = f"{url}/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint"
    try:
        with urllib.request.urlopen(path, timeout=5) as answer:
            body: bytes = answer.read()
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


async def show_witnessed(witness: WitnessProcess, relay: RelayProcess, space: encspaces.Space) -> bool:
    """Wait (bounded) for the witness to cosign the log through the space's seq; check and print it."""
    origin = note.space_origin(decode_space_id(space.id))
    policy = space.witness_policy.witnesses[0]
    verifiers: list[note.Verifier] = [note.Ed25519Verifier(origin, parse_member_id(relay.public_key)),
                                      policy.verifier()]
    deadline = time.monotonic() + 15
    while True:
        data = await asyncio.to_thread(_witness_checkpoint, witness.url, origin)
        signed = None if data is None else note.SignedCheckpoint.parse(data)
        if signed is not None and signed.checkpoint.size >= space.seq:
            break
        if time.monotonic() > deadline:
            print("the witness has not cosigned the whole log yet (it is witnessed in the background)")
            return False
        await asyncio.sleep(0.2)
    signers = sorted({v.name for v, _ in signed.verify(verifiers)})
    with sqlite3.connect(f"file:{relay.data_dir / DB_FILE}?mode=ro", uri=True) as db:
        digests = [bytes(d) for (d,) in db.execute("SELECT digest FROM entries WHERE space_id = ? ORDER BY seq "
                                                  "LIMIT ?", (decode_space_id(space.id), signed.checkpoint.size))]
    root = merkle.root_of([merkle.leaf_hash(merkle.entry_leaf(d)) for d in digests])
    print(f"\nThe witness at {witness.url}, asked directly, cosigned the log through seq {signed.checkpoint.size}:")
    print(textwrap.indent(data.decode(), "  ").rstrip() if data else "")
    print(f"  signatures verified: {', '.join(signers)}; root matches the stored log: "
          f"{'yes' if root == signed.checkpoint.root else 'NO'}")
    return root == signed.checkpoint.root and len(signers) == 2


async def main() -> int:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    async with RelayProcess(DEMO_DIR / "relay", extra_args=["--allow-private-witnesses"]) as relay, \
            WitnessProcess(DEMO_DIR / "witness", [relay.public_key]) as witness:
        print(f"relay running at {relay.url} (public key {relay.public_key})")
        print(f"witness running at {witness.url} (key {witness.vkey})\n")
        alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
        alice = await encspaces.create_space(relay.url, alice_id, data_dir=DEMO_DIR / "alice",
                                             witnesses=[encspaces.Witness.from_vkey(witness.vkey, witness.url)])
        await alice.add_member(bob_id.public)
        bob = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=DEMO_DIR / "bob")
        try:
            ta, tb = alice.text("notes"), bob.text("notes")
            ta.insert(0, "\n")
            await alice.sync()
            await bob.wait_for_seq(alice.seq)
            await asyncio.gather(
                type_slowly(ta, True, "Meet at the old harbour at nine."),
                type_slowly(tb, False, "[Bob] Bring the blue folder."),
            )
            await alice.sync()
            await bob.sync()
            await alice.wait_for_seq(bob.seq)
            await bob.wait_for_seq(alice.seq)
            print(f"space {alice.id}, verified through seq {alice.seq}\n")
            print("What the relay stored (it cannot read the bodies):")
            print(f"  {'seq':>4}  {'kind':<10} {'bytes':>5}  body (first 24 bytes, hex)")
            for seq, kind, size, body in relay_view(relay.data_dir):
                print(f"  {seq:>4}  {kind:<10} {size:>5}  {body}")
            print()
            print(f"Alice sees: {str(ta)!r}")
            print(f"Bob sees:   {str(tb)!r}")
            stored = (relay.data_dir / DB_FILE).read_bytes()
            leaked = any(word.encode() in stored for word in ("harbour", "folder", "Meet"))
            print(f"\nplaintext found in the relay's database file: {'YES' if leaked else 'no'}")
            same = str(ta) == str(tb)
            print(f"both members see the same verified text: {'yes' if same else 'NO'}")
            witnessed = await show_witnessed(witness, relay, alice)
            return 0 if same and not leaked and witnessed else 1
        finally:
            await alice.close()
            await bob.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
