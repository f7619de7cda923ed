"""The relay daemon's garbage-collector settings (encspaces_relay.collector): set by the daemon,
never by the library (an embedding application keeps its own)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

import encspaces_relay.__main__ as daemon
from encspaces_relay.collector import YOUNG, tune_collector
from encspaces_relay.config import RelayConfig


@pytest.fixture
def collector_restored() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_start_up_objects_are_set_aside_and_the_young_generation_is_larger(collector_restored: None) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_collector()
    assert gc.get_freeze_count() > 1000  # every module the daemon imported, out of every collection
    assert gc.get_threshold()[0] == YOUNG > 700


def test_the_daemon_tunes_its_collector_and_the_library_does_not(
    collector_restored: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[RelayConfig] = []

    async def serve(config: RelayConfig) -> None:
        served.append(config)
        assert gc.get_threshold()[0] == YOUNG, "tuned before the relay starts"

    gc.set_threshold(700, 10, 10)
    monkeypatch.setattr(daemon, "serve", serve)
    assert daemon.main(["--data-dir", str(tmp_path), "--port", "0"]) == 0
    assert len(served) == 1

    gc.set_threshold(700, 10, 10)
    from encspaces_relay.server import RelayServer  # what an application embedding the relay uses

    RelayServer(RelayConfig(data_dir=tmp_path / "lib", port=0))
    assert gc.get_threshold()[0] == 700
