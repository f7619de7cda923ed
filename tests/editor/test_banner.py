"""A relay that serves a tampered frame: the editor shows a red banner naming the error, stops
applying remote changes, goes read-only, and never shows the tampered text."""

from __future__ import annotations

from pathlib import Path

from encspaces_clients.editor import EditorApp
from tests.support import TamperingRelay

from .conftest import SIZE, RelayHandle, pair, type_text, wait_for


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
