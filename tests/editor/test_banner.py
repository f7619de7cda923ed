"""A relay that serves a tampered frame: the editor shows a red banner naming the error, stops
applying remote changes, goes read-only, and never shows the tampered text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from encspaces.core.encoding import pack
from encspaces.core.entry import Entry
from encspaces.core.head import SignedHead, next_head
from encspaces.core.messages import Entries
from encspaces_clients.editor import EditorApp
from encspaces_relay.server import RelayServer

from .conftest import SIZE, RelayHandle, pair, type_text, wait_for


class TamperingRelay(RelayServer):
    """Honest until ``armed``; then flips a byte of the ciphertext of the next live entry."""

    armed = False

    def frames_for_entries(
        self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
    ) -> Sequence[bytes]:
        if not self.armed:
            return super().frames_for_entries(space, first_seq, entries, head)
        e = Entry.decode(entries[-1])
        body = bytearray(e.body)
        body[-1] ^= 1
        tampered = [*entries[:-1], pack([e.header_bytes, e.body_hash, e.signature, bytes(body)])]
        h = self.rooms[space].state.heads[first_seq - 1]
        for i, raw in enumerate(tampered):
            h = next_head(h, first_seq + i, Entry.decode(raw).digest())
        signed = SignedHead.create(self.signing_key, space, first_seq + len(tampered) - 1, h)
        return [Entries(first_seq, tampered, signed).encode()]


async def test_banner_on_a_tampered_frame(tmp_path: Path) -> None:
    handle = RelayHandle(tmp_path / "relay", TamperingRelay)
    server = await handle.start()
    assert isinstance(server, TamperingRelay)
    alice, bob = await pair(handle.url, tmp_path, "honest text")
    app = EditorApp(bob, name="bob")
    try:
        async with app.run_test(size=SIZE) as pilot:
            editor = app.editor
            await wait_for(lambda: editor.text == "honest text", "the honest text")
            server.armed = True
            alice.text("notes").insert(0, "FORGED ")
            await wait_for(lambda: app.failure is not None, "the editor to stop")
            banner = app.query_one("#banner")
            assert banner.has_class("failed") and banner.display
            shown = str(banner.render())
            assert "verification failed" in shown and "BodyDigestError" in shown
            assert editor.read_only
            assert editor.text == "honest text" and "FORGED" not in str(bob.text("notes"))
            await type_text(pilot, "xyz")  # read-only: nothing changes
            assert editor.text == str(bob.text("notes")) == "honest text"
            app.refresh_status()
            assert "stopped" in str(app.query_one("#status").render())
            await pilot.press("ctrl+q")
        assert app.return_code == 0
    finally:
        await alice.close()
        await bob.close()
        await handle.stop()
