"""A relay that refuses every submission as ``stale_epoch`` cannot make a client spin.

The lying relay is the real RelayServer whose rooms, once told to, answer every submission
with the non-fatal stale_epoch refusal (and store nothing). The client backs off between
resubmissions and fails the space with ResubmitLimitError after a bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import encspaces
from encspaces import errors
from encspaces.core.codes import RefusalCode
from encspaces_relay.refusals import Refusal
from encspaces_relay.room import Room, Submission
from tests.support import Intercept, InterceptingRelay, RelayHandle

from .conftest import wait_for


def refuse_all(refusals: list[Submission]) -> Intercept:
    """Answer every submission with the non-fatal stale_epoch refusal, storing nothing."""

    def intercept(room: Room, submission: Submission) -> bool:
        refusals.append(submission)
        lie = "under epoch 1, expected the current epoch 2 (a lie)"
        room._answer(submission, Refusal(RefusalCode.STALE_EPOCH, lie))
        return True

    return intercept


async def test_stale_epoch_storm_backs_off_and_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = encspaces.SpaceOptions(resubmit_min=0.01, resubmit_max=0.1)
    handle = RelayHandle(tmp_path / "relay", InterceptingRelay)
    server = await handle.start()
    assert isinstance(server, InterceptingRelay)
    refused: list[Submission] = []
    try:
        ident = encspaces.Identity.generate()
        space = await encspaces.create_space(handle.url, ident, data_dir=tmp_path / "a", options=options)
        space.text("doc").insert(0, "hello")
        await space.sync()
        seq = space.seq
        server.intercept = refuse_all(refused)
        space.text("doc").insert(5, " world")
        await wait_for(lambda: space.error is not None, "the space to fail", timeout=30)
        assert isinstance(space.error, errors.ResubmitLimitError)
        assert space.error.code == "stale_epoch"
        assert "10 times in a row" in str(space.error)
        # One submission per round of the backoff: the limit, not tens of thousands.
        assert len(refused) == options.resubmit_limit == 10
        assert space.seq == seq  # nothing was stored or applied
        assert server.rooms[space.space_bytes].state.seq == seq  # the relay stored none of the refused
        with pytest.raises(errors.ResubmitLimitError):
            await space.sync()
        await space.close()
    finally:
        await handle.stop()
