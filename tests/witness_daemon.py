"""Talking to a real ``encspaces-witness`` (encspaces_witness.process.WitnessProcess) as a relay would."""

from __future__ import annotations

import aiohttp

from encspaces.core import merkle, note
from encspaces_witness.core import encode_add_checkpoint


async def submit(
    url: str, tree: merkle.MerkleTree, old: int, signed: note.SignedCheckpoint
) -> list[note.NoteSignature]:
    """POST add-checkpoint as a relay would; the cosignature lines the witness returns."""
    body = encode_add_checkpoint(old, tree.consistency_proof(old, signed.checkpoint.size), signed)
    async with aiohttp.ClientSession() as http, http.post(f"{url}/add-checkpoint", data=body) as response:
        data = await response.read()
        assert response.status == 200, (response.status, data)
        return note.parse_signature_lines(data)
