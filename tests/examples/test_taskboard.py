"""The task board example against a real relay, two members, each with their own app in-process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias

import pycrdt
import pytest

pytest.importorskip("aiohttp", reason="the examples extra is not installed (pip install -e '.[dev,examples]')")

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

import encspaces
from encspaces.core.encoding import pack
from encspaces.core.entry import Kind
from encspaces.errors import SpaceClosedError
from encspaces.shared import MAX_DEPTH
from examples.taskboard import create_app, serve
from examples.taskboard.app import SPACE_KEY, STREAMS_KEY
from tests.support import AuthoredDoc, RawMember, RelayHandle, nest, sealed_presence, wait_for

Client: TypeAlias = "TestClient[Any, Any]"


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def board(relay: RelayHandle, tmp_path: Path) -> AsyncIterator[tuple[Client, Client]]:
    """Alice (admin) and Bob (writer) with a task board each; the apps own and close their spaces."""
    alice = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "alice")
    bob_id = encspaces.Identity.generate()
    await alice.add_member(bob_id.public)
    bob: encspaces.Space = await encspaces.connect(relay.url, bob_id, alice.id, data_dir=tmp_path / "bob")
    clients = []
    for space, name in ((alice, "Alice"), (bob, "Bob")):
        server = TestServer(create_app(space, name=name, heartbeat=0.05), handler_cancellation=True)
        client: Client = TestClient(server)
        await client.start_server()
        clients.append(client)
    try:
        yield clients[0], clients[1]
    finally:
        for client in clients:
            await client.close()


async def tasks(client: Client, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/tasks", params=params)
    assert response.status == 200, await response.text()
    found: list[dict[str, Any]] = await response.json()
    return found


async def next_event(response: ClientResponse) -> dict[str, Any]:
    """The next ``change`` event of an SSE response (comments and heartbeats skipped)."""
    event = None
    while True:
        line = (await response.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == "change":
            data: dict[str, Any] = json.loads(line[len("data: "):])
            return data


async def test_an_edit_by_one_member_reaches_the_others_list_and_event_stream(board: tuple[Client, Client]) -> None:
    alice, bob = board
    events = await bob.get("/events")
    assert events.status == 200 and events.headers["Content-Type"] == "text/event-stream"
    assert (await events.content.readline()).startswith(b": connected")

    added = await alice.post("/tasks", json={"title": "write the report", "status": "open", "prio": 2})
    assert added.status == 201
    task_id = (await added.json())["id"]
    await until(lambda: _has(bob, task_id), "Bob to list Alice's task")
    change = await asyncio.wait_for(next_event(events), 15)
    assert change["inserted"] == [task_id] and change["local"] is False and change["author"]

    await bob.post("/tasks", json={"title": "review", "status": "done", "prio": 1})
    patched = await alice.patch(f"/tasks/{task_id}", json={"status": "done"})
    assert patched.status == 200
    change = await asyncio.wait_for(next_event(events), 15)
    while change["updated"] == {} and change["local"]:  # Bob's own insert comes first
        change = await asyncio.wait_for(next_event(events), 15)
    assert change["updated"] == {task_id: ["status"]}
    await until(lambda: _status(bob, task_id, "done"), "Bob to see the update")

    done = await tasks(bob, where=json.dumps({"status": "done"}), order="-prio", limit="1")
    assert [t["title"] for t in done] == ["write the report"]
    assert (await bob.get("/tasks", params={"where": "{\"status\": {\"~\": 1}}"})).status == 400

    assert (await bob.delete(f"/tasks/{task_id}")).status == 204
    await until(lambda: _gone(alice, task_id), "Alice to see the deletion")
    assert (await alice.delete(f"/tasks/{task_id}")).status == 404
    events.close()


async def _has(client: Client, task_id: str) -> bool:
    return any(t["id"] == task_id for t in await tasks(client))


async def _status(client: Client, task_id: str, status: str) -> bool:
    return any(t["id"] == task_id and t.get("status") == status for t in await tasks(client))


async def _gone(client: Client, task_id: str) -> bool:
    return not await _has(client, task_id)


async def test_the_event_stream_ends_when_its_client_disconnects(board: tuple[Client, Client]) -> None:
    alice, _ = board
    streams = alice.server.app[STREAMS_KEY]
    response = await alice.get("/events")
    assert (await response.content.readline()).startswith(b": connected")
    assert len(streams) == 1
    (stream,) = streams
    response.close()  # the client goes away; no change ever arrives on the stream
    await wait_for(lambda: not streams, "the handler to stop iterating")
    assert stream.closed


async def test_shutdown_ends_event_streams_and_closes_the_space(relay: RelayHandle, tmp_path: Path) -> None:
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    app = create_app(space, heartbeat=3600)  # no heartbeat will end the stream during this test
    client: Client = TestClient(TestServer(app, handler_cancellation=False))
    await client.start_server()
    streams = app[STREAMS_KEY]
    try:
        response = await client.get("/events")
        assert (await response.content.readline()).startswith(b": connected")
        (stream,) = streams
    finally:
        # Shutdown ends the open stream itself (aiohttp would otherwise wait a minute for the handler).
        await asyncio.wait_for(client.close(), 30)
    assert stream.closed and not streams
    with pytest.raises(SpaceClosedError):
        space.table("tasks").insert({"title": "after"})


async def test_invites_attachments_and_presence(board: tuple[Client, Client], tmp_path: Path) -> None:
    alice, bob = board
    refused = await bob.post("/invites", json={})
    assert refused.status == 403  # Bob is a writer
    made = await alice.post("/invites", json={"role": "reader"})
    assert made.status == 201
    link = (await made.json())["link"]
    carol = await encspaces.join(link, encspaces.Identity.generate(), data_dir=tmp_path / "carol")
    try:
        assert carol.id == alice.server.app[SPACE_KEY].id
    finally:
        await carol.close()

    task_id = (await (await alice.post("/tasks", json={"title": "with a file"})).json())["id"]
    body = os.urandom(600_000)

    async def upload() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 50_000):
            yield body[start:start + 50_000]

    put = await alice.put(f"/tasks/{task_id}/files/notes.bin", data=upload())
    assert put.status == 201, await put.text()
    assert (await put.json())["size"] == len(body)
    await until(lambda: _attached(bob, task_id), "Bob to see the attachment")
    got = await bob.get(f"/tasks/{task_id}/files/notes.bin")
    assert got.status == 200 and await got.read() == body
    assert (await alice.put("/tasks/nope/files/x.bin", data=b"x")).status == 404

    async def sees_alice() -> bool:
        online = (await (await bob.get("/presence")).json())["online"]
        return any(peer.get("name") == "Alice" for peer in online)

    await until(sees_alice, "Bob to see Alice online")


async def _attached(client: Client, task_id: str) -> bool:
    return any(t["id"] == task_id and t.get("attachments") == [f"tasks/{task_id}/notes.bin"]
               for t in await tasks(client))


async def test_sigterm_shuts_the_service_down_and_closes_the_space(relay: RelayHandle, tmp_path: Path) -> None:
    space = await encspaces.create_space(relay.url, encspaces.Identity.generate(), data_dir=tmp_path / "a")
    ready = asyncio.Event()

    async def on_ready(port: int) -> None:
        ready.set()

    service = asyncio.ensure_future(serve(space, host="127.0.0.1", port=0, name="A", on_ready=on_ready))
    await asyncio.wait_for(ready.wait(), 15)  # the signal handlers are installed from here on
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(service, 15)
    with pytest.raises(SpaceClosedError):
        space.table("tasks").insert({"title": "after"})

def strict_json(text: str) -> Any:
    """JSON as a browser parses it: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


async def test_rows_and_presence_a_writers_own_client_crafted_are_served_as_json(
    board: tuple[Client, Client], relay: RelayHandle,
) -> None:
    """Bob's own client puts rows no API writes (a cell nested 5,000 deep, NaN and infinities,
    bytes, an integer past 2**53) and a presence with bytes, NaN and a "member" key claiming to
    be Alice. Alice's board still lists, gets and streams every row as valid JSON (placeholders
    where JSON has no form), and names Bob as Bob. Before: json.dumps raised RecursionError
    (500 on every list), wrote NaN (invalid JSON), or raised TypeError on bytes."""
    alice, bob = board
    bob_space = bob.server.app[SPACE_KEY]
    alice_space = alice.server.app[SPACE_KEY]
    honest = (await (await alice.post("/tasks", json={"title": "honest", "n": 1})).json())["id"]
    events = await alice.get("/events")
    authored = AuthoredDoc(bob_space.identity)
    crafted = authored.doc
    table = crafted.get("table:tasks", type=pycrdt.Map)
    table["deep"] = deep = pycrdt.Map({"title": "deep"})
    deep["v"] = top = pycrdt.Map()
    nest(top, 5000)
    table["odd"] = pycrdt.Map({"title": "odd", "nan": float("nan"), "inf": float("inf"),
                               "ninf": float("-inf"), "bytes": b"\x00\xff", "big": 2**62})
    async with RawMember(relay.url, bob_space.identity, bob_space.space_bytes) as raw:
        seq = await raw.commit(raw.entry(Kind.DATA, authored.payload(crafted.get_update())))
        state = pack({"name": "Bob", "member": alice_space.identity.member_id, "key": b"\x01", "x": float("nan")})
        await raw.presence(sealed_presence(raw, state, int(time.time() * 1_000_000) + 10**9))
        await alice_space.wait_for_seq(seq)
        await wait_for(lambda: bob_space.identity.member_id in alice_space.presence.peers, "bob's crafted presence")
    change = await next_event(events)
    assert sorted(change["inserted"]) == ["deep", "odd"]
    events.close()

    for path in ("/tasks", "/tasks?order=title", "/tasks/deep", "/tasks/odd", f"/tasks/{honest}", "/presence"):
        response = await alice.get(path)
        assert response.status == 200, (path, await response.text())
        strict_json(await response.text())
    listed = {t["id"]: t for t in strict_json(await (await alice.get("/tasks")).text())}
    assert listed[honest] == {"id": honest, "title": "honest", "n": 1}
    level, depth = listed["deep"]["v"], 0
    while isinstance(level, dict | list) and level:
        level, depth = (level["a"] if isinstance(level, dict) else level[0]), depth + 1
    assert depth <= MAX_DEPTH and "nested deeper" in level  # a placeholder where JSON readers would give up
    odd = listed["odd"]
    assert (odd["nan"], odd["inf"], odd["ninf"], odd["big"]) == ("NaN", "Infinity", "-Infinity", 2**62)
    assert "2 bytes" in odd["bytes"]
    online = strict_json(await (await alice.get("/presence")).text())["online"]
    assert [peer["member"] for peer in online] == [bob_space.identity.member_id]  # not Alice, as it claimed
    assert (await alice.patch(f"/tasks/{honest}", json={"n": 2})).status == 200  # honest rows still work
    await until(lambda: _holds(bob, honest, {"n": 2}), "bob to see alice's honest edit")


async def _holds(client: Client, task_id: str, values: dict[str, Any]) -> bool:
    response = await client.get(f"/tasks/{task_id}")
    return response.status == 200 and values.items() <= (await response.json()).items()


async def test_values_as_deep_as_the_sdk_writes_are_served_whole(board: tuple[Client, Client]) -> None:
    """A cell nested ``MAX_DEPTH`` deep, and a presence state nested as deep as presence takes, are
    what the SDK writes: the board serves them whole. Before, its own limit of 64 counted from the
    top of the response, so the tasks list and the task around a cell took two levels of it, and
    the deepest lists of an honest value came back as a placeholder."""
    alice, bob = board
    deepest: Any = "bottom"
    for _ in range(MAX_DEPTH):
        deepest = [deepest]
    created = await alice.post("/tasks", json={"title": "deep", "v": deepest})
    assert created.status == 201, await created.text()
    task_id = (await created.json())["id"]
    assert (await (await alice.get(f"/tasks/{task_id}")).json())["v"] == deepest
    assert [t["v"] for t in await tasks(alice)] == [deepest]
    bob_space = bob.server.app[SPACE_KEY]
    state: Any = {"name": "Bob", "deep": deepest[0]}  # the state is a level: MAX_DEPTH in all
    bob_space.presence.set(state)
    alice_space = alice.server.app[SPACE_KEY]
    await wait_for(lambda: alice_space.presence.peers.get(bob_space.identity.member_id) == state, "bob's presence")
    online = (await (await alice.get("/presence")).json())["online"]
    assert online == [{**state, "member": bob_space.identity.member_id}]


async def test_a_file_another_member_attached_is_served_as_a_download_never_as_a_page(
    board: tuple[Client, Client],
) -> None:
    """Bob's client attaches an HTML page (its script would run in the board's origin and could
    ask Alice's board for an admin's invite link) and a file whose content type carries a header
    of its own. Alice's board serves both as downloads (``attachment``, ``nosniff``, a sandbox),
    the broken type as octet-stream; before, the page was served as text/html, inline, and the
    type with a line break in it made the board drop the connection."""
    alice, bob = board
    bob_space = bob.server.app[SPACE_KEY]
    task_id = (await (await bob.post("/tasks", json={"title": "files"})).json())["id"]
    page = b"<script>fetch('/invites', {method: 'POST'})</script>"
    await bob_space.files.put(f"tasks/{task_id}/page.html", page, content_type="text/html")
    await bob_space.files.put(f"tasks/{task_id}/odd.txt", b"odd", content_type="text/plain\r\nX-Evil: 1")
    await bob_space.sync()
    await alice.server.app[SPACE_KEY].wait_for_seq(bob_space.seq)
    for name, body, content_type in (("page.html", page, "text/html"), ("odd.txt", b"odd", "application/octet-stream")):
        got = await alice.get(f"/tasks/{task_id}/files/{name}")
        assert got.status == 200 and await got.read() == body, await got.text()
        assert got.headers["Content-Type"] == content_type and "X-Evil" not in got.headers
        assert got.headers["Content-Disposition"].startswith("attachment")
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in got.headers["Content-Security-Policy"]
