"""``python -m clients.editor.screenshot [docs/editor.svg]``: the README's picture of the editor.

Starts a relay in this process, lets Alice and Bob write a few lines, opens Alice's editor
headless with Bob's cursor and selection visible, and saves Textual's SVG screenshot.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import encspaces
from encspaces_relay.config import RelayConfig
from encspaces_relay.server import RelayServer

from .app import EditorApp

TEXT = """Meeting notes, Thursday

- Harbour walk moves to 9:00; bring the blue folder.
- Budget: the relay costs nothing to trust, so it costs little to run.
- Bob checks the safety code with Carol by phone.

Open questions
- Who hosts the next session?
"""


async def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RelayServer(RelayConfig(data_dir=Path(tmp) / "relay", port=0))
        port = await server.start()
        url = f"ws://127.0.0.1:{port}"
        alice_id, bob_id, carol_id = (encspaces.Identity.generate() for _ in range(3))
        alice = await encspaces.create_space(url, alice_id, data_dir=Path(tmp) / "alice")
        await alice.add_member(bob_id.public)
        await alice.add_member(carol_id.public, "reader")
        bob = await encspaces.connect(url, bob_id, alice.id, data_dir=Path(tmp) / "bob")
        alice.text("notes").insert(0, TEXT)
        await alice.sync()
        await bob.wait_for_seq(alice.seq)
        app = EditorApp(alice, name="Alice", space_name="team")
        try:
            async with app.run_test(size=(110, 24)) as pilot:
                start = TEXT.index("blue folder")
                bob.presence.set({"name": "Bob", "colour": "#61afef", "doc": "notes", "cursor": start + 11,
                                  "selection": [start, start + 11]})
                while bob.identity.member_id not in app.editor.peers:
                    await asyncio.sleep(0.02)
                app.editor.move_cursor(app.editor.location_of(len(TEXT) - 1))
                for key in ("space", "A", "l", "i", "c", "e", "question_mark"):
                    await pilot.press(key)
                await alice.sync()
                await pilot.pause()
                app.refresh_status()
                await pilot.pause()
                app.save_screenshot(target.name, str(target.parent))
        finally:
            await alice.close()
            await bob.close()
            await server.stop()
    print(f"saved {target}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/editor.svg")))
