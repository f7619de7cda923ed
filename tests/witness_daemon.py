"""The real ``encspaces-witness`` daemon in a subprocess, for tests that talk to it over HTTP."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from encspaces.core import merkle, note
from encspaces.core.identity import member_id
from encspaces_witness.core import encode_add_checkpoint


@dataclass
class RunningWitness:
    url: str
    vkey: str
    process: asyncio.subprocess.Process

    @property
    def verifier(self) -> note.CosignatureVerifier:
        parsed = note.parse_vkey(self.vkey)
        assert isinstance(parsed, note.CosignatureVerifier)
        return parsed


@asynccontextmanager
async def running_witness(data_dir: Path, relay_key: bytes, port: int = 0) -> AsyncIterator[RunningWitness]:
    """Start ``python -m encspaces_witness`` serving the relay with ``relay_key``; stop it after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "encspaces_witness", "--port", str(port), "--data-dir", str(data_dir),
        "--log-key", member_id(relay_key), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        vkey = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()
        url = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()
        assert vkey and url.startswith("http://"), (vkey, url)
        yield RunningWitness(url, vkey, process)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def submit(
    url: str, tree: merkle.MerkleTree, old: int, signed: note.SignedCheckpoint
) -> list[note.NoteSignature]:
    """POST add-checkpoint as a relay would; the cosignature lines the witness returns."""
    body = encode_add_checkpoint(old, tree.consistency_proof(old, signed.checkpoint.size), signed)
    async with aiohttp.ClientSession() as http, http.post(f"{url}/add-checkpoint", data=body) as response:
        data = await response.read()
        assert response.status == 200, (response.status, data)
        return note.parse_signature_lines(data)
