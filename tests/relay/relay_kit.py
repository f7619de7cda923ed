"""Test helpers for the relay: spaces built by hand and a raw websocket client.

They speak the wire protocol directly with the core modules (messages, entry, verifier),
so the relay is tested without the client SDK, and a test can send anything at all.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from encspaces.core import crypto
from encspaces.core.entry import Entry, Kind, build_entry
from encspaces.core.head import next_head
from encspaces.core.identity import Identity
from encspaces.core.log_state import space_id_of
from encspaces.core.membership import Role, add_member_body, genesis_body
from encspaces.core.messages import (
    Ack,
    AuthStatement,
    Challenge,
    Entries,
    Error,
    Hello,
    Message,
    Submit,
    Welcome,
    decode_message,
)
from encspaces.core.verifier import LogVerifier
from encspaces_relay.server import RelayServer

M = TypeVar("M", bound=Message)

# What the relay suite's ``make_relay`` fixture hands out (tests/relay/conftest.py): a coroutine
# that starts a real relay and returns its server. Defined here, not in the conftest, because a
# test module cannot import a conftest by name when another suite's conftest was loaded first.
RelayFactory = Callable[..., Awaitable[RelayServer]]

# Generous: only reached when something is already broken, so a hung test fails instead of hanging.
WAIT = 15.0


def url_of(server: RelayServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


class SpaceBuilder:
    """A space's genesis and correctly numbered entries, built without a relay.

    Every non-genesis entry names seq 1 (the genesis head) as its parent: any earlier head is
    valid, so entries of many authors can be built independently of the order they land in.
    """

    def __init__(self, relay_key: bytes, creator: Identity | None = None) -> None:
        self.relay_key = relay_key
        self.creator = creator or Identity.generate()
        self.epoch_key = crypto.random_key()
        self.genesis = build_entry(
            self.creator, space=b"", author_seq=1, epoch=1, kind=Kind.GENESIS, parent_seq=0,
            parent_hash=crypto.ZERO_HASH, payload=genesis_body(self.creator.public, relay_key, self.epoch_key),
            epoch_key=None,
        )
        self.space = space_id_of(self.genesis.raw)
        self.h1 = next_head(crypto.ZERO_HASH, 1, self.genesis.digest())
        self._next: dict[bytes, int] = {self.creator.public.sign_key: 2}

    def next_author_seq(self, author: Identity) -> int:
        return self._next.get(author.public.sign_key, 1)

    def add_member(self, new: Identity, role: Role = Role.WRITER) -> Entry:
        return self._entry(self.creator, Kind.ADD_MEMBER, add_member_body(new.public, role, {1: self.epoch_key}))

    def data(self, author: Identity, payload: bytes = b"hello", *, author_seq: int | None = None) -> Entry:
        return self._entry(author, Kind.DATA, payload, author_seq=author_seq)

    def _entry(self, author: Identity, kind: Kind, payload: bytes, *, author_seq: int | None = None) -> Entry:
        key = author.public.sign_key
        n = self._next.get(key, 1) if author_seq is None else author_seq
        if author_seq is None:
            self._next[key] = n + 1
        return build_entry(
            author, space=self.space, author_seq=n, epoch=1, kind=kind, parent_seq=1, parent_hash=self.h1,
            payload=payload, epoch_key=self.epoch_key if kind is Kind.DATA else None,
        )


def make_hello(
    challenge: Challenge,
    identity: Identity,
    space: bytes,
    *,
    since_seq: int = 0,
    since_head: bytes = crypto.ZERO_HASH,
    genesis: bytes | None = None,
    time_ms: int | None = None,
    nonce: bytes | None = None,
    relay_key: bytes | None = None,
) -> Hello:
    auth = AuthStatement(
        space=space,
        member=identity.public.sign_key,
        relay_key=challenge.relay_key if relay_key is None else relay_key,
        nonce=challenge.nonce if nonce is None else nonce,
        time_ms=int(time.time() * 1000) if time_ms is None else time_ms,
    ).encode()
    return Hello(auth, identity.sign(crypto.CTX_AUTH, auth), since_seq, since_head, genesis)


@dataclass
class RawClient:
    """One websocket to the relay, with every decoded message it received kept in order."""

    ws: ClientConnection
    challenge: Challenge
    inbox: list[Message] = field(default_factory=list)

    @classmethod
    async def open(cls, url: str, *, max_size: int | None = None, sock: socket.socket | None = None) -> RawClient:
        extra: dict[str, Any] = {} if sock is None else {"sock": sock}
        ws = await connect(url, compression=None, proxy=None, max_size=max_size, **extra)
        first = decode_message(await _recv(ws), max_size=1 << 30)
        assert isinstance(first, Challenge), first
        return cls(ws, first)

    async def send(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self) -> Message:
        message = decode_message(await _recv(self.ws), max_size=1 << 30)
        self.inbox.append(message)
        return message

    async def expect(self, kind: type[M]) -> M:
        message = await self.recv()
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
        return message

    async def expect_refusal(self, code: str) -> Error:
        """The relay's Error frame with ``code``, then the close (policy violation or as given)."""
        while True:
            message = await self.recv()
            if isinstance(message, Error):
                break
        assert message.code == code, f"expected error {code!r}, got {message.code!r}: {message.message}"
        assert message.fatal
        await self.expect_closed()
        return message

    async def expect_closed(self) -> None:
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    await self.ws.recv()
        except ConnectionClosed:
            return

    async def close(self) -> None:
        await self.ws.close()


async def _recv(ws: ClientConnection) -> bytes:
    async with asyncio.timeout(WAIT):
        data = await ws.recv()
    assert isinstance(data, bytes), f"relay sent a text frame: {data!r}"
    return data


@dataclass
class Member:
    """An admitted connection of one member, verifying everything the relay sends it."""

    client: RawClient
    identity: Identity
    space: bytes
    welcome: Welcome
    verifier: LogVerifier
    frames: list[Entries] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)

    @property
    def seq(self) -> int:
        return self.verifier.seq

    async def recv(self) -> Message:
        message = await self.client.recv()
        if isinstance(message, Entries):
            self.frames.append(message)
            self.verifier.verify_frame(message)
        elif isinstance(message, Ack):
            self.acks.append(message)
        elif isinstance(message, Error):
            raise AssertionError(f"relay refused: {message.code}: {message.message}")
        return message

    async def submit(self, entries: Iterable[Entry]) -> Ack:
        """Submit and wait for the Ack (verifying any Entries frames that arrive first)."""
        await self.send_submit(entries)
        return await self.next_ack()

    async def send_submit(self, entries: Iterable[Entry]) -> None:
        await self.client.send(Submit([e.raw for e in entries]).encode())

    async def next_ack(self) -> Ack:
        seen = len(self.acks)
        while len(self.acks) == seen:
            await self.recv()
        return self.acks[seen]

    async def sync_to(self, seq: int) -> None:
        """Receive until the verified log reaches ``seq``."""
        while self.verifier.seq < seq:
            await self.recv()

    async def close(self) -> None:
        await self.client.close()


async def join(
    url: str,
    builder: SpaceBuilder,
    identity: Identity,
    *,
    create: bool = False,
    verifier: LogVerifier | None = None,
    sock: socket.socket | None = None,
) -> Member:
    """Connect ``identity`` to the builder's space, check the Welcome and catch up to its head
    (over ``sock`` when given: a socket already connected to the relay)."""
    client = await RawClient.open(url, sock=sock)
    verifier = verifier or LogVerifier(builder.space, identity, builder.relay_key)
    hello = make_hello(client.challenge, identity, builder.space, since_seq=verifier.seq,
                       since_head=verifier.head, genesis=builder.genesis.raw if create else None)
    await client.send(hello.encode())
    welcome = await client.expect(Welcome)
    verifier.check_welcome(welcome)
    member = Member(client, identity, builder.space, welcome, verifier)
    await member.sync_to(welcome.head.seq)
    return member


async def refused_hello(url: str, make: Callable[[Challenge], Hello], code: str) -> Error:
    """Send the hello ``make`` builds from the challenge; expect refusal with ``code``."""
    client = await RawClient.open(url)
    await client.send(make(client.challenge).encode())
    return await client.expect_refusal(code)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the event loop until ``condition`` holds (no timing assumption, only a hang guard)."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


class Gate:
    """Hold the first call of an async method until released: builds races on purpose."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.released = asyncio.Event()
        self.calls = 0

    def wrap(self, target: object, name: str) -> None:
        original: Callable[..., Awaitable[Any]] = getattr(target, name)

        async def gated(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == 1:
                self.entered.set()
                await self.released.wait()
            return await original(*args, **kwargs)

        setattr(target, name, gated)

    async def wait_entered(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.entered.wait()

    def release(self) -> None:
        self.released.set()
