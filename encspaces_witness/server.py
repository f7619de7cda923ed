"""The witness's HTTP interface (aiohttp), over :class:`encspaces_witness.core.Witness`.

- ``POST /add-checkpoint``: C2SP tlog-witness. 200 with the cosignature line(s); 400, 403, 404,
  409 (body: the latest cosigned size and a newline, ``Content-Type: text/x.tlog.size``) or 422
  with a one-line plain-text reason.
- ``GET /<hex SHA-256 of the origin>/checkpoint``: the tlog-witness monitoring path, the gossip
  channel the relay does not control: the latest checkpoint this witness cosigned for that
  origin, with the relay's signature it verified and its own cosignature; 404 if none.
- ``GET /vkey``: the witness's verifier key (``name+id+base64(0x04 || key)``), for configuring it.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from encspaces.errors import WitnessError, WitnessSizeMismatchError

from .core import MAX_REQUEST, Witness

log = logging.getLogger("encspaces.witness")

WITNESS_KEY: web.AppKey[Witness] = web.AppKey("witness", Witness)


async def _add_checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS_KEY]
    body = await request.read()
    try:
        # SQLite commits with fsync: off the event loop. The core serialises requests itself.
        lines = await asyncio.to_thread(witness.add_checkpoint, body)
    except WitnessSizeMismatchError as exc:
        return web.Response(status=409, body=f"{exc.latest_size}\n".encode(), content_type="text/x.tlog.size")
    except WitnessError as exc:
        log.info("add-checkpoint refused (%d): %s", exc.status, exc)
        return web.Response(status=exc.status, text=f"{exc}\n")
    return web.Response(status=200, body="".join(s.line() for s in lines).encode(), content_type="text/plain")


async def _checkpoint(request: web.Request) -> web.Response:
    witness = request.app[WITNESS_KEY]
    text = request.match_info["origin_hash"]
    if len(text) != 64 or text != text.lower():
        raise web.HTTPNotFound()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise web.HTTPNotFound() from None
    found = await asyncio.to_thread(witness.latest_checkpoint, key)
    if found is None:
        raise web.HTTPNotFound(text="this witness never cosigned a checkpoint for that origin\n")
    return web.Response(body=found, content_type="text/plain", charset="utf-8")


async def _vkey(request: web.Request) -> web.Response:
    return web.Response(text=request.app[WITNESS_KEY].signer.verifier().vkey() + "\n")


def make_app(witness: Witness) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST)
    app[WITNESS_KEY] = witness
    app.router.add_post("/add-checkpoint", _add_checkpoint)
    app.router.add_get("/{origin_hash}/checkpoint", _checkpoint)
    app.router.add_get("/vkey", _vkey)
    return app


async def start(witness: Witness, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve until the runner is cleaned up; returns it and the bound port (for ``port`` 0)."""
    runner = web.AppRunner(make_app(witness), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes no public accessor for the bound port
    bound = port
    if isinstance(server, asyncio.base_events.Server) and server.sockets:
        bound = int(server.sockets[0].getsockname()[1])
    return runner, bound
