"""One relay signature for many heads: those one group commit stores, or those asked for in one
pass of the event loop.

Why: with many spaces each committing one entry at a time, signing every room's head was one of
the relay's two Ed25519 operations per entry (bench/README.md, "Heads of many spaces under one
signature"). ``SignedHead.create_batch`` signs several heads at once (each head carries its
inclusion proof); a head alone is signed plainly.

Two ways in. The SQLite store's group commit signs the heads of every space in its transaction
just before writing them (``sign_now``): one signature per transaction, and no pass of the loop
spent waiting for it (bench/README.md, "Heads signed by the group commit"). A store with one
transaction per space (PostgreSQL), and a room delivering what another relay stored, ask with
``sign_soon``: the heads asked for in one pass of the loop are signed together on the next pass,
so a commit waits one pass at most and, under load, signs less per head.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nacl.signing

from encspaces.core.head import MAX_HEAD_BATCH, SignedHead

HeadRequest = tuple[bytes, int, bytes]  # (space, seq, head at seq)
_Request = tuple[HeadRequest, "asyncio.Future[SignedHead]"]


class HeadSigner:
    """Signs ``(space, seq, head)`` requests in batches of at most ``MAX_HEAD_BATCH``."""

    def __init__(self, key: nacl.signing.SigningKey) -> None:
        self._key = key
        self._pending: list[_Request] = []
        self.signatures = 0  # made so far (each covers one batch)
        self.heads = 0  # signed so far

    @property
    def waiting(self) -> int:
        """Heads asked for with ``sign`` and not signed yet (they are signed on the loop's next pass)."""
        return len(self._pending)

    def sign_now(self, requests: Sequence[HeadRequest]) -> list[SignedHead]:
        """Every head signed, in order, with as few signatures as batches allow."""
        signed: list[SignedHead] = []
        for start in range(0, len(requests), MAX_HEAD_BATCH):
            part = list(requests[start:start + MAX_HEAD_BATCH])
            signed += SignedHead.create_batch(self._key, part)
            self.signatures += 1
            self.heads += len(part)
        return signed

    def sign(self, space: bytes, seq: int, head: bytes) -> asyncio.Future[SignedHead]:
        """The head signed, on the next pass of the loop, with whatever else was asked in this one."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SignedHead] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(((space, seq, head), future))
        return future

    async def sign_soon(self, requests: Sequence[HeadRequest]) -> list[SignedHead]:
        """Every head signed on the next pass of the loop (``sign``), in order."""
        waiting = [self.sign(*request) for request in requests]
        try:
            # One batch signs them all, so only the first await waits; awaited in turn, not
            # gathered: gather's callbacks cost each commit one more pass of a busy loop.
            return [await future for future in waiting]
        except BaseException:
            for future in waiting:  # every outcome retrieved (a failed batch fails them all)
                if future.done() and not future.cancelled():
                    future.exception()
                else:
                    future.cancel()
            raise

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_HEAD_BATCH):
            part = pending[start:start + MAX_HEAD_BATCH]
            try:
                signed = self.sign_now([request for request, _ in part])
            except Exception as exc:  # a bug: every room waiting on this batch fails its commit
                for _, future in part:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for head, (_, future) in zip(signed, part, strict=True):
                if not future.done():  # (a room closed meanwhile)
                    future.set_result(head)


__all__ = ["HeadRequest", "HeadSigner"]
