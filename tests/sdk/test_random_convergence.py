"""Seeded random edits by three members on all four object kinds converge, with and without drops."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

import encspaces

from .conftest import RelayHandle, make_members, settle


def random_edit(rng: random.Random, space: encspaces.Space, who: int, step: int) -> None:
    kind = rng.choice(["text", "list", "map", "table"])
    if kind == "text":
        text = space.text("t")
        if len(text) and rng.random() < 0.35:
            at = rng.randrange(len(text))
            text.delete(at, min(rng.randint(1, 4), len(text) - at))
        else:
            text.insert(rng.randint(0, len(text)), f"<{who}.{step}>")
    elif kind == "list":
        items = space.list("l")
        if len(items) and rng.random() < 0.3:
            del items[rng.randrange(len(items))]
        else:
            items.insert(rng.randint(0, len(items)), {"by": who, "n": step} if rng.random() < 0.3 else step)
    elif kind == "map":
        m = space.map("m")
        key = f"k{rng.randrange(6)}"
        if key in m and rng.random() < 0.3:
            del m[key]
        else:
            m[key] = [who, step]
    else:
        table = space.table("tab")
        rows = [r.id for r in table.rows()]
        if rows and rng.random() < 0.6:
            row = rng.choice(rows)
            if rng.random() < 0.2:
                table.delete(row)
            else:
                table.update(row, {rng.choice(["a", "b", "c"]): step})
        else:
            table.insert({"a": who, "b": step})


def state(space: encspaces.Space) -> dict[str, Any]:
    return {
        "t": str(space.text("t")),
        "l": space.list("l").to_py(),
        "m": space.map("m").to_py(),
        "tab": space.table("tab").to_py(),
    }


@pytest.mark.parametrize(("seed", "drops"), [(1, False), (2, True), (3, True)])
async def test_random_edits_converge(relay: RelayHandle, tmp_path: Path, seed: int, drops: bool) -> None:
    rng = random.Random(seed)
    _, members = await make_members(relay.url, tmp_path, 3)
    try:
        for step in range(240):
            who = rng.randrange(3)
            random_edit(rng, members[who], who, step)
            if rng.random() < 0.2:
                await asyncio.sleep(0)  # let batches flush and frames arrive mid-run
            if drops and step % 80 == 40:
                await relay.stop()  # every connection drops; edits continue offline
                for later in range(step, step + 10):
                    who = rng.randrange(3)
                    random_edit(rng, members[who], who, later)
                await relay.start()
        await settle(members)
        first = state(members[0])
        for other in members[1:]:
            assert state(other) == first
        assert first["t"], "the run made edits"
    finally:
        for m in members:
            await m.close()
