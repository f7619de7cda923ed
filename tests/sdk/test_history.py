"""History and time travel: views of the past match what was live at that seq."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core.membership import Policy
from encspaces.errors import HistoryError, ReadOnlyError

from .conftest import RelayHandle, make_members, settle
from .test_random_convergence import random_edit, state


async def test_at_matches_the_state_recorded_at_that_seq(relay: RelayHandle, tmp_path: Path) -> None:
    rng = random.Random(11)
    _, members = await make_members(relay.url, tmp_path, 2)
    observer = members[0]
    recorded: dict[int, dict[str, object]] = {}
    try:
        for step in range(60):
            who = rng.randrange(2)
            random_edit(rng, members[who], who, step)
            await members[who].sync()
            await settle(members)
            recorded[observer.seq] = state(observer)  # everyone is caught up: this is the log's state
        for seq in rng.sample(sorted(recorded), 12):
            view = await observer.at(seq)
            assert {"t": str(view.text("t")), "l": view.list("l").to_py(), "m": view.map("m").to_py(),
                    "tab": view.table("tab").to_py()} == recorded[seq]
        with pytest.raises(ReadOnlyError):
            (await observer.at(observer.seq)).text("t").insert(0, "no")
        with pytest.raises(HistoryError, match="outside the verified log"):
            await observer.at(observer.seq + 1)
    finally:
        for m in members:
            await m.close()


async def test_history_lists_and_pages_newest_first(relay: RelayHandle, tmp_path: Path) -> None:
    ident = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, ident, data_dir=tmp_path / "a")
    try:
        for i in range(25):
            space.text("doc").insert(0, f"{i}")
            await space.sync()
        first = await space.history(limit=10)
        assert [e.seq for e in first] == list(range(space.seq, space.seq - 10, -1))
        second = await space.history(before=first[-1].seq, limit=10)
        assert second[0].seq == first[-1].seq - 1
        everything = await space.history(limit=1000)
        assert everything[-1].seq == 1 and everything[-1].kind == "genesis"
        assert {e.author for e in everything} == {ident.member_id}
        assert all(e.size > 0 and e.time_ms > 0 for e in everything)
    finally:
        await space.close()


async def test_versions_behind_deleted_keys_are_a_clear_error(relay: RelayHandle, tmp_path: Path) -> None:
    ident = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, ident, data_dir=tmp_path / "a")
    try:
        space.text("doc").insert(0, "epoch one")
        await space.sync()
        early = space.seq
        await space.set_policy(Policy(retain_epochs=0))
        await space.rotate_key()
        space.text("doc").insert(0, "epoch two. ")
        await space.sync()
        with pytest.raises(errors.EncspacesError, match="deleted by the space's retention policy"):
            await space.at(early)
        # Without a snapshot every version is rebuilt from genesis, so the present needs epoch 1 too.
        with pytest.raises(HistoryError, match="key of epoch 1"):
            await space.at(space.seq)
        assert str(space.text("doc")) == "epoch two. epoch one"  # the live document is untouched
        await space.write_snapshot()  # under epoch 2: versions from here on rebuild from it
        assert str((await space.at(space.seq)).text("doc")) == "epoch two. epoch one"
        with pytest.raises(HistoryError, match="deleted by the space's retention policy"):
            await space.at(early)
    finally:
        await space.close()
