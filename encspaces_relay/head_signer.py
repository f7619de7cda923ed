"""One relay signature for the heads that rooms commit in the same pass of the event loop.

Why: with many spaces each committing one entry at a time, signing every room's head was one of
the relay's two Ed25519 operations per entry (bench/README.md, "Heads of many spaces under one
signature"). Rooms whose commits ask for a head in one pass of the loop share a batch signature
(``SignedHead.create_batch``: each head carries its inclusion proof); a room alone is signed as
before. Nothing waits for company: a batch is signed on the next pass of the loop, so a commit
waits one pass at most, and under load, when more rooms commit in each pass, it signs less per
head.
"""

from __future__ import annotations

import asyncio

import nacl.signing

from encspaces.core.head import MAX_HEAD_BATCH, SignedHead

_Request = tuple[tuple[bytes, int, bytes], "asyncio.Future[SignedHead]"]


class HeadSigner:
    """Signs ``(space, seq, head)`` requests in batches, one per pass of the running loop."""

    def __init__(self, key: nacl.signing.SigningKey) -> None:
        self._key = key
        self._pending: list[_Request] = []
        self.signatures = 0  # made so far (each covers one batch)
        self.heads = 0  # signed so far

    @property
    def waiting(self) -> int:
        """Heads asked for and not signed yet (they are signed on the loop's next pass)."""
        return len(self._pending)

    def sign(self, space: bytes, seq: int, head: bytes) -> asyncio.Future[SignedHead]:
        """The head signed, on the next pass of the loop, with whatever else was asked in this one."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SignedHead] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(((space, seq, head), future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_HEAD_BATCH):
            part = pending[start:start + MAX_HEAD_BATCH]
            try:
                signed = SignedHead.create_batch(self._key, [request for request, _ in part])
            except Exception as exc:  # a bug: every room waiting on this batch fails its commit
                for _, future in part:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.signatures += 1
            self.heads += len(part)
            for head, (_, future) in zip(signed, part, strict=True):
                if not future.done():  # (a room closed meanwhile)
                    future.set_result(head)


__all__ = ["HeadSigner"]
