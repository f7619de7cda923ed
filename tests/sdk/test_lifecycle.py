"""A space's lifetime as an embedding service sees it: streams end, background failures surface,
calls honour their timeout, connection changes are events, and a process can exit unclosed."""

from __future__ import annotations

import asyncio
import gc
import sys
import textwrap
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import encspaces
from encspaces import errors, snapshot_keeper
from encspaces.connection_state import ConnectionChange, ConnectionState
from encspaces.core import outbox as outbox_module
from encspaces.core.invites import InviteLink, InviteSecret
from encspaces.core.presence import PresenceTracker
from encspaces.core.session import ClientSession
from encspaces.store import LocalStore
from encspaces.streams import EventStream
from tests.support import ForkingRelay, RelayFactory, TamperingRelay

from .conftest import RelayHandle, make_members, wait_for

GUARD = 20.0  # seconds: a hang guard for the test, never the behaviour under test


async def collect(stream: Any) -> list[Any]:
    return [event async for event in stream]


def encspaces_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("encspaces") and not t.done()]


# --- streams end -----------------------------------------------------------------------------


def every_stream(space: encspaces.Space) -> dict[str, EventStream[Any]]:
    return {
        "membership_changes": space.membership_changes(),
        "presence.changes": space.presence.changes(),
        "changes": space.changes(),
        "text.changes": space.text("doc").changes(),
        "connection_changes": space.connection_changes(),
    }


async def test_closing_a_stream_wakes_the_consumer_waiting_on_it(relay: RelayHandle, tmp_path: Path) -> None:
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    try:
        for name, stream in every_stream(space).items():
            consumer = asyncio.create_task(collect(stream))
            await asyncio.sleep(0.01)  # the consumer is now waiting on an empty stream
            assert not consumer.done(), name
            await stream.aclose()
            assert await asyncio.wait_for(consumer, GUARD) == [], name
        for name, stream in every_stream(space).items():
            async with stream as entered:
                assert entered is stream, name
            assert stream.closed and await collect(stream) == [], name
    finally:
        await space.close()


async def test_space_close_ends_every_stream_after_the_buffered_events(relay: RelayHandle, tmp_path: Path) -> None:
    identities, (alice, bob) = await make_members(relay.url, tmp_path, 2)
    try:
        streams = every_stream(alice)
        waiting = {name: asyncio.create_task(collect(stream)) for name, stream in every_stream(alice).items()}
        await asyncio.sleep(0.01)
        alice.text("doc").insert(0, "hi")
        bob.presence.set({"name": "bob"})
        third = encspaces.Identity.generate()
        await alice.add_member(third.public)
        await wait_for(lambda: identities[1].member_id in alice.presence.peers, what="bob's presence")
    finally:
        await alice.close()
        await bob.close()
    for task in waiting.values():  # consumers that were waiting are woken and end
        await asyncio.wait_for(task, GUARD)
    assert {name: len(await asyncio.wait_for(collect(s), GUARD)) > 0 for name, s in streams.items()} == {
        "membership_changes": True, "presence.changes": True, "changes": True, "text.changes": True,
        "connection_changes": False,  # connected before the stream was made, and closing is not an event
    }
    after = alice.membership_changes()  # asked for after the close: already ended
    assert await asyncio.wait_for(collect(after), GUARD) == []


async def test_a_failed_space_ends_its_streams_with_its_error(make_relay: RelayFactory, tmp_path: Path) -> None:
    relay = await make_relay(TamperingRelay)
    server = relay.server
    assert isinstance(server, TamperingRelay)
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    try:
        streams = every_stream(space)
        space.text("doc").insert(0, "buffered")
        await space.sync()
        server.armed = True  # our next entry comes back with a flipped byte: the space fails
        space.text("doc").insert(0, "tampered ")
        await wait_for(lambda: space.error is not None, "the space to fail")
        failure = space.error
        assert isinstance(failure, errors.BodyDigestError)
        for name, stream in streams.items():
            received = []
            with pytest.raises(errors.BodyDigestError) as raised:
                async for event in stream:
                    received.append(event)
            assert raised.value is failure, name
            if name in ("changes", "text.changes"):
                assert received and received[0].name == "doc", name
        with pytest.raises(errors.BodyDigestError):  # asked for after the failure
            await space.membership_changes().__anext__()
    finally:
        await space.close()


# --- no zombies: background failures fail the space ---------------------------------------------


def boom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("injected fault")


async def aboom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("injected fault")


INJECTIONS: dict[str, tuple[str, Callable[[pytest.MonkeyPatch], None]]] = {
    "runner": ("the connection runner", lambda mp: mp.setattr(ClientSession, "receive_all", boom)),
    "writer": ("the store writer", lambda mp: mp.setattr(LocalStore, "write", aboom)),
    "batcher": ("the edit batcher", lambda mp: mp.setattr(outbox_module.Outbox, "build", boom)),
    "ticker": ("the maintenance ticker", lambda mp: mp.setattr(outbox_module, "rotation_due", boom)),
    "presence": ("the presence task", lambda mp: mp.setattr(PresenceTracker, "expire", boom)),
}


@pytest.mark.parametrize("where", list(INJECTIONS))
async def test_a_fault_in_background_work_fails_the_space(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    task, inject = INJECTIONS[where]
    options = encspaces.SpaceOptions(maintenance_interval=0.05, presence_tick=0.05)
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a",
                                         options=options)
    try:
        events = space.connection_changes()
        inject(monkeypatch)
        if where in ("runner", "writer", "batcher"):
            space.text("doc").insert(0, "the edit that meets the fault")
        if where != "runner":  # elsewhere sync() may complete before the fault: it raises once failed
            await wait_for(lambda: space.error is not None, what="the failure")
        with pytest.raises(errors.InternalError) as caught:
            await asyncio.wait_for(space.sync(), GUARD)  # raises, instead of hanging
        error = space.error
        assert isinstance(error, errors.InternalError) and caught.value is error
        assert task in str(error) and "RuntimeError: injected fault" in str(error)
        assert isinstance(error.__cause__, RuntimeError)
        assert await asyncio.wait_for(collect_until_error(events), GUARD) == [
            ConnectionChange(ConnectionState.FAILED, error)
        ]
        with pytest.raises(errors.InternalError):
            space.text("doc").insert(0, "refused")
    finally:
        monkeypatch.undo()
        await space.close()


async def collect_until_error(stream: EventStream[ConnectionChange]) -> list[ConnectionChange]:
    seen = []
    with pytest.raises(errors.EncspacesError):
        async for event in stream:
            seen.append(event)
    return seen


async def test_a_fault_in_the_redaction_of_forgotten_keys_fails_the_space(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    try:
        monkeypatch.setattr(outbox_module, "retired_epochs",
                            lambda state, held, now: {e for e in held if e < state.epoch})
        monkeypatch.setattr(LocalStore, "load_log", aboom)
        await asyncio.wait_for(space.rotate_key(), GUARD)  # epoch 1's key is then forgotten, its copies redacted
        await wait_for(lambda: space.error is not None, what="the failure")
        with pytest.raises(errors.InternalError, match="the redaction of forgotten keys"):
            await asyncio.wait_for(space.sync(), GUARD)
        assert isinstance(space.error, errors.InternalError)
        assert isinstance(space.error.__cause__, RuntimeError)
    finally:
        monkeypatch.undo()
        await space.close()


async def test_a_fault_in_the_snapshot_keeper_fails_the_space(
    relay: RelayHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_keeper, "GRANULARITY", 5)
    monkeypatch.setattr(snapshot_keeper, "snapshot_due", lambda state, base: True)
    monkeypatch.setattr(snapshot_keeper.SnapshotKeeper, "_write", boom)
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    try:
        for i in range(6):  # idle frame ends crossing seq 5: a snapshot is due, its timer meets the fault
            try:
                space.text("doc").insert(0, f"{i}")
                await space.sync()
            except errors.InternalError:
                break  # the timer already fired (a slow machine): the failure is what we wait for
        await wait_for(lambda: space.error is not None, what="the failure")
        with pytest.raises(errors.InternalError, match="the snapshot keeper failed unexpectedly: RuntimeError"):
            await asyncio.wait_for(space.sync(), GUARD)
    finally:
        monkeypatch.undo()
        await space.close()


# --- timeouts ------------------------------------------------------------------------------------


class SilentRelay:
    """Accepts TCP connections and never answers: no websocket handshake, no challenge."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await reader.read()  # until the client hangs up
        self.closed += 1
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def silent() -> AsyncIterator[SilentRelay]:
    relay = SilentRelay()
    relay.server = await asyncio.start_server(relay._handle, "127.0.0.1", 0)
    try:
        yield relay
    finally:
        relay.server.close()


async def test_connect_to_a_silent_relay_times_out_and_closes_what_it_opened(
    silent: SilentRelay, tmp_path: Path
) -> None:
    ident = encspaces.Identity.generate()
    space_id = encspaces.space.encode_space_id(bytes(32))
    with pytest.raises(errors.OperationTimeoutError, match="connect: waited for the first sync") as caught:
        await asyncio.wait_for(encspaces.connect(silent.url, ident, space_id, data_dir=tmp_path / "c", timeout=0.3),
                               GUARD)
    assert isinstance(caught.value, TimeoutError)
    await wait_for(lambda: silent.accepted >= 1 and silent.closed == silent.accepted, what="the connection closed")
    assert encspaces_tasks() == []


async def test_create_space_and_join_time_out_on_a_silent_relay(silent: SilentRelay, tmp_path: Path) -> None:
    ident = encspaces.Identity.generate()
    with pytest.raises(errors.OperationTimeoutError, match="create_space"):
        await asyncio.wait_for(encspaces.create_space(silent.url, ident, data_dir=tmp_path / "a", timeout=0.3), GUARD)
    link = str(InviteLink(silent.url, bytes(32), InviteSecret.generate()))
    with pytest.raises(errors.OperationTimeoutError, match="join: waited to become a member"):
        await asyncio.wait_for(encspaces.join(link, ident, data_dir=tmp_path / "j", timeout=0.3), GUARD)
    await wait_for(lambda: silent.accepted >= 2 and silent.closed == silent.accepted, what="the connections closed")
    assert encspaces_tasks() == []


async def test_sync_and_wait_for_seq_time_out_and_the_edit_still_goes_out(relay: RelayHandle, tmp_path: Path) -> None:
    ident = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, ident, data_dir=tmp_path / "a")
    try:
        await relay.stop()
        await wait_for(lambda: not space.connected, what="the disconnection")
        space.text("doc").insert(0, "queued")
        with pytest.raises(errors.OperationTimeoutError, match=r"sync: .*author_seq 2.*not connected"):
            await space.sync(timeout=0.2)
        with pytest.raises(errors.OperationTimeoutError, match=f"wait_for_seq: waited for seq {space.seq + 1}"):
            await space.wait_for_seq(space.seq + 1, timeout=0.2)
        with pytest.raises(errors.OperationTimeoutError, match="wait_connected"):
            await space.wait_connected(timeout=0.2)
        await space.flush(timeout=GUARD)
        with pytest.raises(errors.InvalidArgumentError):
            await space.sync(timeout=-1)
        await relay.start()
        await space.wait_connected(timeout=GUARD)
        await space.sync(timeout=GUARD)
        assert space.error is None and space.unsent == 0
    finally:
        await space.close()


# --- connection events -----------------------------------------------------------------------------


async def test_connection_changes_and_wait_connected(relay: RelayHandle, tmp_path: Path) -> None:
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    try:
        await space.wait_connected()  # already connected: returns at once
        events = space.connection_changes()
        await relay.stop()
        assert await asyncio.wait_for(events.__anext__(), GUARD) == ConnectionChange(ConnectionState.DISCONNECTED)
        waiting = asyncio.create_task(space.wait_connected())
        await relay.start()
        await asyncio.wait_for(waiting, GUARD)
        assert space.connected
        assert await asyncio.wait_for(events.__anext__(), GUARD) == ConnectionChange(ConnectionState.CONNECTED)
        assert ConnectionState.CONNECTED == "connected"

        await relay.stop()
        await wait_for(lambda: not space.connected, what="the disconnection")
        waiting = asyncio.create_task(space.wait_connected())
        await asyncio.sleep(0.01)
        relay.cls = ForkingRelay  # it comes back lying about our own history: the space fails before it is live
        await relay.start()
        with pytest.raises(errors.ForkError):
            await asyncio.wait_for(waiting, GUARD)
        failure = space.error
        assert isinstance(failure, errors.ForkError)
        assert await collect_until_error(events) == [
            ConnectionChange(ConnectionState.DISCONNECTED), ConnectionChange(ConnectionState.FAILED, failure)
        ]
    finally:
        await space.close()
    with pytest.raises(errors.VerificationError):
        await space.wait_connected()


async def test_wait_connected_on_a_closed_space_raises(relay: RelayHandle, tmp_path: Path) -> None:
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    await relay.stop()
    await wait_for(lambda: not space.connected, what="the disconnection")
    waiting = asyncio.create_task(space.wait_connected())
    await asyncio.sleep(0.01)
    await space.close()
    with pytest.raises(errors.SpaceClosedError):
        await asyncio.wait_for(waiting, GUARD)


# --- exiting without closing ---------------------------------------------------------------------

UNCLOSED = textwrap.dedent(
    """
    import asyncio, sys
    import encspaces

    async def main():
        space = await encspaces.create_space(sys.argv[1], encspaces.Identity.generate(), data_dir=sys.argv[2])
        space.text("doc").insert(0, "never closed")
        await space.sync()
        print("OPEN", flush=True)
        # returns without closing the space

    asyncio.run(main())
    """
)


async def test_a_process_that_does_not_close_its_space_exits(relay: RelayHandle, tmp_path: Path) -> None:
    script = tmp_path / "unclosed.py"
    script.write_text(UNCLOSED)
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), relay.url, str(tmp_path / "a"), stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"OPEN"
        assert await asyncio.wait_for(child.wait(), 60) == 0  # a hang at interpreter exit fails here
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


# --- memory: a closed space can be freed ------------------------------------------------------


def _alive(ref: weakref.ref[Any]) -> bool:
    gc.collect()
    return ref() is not None


async def test_a_closed_space_and_its_history_views_are_freed(relay: RelayHandle, tmp_path: Path) -> None:
    """pycrdt keeps observers' callbacks in Rust, out of reach of Python's cycle collector: a
    closed space used to stay in memory for good, store, verifier and document with it, and so
    did every history view. An application opening and closing spaces must not grow."""
    identity = encspaces.Identity.generate()
    space = await encspaces.create_space(relay.url, identity, data_dir=tmp_path / "a")
    space_id = space.id
    text = space.text("notes")
    text.insert(0, "naïve café ✓ ")  # a non-ASCII text keeps an index that follows the text
    row = space.table("people").insert({"name": "Ada"})
    assert space.table("people").get(row) == {"name": "Ada"}  # the table's index observes the map
    stream = space.changes()  # every root is observed deeply while a stream listens
    space.list("todo").append("x")
    doc = space.doc  # handed out: every text watches local changes too
    await space.sync(timeout=GUARD)
    view = await space.at(space.seq)  # a history view: a document of its own
    assert view.text("notes").to_py() == "naïve café ✓ "
    assert view.table("people").get(row) == {"name": "Ada"}
    refs = {"space": weakref.ref(space), "document": weakref.ref(doc), "text": weakref.ref(text)}
    view_ref = weakref.ref(view)
    await stream.aclose()
    await space.close()
    assert text.to_py() == "naïve café ✓ " and space.table("people").get(row) == {"name": "Ada"}  # reads still work
    del view
    assert not _alive(view_ref), "a history view stayed in memory"
    del space, text, stream, doc
    assert [name for name, ref in refs.items() if _alive(ref)] == []

    local = await encspaces.open_local(identity, space_id, data_dir=tmp_path / "a")
    assert local.table("people").get(row) == {"name": "Ada"}
    local_ref = weakref.ref(local)
    del local
    assert not _alive(local_ref), "an open_local view stayed in memory"
