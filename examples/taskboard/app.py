"""The task board: an aiohttp app serving one member's view of a shared ``tasks`` table.

Every member runs their own process with their own identity and local store; the relay only
ever sees ciphertext. Endpoints (JSON unless said otherwise):

=======================================  ===================================================
``GET /tasks?where=&order=&limit=``      rows as ``[{"id": ..., **columns}]``; ``where`` is a
                                         JSON filter (``encspaces.shared.query``), ``order``
                                         a column or ``-column``, ``limit`` an int
``POST /tasks``                          add a task (a JSON object of columns) -> ``{"id"}``
``PATCH /tasks/{id}``                    set some columns of a task
``DELETE /tasks/{id}``                   delete a task
``GET /tasks/{id}``                      one task
``PUT /tasks/{id}/files/{name}``         attach a file: the request body is streamed into
                                         ``space.files.put`` (never held whole in memory)
``GET /tasks/{id}/files/{name}``         the attached file's bytes
``GET /events``                          Server-Sent Events: one ``change`` per change of
                                         the table (``space.changes("tasks")``)
``GET /presence``                        who is online (presence of the other members)
``POST /invites``                        admin only: an invite link ``{"link"}`` (body:
                                         optional ``role``, ``uses``, ``expires_in``)
=======================================  ===================================================

Lifetime: ``create_app`` takes an open space and owns it from then on. On shutdown the app
first ends every open event stream (it closes their change streams itself rather than
waiting for them to end), then closes the space. ``serve`` runs the app until SIGTERM or
SIGINT and then shuts it down that way.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import math
import re
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

import encspaces
from encspaces.errors import NotPermittedError, QueryError, RowNotFoundError, UnknownFileError
from encspaces.shared import MAX_DEPTH, ChangeStream, TableChange

log = logging.getLogger("examples.taskboard")

TABLE = "tasks"
SPACE_KEY = web.AppKey("space", encspaces.Space)
STREAMS_KEY = web.AppKey("streams", set[ChangeStream[Any]])
HEARTBEAT_KEY = web.AppKey("heartbeat", float)
MAX_JSON = 64 << 10  # request bodies of the JSON endpoints
UPLOAD_PIECE = 256 << 10


def create_app(space: encspaces.Space, *, name: str | None = None, heartbeat: float = 15.0) -> web.Application:
    """The web app over ``space`` (which it closes on cleanup); ``name`` is shown to others as presence."""
    app = web.Application(client_max_size=MAX_JSON)
    app[SPACE_KEY] = space
    app[STREAMS_KEY] = set()
    app[HEARTBEAT_KEY] = heartbeat
    if name is not None:
        space.presence.set({"name": name})
    app.router.add_get("/tasks", list_tasks)
    app.router.add_post("/tasks", add_task)
    app.router.add_get("/tasks/{id}", get_task)
    app.router.add_patch("/tasks/{id}", update_task)
    app.router.add_delete("/tasks/{id}", delete_task)
    app.router.add_put("/tasks/{id}/files/{name}", attach_file)
    app.router.add_get("/tasks/{id}/files/{name}", get_file)
    app.router.add_get("/events", events)
    app.router.add_get("/presence", presence)
    app.router.add_post("/invites", create_invite)
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_close_space)
    return app


async def _end_streams(app: web.Application) -> None:
    streams = app[STREAMS_KEY]
    for stream in list(streams):
        stream.close()  # wakes the handler waiting on it: it returns and the response ends


async def _close_space(app: web.Application) -> None:
    await app[SPACE_KEY].close()


# --- helpers ------------------------------------------------------------------------------------


def _table(request: web.Request) -> encspaces.SharedTable:
    return request.app[SPACE_KEY].table(TABLE)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad_request(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad_request("expected a JSON object")
    return body


def _task(row_id: str, values: dict[str, Any]) -> dict[str, Any]:
    """A row as served: its cells through ``plain_json``, each counted from depth 0 as the SDK
    counts a row's cells (``SharedTable``), so a cell as deep as it may be is served whole."""
    return {**plain_json(values, depth=-1), "id": row_id}


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def plain_json(value: Any, depth: int = 0) -> Any:
    """``value`` (a member's: a cell, a presence state) as data every JSON reader takes,
    whatever another member's own client stored.

    The SDK writes finite numbers, str-keyed maps and lists at most ``MAX_DEPTH`` deep (counted
    from ``depth``, as the SDK counts: the value is at 0), but a member's client may store any
    Yjs value: lists nested thousands deep (``json.dumps`` recursed past Python's limit, and the
    whole list of tasks failed with a 500), NaN and infinities (written as bare ``NaN``, which no
    browser parses) or bytes (a TypeError). Each such part becomes a string saying what it was;
    the rest of the row, and every other row, is served as it is.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE.get(value, "NaN")
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            return f"<nested deeper than {MAX_DEPTH}>"
        if isinstance(value, dict):
            return {str(key): plain_json(item, depth + 1) for key, item in value.items()}
        return [plain_json(item, depth + 1) for item in value]
    return f"<{type(value).__name__}>"


def _json(data: Any, status: int = 200) -> web.Response:
    """A JSON response: every member's value in ``data`` went through ``plain_json`` (``_task``,
    ``presence``), each counted from its own top, so it is valid JSON, never a 500."""
    return web.json_response(data, status=status, dumps=functools.partial(json.dumps, allow_nan=False))


# --- tasks --------------------------------------------------------------------------------------


async def list_tasks(request: web.Request) -> web.Response:
    try:
        where = json.loads(request.query["where"]) if "where" in request.query else None
        limit = int(request.query["limit"]) if "limit" in request.query else None
    except ValueError as exc:
        return _error(400, f"bad query parameter: {exc}")
    order = request.query.get("order")
    try:
        rows = _table(request).query(where=where, order_by=order, limit=limit)
    except QueryError as exc:
        return _error(400, str(exc))
    return _json([_task(row.id, row.values) for row in rows])


async def get_task(request: web.Request) -> web.Response:
    values = _table(request).get(request.match_info["id"])
    if values is None:
        return _error(404, "no such task")
    return _json(_task(request.match_info["id"], values))


async def add_task(request: web.Request) -> web.Response:
    body = await _body(request)
    body.pop("id", None)
    try:
        row_id = _table(request).insert(body)
    except (TypeError, ValueError) as exc:
        return _error(400, str(exc))
    except NotPermittedError as exc:
        return _error(403, str(exc))
    return web.json_response({"id": row_id}, status=201)


async def update_task(request: web.Request) -> web.Response:
    body = await _body(request)
    body.pop("id", None)
    try:
        _table(request).update(request.match_info["id"], body)
    except RowNotFoundError:
        return _error(404, "no such task")
    except (TypeError, ValueError) as exc:
        return _error(400, str(exc))
    except NotPermittedError as exc:
        return _error(403, str(exc))
    return web.json_response({"id": request.match_info["id"]})


async def delete_task(request: web.Request) -> web.Response:
    try:
        _table(request).delete(request.match_info["id"])
    except RowNotFoundError:
        return _error(404, "no such task")
    except NotPermittedError as exc:
        return _error(403, str(exc))
    return web.Response(status=204)


# --- files --------------------------------------------------------------------------------------


def _file_name(request: web.Request) -> str:
    return f"tasks/{request.match_info['id']}/{request.match_info['name']}"


async def attach_file(request: web.Request) -> web.Response:
    """Stream the request body into ``files.put``, then list the file on the task."""
    space = request.app[SPACE_KEY]
    table = space.table(TABLE)
    row_id = request.match_info["id"]
    if row_id not in table:
        return _error(404, "no such task")
    try:
        ref = await space.files.put(_file_name(request), request.content.iter_chunked(UPLOAD_PIECE),
                                    content_type=request.headers.get("Content-Type"))
    except NotPermittedError as exc:
        return _error(403, str(exc))
    current = table.get(row_id)
    if current is None:  # deleted while the file went up: the file stays listed in the space
        return _error(409, "the task was deleted during the upload")
    attachments = [a for a in current.get("attachments", []) if isinstance(a, str) and a != ref.name]
    table.update(row_id, {"attachments": [*attachments, ref.name]})
    return web.json_response({"name": ref.name, "size": ref.size, "file_id": ref.id}, status=201)


# The member who attached a file chose its content type: served inline, a text/html one would run
# its script in this board's origin (with the viewer's board behind it: tasks, invites). Every
# file is a download, never sniffed, sandboxed; a type that is not one plain "type/subtype" (a
# line break in it made aiohttp drop the connection) is served as octet-stream.
DOWNLOAD_HEADERS = {"Content-Disposition": "attachment", "X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": "sandbox; default-src 'none'"}
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")


async def get_file(request: web.Request) -> web.Response:
    space = request.app[SPACE_KEY]
    try:
        ref = space.files.ref(_file_name(request))
    except UnknownFileError:
        return _error(404, "no such file")
    data = await space.files.get(ref)
    content_type = ref.content_type if _CONTENT_TYPE.fullmatch(ref.content_type) else "application/octet-stream"
    return web.Response(body=data, content_type=content_type, headers=DOWNLOAD_HEADERS)


# --- events, presence, invites ------------------------------------------------------------------


def _change_json(change: TableChange) -> str:
    return json.dumps({"inserted": change.inserted, "updated": change.updated, "deleted": change.deleted,
                       "local": change.local, "author": change.author})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of the table's changes, until the client goes or the app shuts down.

    The change stream is closed by this handler on every way out: the client disconnecting
    (the handler is cancelled, or a write or heartbeat fails), or shutdown (``_end_streams``
    closes it, which ends the iteration). It never relies on the stream ending by itself.
    """
    space = request.app[SPACE_KEY]
    streams = request.app[STREAMS_KEY]
    heartbeat = request.app[HEARTBEAT_KEY]
    stream = space.table(TABLE).changes()
    streams.add(stream)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while True:
            try:
                change = await asyncio.wait_for(anext(stream), heartbeat)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")  # fails once the client is gone
                continue
            except StopAsyncIteration:
                break
            await response.write(f"event: change\ndata: {_change_json(change)}\n\n".encode())
    except ConnectionResetError:
        log.debug("event stream client went away")
    finally:  # also when cancelled (the client disconnected, with handler_cancellation)
        stream.close()
        streams.discard(stream)
    return response


async def presence(request: web.Request) -> web.Response:
    space = request.app[SPACE_KEY]
    # "member" last: a peer's own state may hold a "member" key, naming someone else
    # A state is a dict nested at most as deep as a shared value (the SDK checks it from depth 0).
    return _json({"me": {**plain_json(space.presence.state), "member": space.identity.member_id},
                  "online": [{**plain_json(state), "member": member}
                             for member, state in sorted(space.presence.peers.items())]})


async def create_invite(request: web.Request) -> web.Response:
    body = await _body(request) if request.can_read_body else {}
    try:
        link = await request.app[SPACE_KEY].create_invite(
            role=body.get("role", "writer"), uses=int(body.get("uses", 1)),
            expires_in=float(body.get("expires_in", 7 * 24 * 3600)))
    except NotPermittedError as exc:
        return _error(403, str(exc))
    except (TypeError, ValueError) as exc:
        return _error(400, str(exc))
    return web.json_response({"link": link}, status=201)


# --- running one member's process ---------------------------------------------------------------


async def open_space(home: Path, relay: str | None, invite: str | None) -> encspaces.Space:
    """This member's space: reopened from ``home``, or joined with ``invite``, or created on ``relay``."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity_file, space_file, data = home / "identity", home / "space.json", home / "data"
    if identity_file.exists():
        identity = encspaces.Identity.load(identity_file)
    else:
        identity = encspaces.Identity.generate()
        identity.save(identity_file)
    if space_file.exists():
        saved = json.loads(space_file.read_text())
        reopened: encspaces.Space = await encspaces.connect(saved["relay"], identity, saved["space"], data_dir=data)
        return reopened
    if invite is not None:
        space = await encspaces.join(invite, identity, data_dir=data)
    elif relay is not None:
        space = await encspaces.create_space(relay, identity, data_dir=data)
    else:
        raise SystemExit("no space yet in this home: give --relay to create one or --join LINK to join one")
    space_file.write_text(json.dumps({"relay": space.url, "space": space.id}))
    return space


async def serve(space: encspaces.Space, *, host: str, port: int, name: str | None,
                stop: asyncio.Event | None = None,
                on_ready: Callable[[int], Awaitable[None] | None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then shut down: streams end, the space closes."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    runner = web.AppRunner(create_app(space, name=name), handler_cancellation=True)
    await runner.setup()
    installed = []
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("task board of %s on http://%s:%s", space.identity.member_id, host, bound)
        if on_ready is not None:
            ready = on_ready(bound)
            if ready is not None:
                await ready
        await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await runner.cleanup()  # on_shutdown ends the event streams, on_cleanup closes the space


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.taskboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="this member's identity, store and space")
    parser.add_argument("--relay", help="create a new space on this relay (first run only)")
    parser.add_argument("--join", metavar="LINK", help="join a space with this invite link (first run only)")
    parser.add_argument("--name", help="the name others see in /presence")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        space = await open_space(args.home, args.relay, args.join)
        print(f"space {space.id}, member {space.identity.member_id}", flush=True)
        await serve(space, host=args.host, port=args.port, name=args.name)

    asyncio.run(run())
    return 0


__all__ = ["create_app", "main", "open_space", "serve"]
