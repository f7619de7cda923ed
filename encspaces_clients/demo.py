"""``make demo``: two members edit one text through a real relay, and what the relay holds.

It starts a relay daemon in the background, lets Alice create a space and add Bob, has both
type at once, then prints the relay's stored entries (ciphertext, as the relay sees them)
beside the text each member sees, and stops the relay.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
from pathlib import Path

import encspaces
from encspaces.core.entry import Entry
from encspaces_relay.process import RelayProcess
from encspaces_relay.store import DB_FILE

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


async def main() -> int:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    async with RelayProcess(DEMO_DIR / "relay") as relay:
        print(f"relay running at {relay.url} (public key {relay.public_key})\n")
        alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
        alice = await encspaces.create_space(relay.url, alice_id, data_dir=DEMO_DIR / "alice")
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
            return 0 if same and not leaked else 1
        finally:
            await alice.close()
            await bob.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
