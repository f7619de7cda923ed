"""A real two-person editing trace, replayed through a real relay in turns, ends at its final text."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.traces import TraceMissing, load_trace

from .conftest import RelayHandle, make_members

BLOCK = 300  # transactions per turn


async def test_clownschool_in_turns_reaches_end_content(relay: RelayHandle, tmp_path: Path) -> None:
    try:
        trace = load_trace("clownschool_flat")
    except TraceMissing as exc:
        pytest.skip(str(exc))
    _, members = await make_members(relay.url, tmp_path, 2)
    try:
        texts = [m.text("doc") for m in members]
        for block, start in enumerate(range(0, len(trace.txns), BLOCK)):
            me, other = members[block % 2], members[(block + 1) % 2]
            await me.wait_for_seq(other.seq)  # see the other's block before typing on top of it
            text = texts[block % 2]
            for txn in trace.txns[start : start + BLOCK]:
                for pos, deleted, inserted in txn:
                    if deleted:
                        text.delete(pos, deleted)
                    if inserted:
                        text.insert(pos, inserted)
            await me.sync()
        last = max(m.seq for m in members)
        for m in members:
            await m.wait_for_seq(last)
        assert str(texts[0]) == trace.end_content
        assert str(texts[1]) == trace.end_content
    finally:
        for m in members:
            await m.close()
