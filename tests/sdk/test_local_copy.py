"""This device's copy without the relay: open_local (read-only view), load_stored_log, reverify_local."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import encspaces
from encspaces.errors import BodyDigestError, ReadOnlyError, StoreError

from .conftest import RelayHandle


async def test_open_local_shows_the_verified_log_and_unsent_edits_and_never_connects(
    relay: RelayHandle, tmp_path: Path
) -> None:
    me = encspaces.Identity.generate()
    data = tmp_path / "me"
    space = await encspaces.create_space(relay.url, me, data_dir=data)
    space.text("notes").insert(0, "verified. ")
    await space.sync()
    verified_seq = space.seq
    await space.close()
    await relay.stop()  # from here on only this device's store can answer
    space = await encspaces.connect(relay.url, me, space.id, data_dir=data)
    space.text("notes").insert(len(space.text("notes")), "unsent.")
    await space.flush()
    await space.close()

    view = await encspaces.open_local(me, space.id, data_dir=data)
    assert view.seq == verified_seq
    assert str(view.text("notes")) == "verified. unsent."
    with pytest.raises(ReadOnlyError):
        view.text("notes").insert(0, "no")

    # Nothing was lost or sent by looking: the unsent edit reaches the log once the relay is back.
    await relay.start()
    async with encspaces.connect(relay.url, me, space.id, data_dir=data) as again:
        await again.sync(timeout=30)
        assert str(again.text("notes")) == "verified. unsent." and again.seq == verified_seq + 1


async def test_open_local_refuses_a_missing_copy_without_creating_one(relay: RelayHandle, tmp_path: Path) -> None:
    me, other = encspaces.Identity.generate(), encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, me, data_dir=tmp_path / "me")
    await space.close()
    with pytest.raises(StoreError, match="holds no copy"):
        await encspaces.open_local(me, space.id, data_dir=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(StoreError, match="another identity"):
        await encspaces.open_local(other, space.id, data_dir=tmp_path / "me")
    with pytest.raises(StoreError, match="holds no copy"):
        await encspaces.load_stored_log(me, space.id, data_dir=tmp_path / "nowhere")


async def test_reverify_local_checks_the_stored_log_from_genesis(relay: RelayHandle, tmp_path: Path) -> None:
    me = encspaces.Identity.generate()
    data = tmp_path / "me"
    space = await encspaces.create_space(relay.url, me, data_dir=data)
    space.text("notes").insert(0, "one")
    await space.sync()
    space.text("notes").insert(3, " two")
    await space.sync()
    seq, head = space.seq, space.head
    await space.close()

    report = await encspaces.reverify_local(me, space.id, data_dir=data)
    assert report.error is None and (report.seq, report.head) == (seq, head)
    assert [r.seq for r in report.entries] == list(range(1, seq + 1))
    stored = await encspaces.load_stored_log(me, space.id, data_dir=data)
    assert stored.head_at(seq) == head and stored.head_at(seq + 1) is None and stored.head_at(0) is None
    assert encspaces.safety_code(space.space_bytes, seq, head) == encspaces.safety_code(
        stored.space, seq, stored.head_at(seq) or b"")

    store = next(data.glob("*/space.sqlite3"))
    with sqlite3.connect(store) as db:
        raw = db.execute("SELECT raw FROM log WHERE seq = 2").fetchone()[0]
        db.execute("UPDATE log SET raw = ? WHERE seq = 2", (raw[:-1] + bytes([raw[-1] ^ 1]),))
    tampered = await encspaces.reverify_local(me, space.id, data_dir=data)
    assert isinstance(tampered.error, BodyDigestError) and tampered.seq == 1
