"""What the test suites share: the one way to start a relay and to make members.

- ``RelayHandle``: a restartable in-process relay (any ``RelayServer`` subclass, any config);
  the ``relay`` fixture (one honest relay) and ``make_relay`` (several, or lying ones) build on it.
- Members of a space, each with its own data dir under the test's tmp dir: ``make_members``
  (n members at once, roles optional), ``Members`` (one by one; the ``members`` fixture), and
  ``settle``; ``RawMember``, a member's own client without ``Space``, for dishonest members.
- Lying relays, subclasses of the real one over a real websocket: ``TamperingRelay``,
  ``ForkingRelay``, ``InterceptingRelay`` (submissions dropped or answered by the test).
- ``wait_for``: a hang guard for conditions (never a timing assertion).

Suites import this as ``tests.support`` (the project root is on pytest's path); a suite's
conftest.py re-exports the fixtures it uses.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import nacl.signing
import pycrdt
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

import encspaces
from encspaces import errors
from encspaces.core import crypto
from encspaces.core.client_ids import NONCE_SIZE, data_plaintext, derive_client_id
from encspaces.core.encoding import DEFAULT_MAX_MESSAGE, pack
from encspaces.core.entry import Entry, Kind, build_entry
from encspaces.core.head import SignedHead, next_head
from encspaces.core.identity import Identity
from encspaces.core.messages import Entries, Welcome
from encspaces.core.presence import CTX_PRESENCE_SIG, PRESENCE_VERSION
from encspaces.core.session import Acked, ClientSession, Event, Notice, Send, SessionState
from encspaces.core.verifier import LogVerifier
from encspaces_relay.config import RelayConfig
from encspaces_relay.handshake import Admission
from encspaces_relay.room import Room, Submission
from encspaces_relay.server import RelayServer
from encspaces_relay.store import DB_FILE


class RelayHandle:
    """A relay on 127.0.0.1 that a test can stop and start again on the same port and data dir."""

    def __init__(
        self, data_dir: Path, cls: type[RelayServer] = RelayServer, *,
        signing_key: nacl.signing.SigningKey | None = None, **overrides: Any,
    ) -> None:
        self.data_dir = data_dir
        self.cls = cls
        self.signing_key = signing_key  # None: the one in its data dir (made on first start)
        self.overrides = overrides
        self.port = 0
        self.server: RelayServer | None = None

    async def start(self) -> RelayServer:
        config = RelayConfig(data_dir=self.data_dir, port=self.port, **self.overrides)
        self.server = self.cls(config, signing_key=self.signing_key)
        self.port = await self.server.start()
        return self.server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def back_up(self, to: Path) -> None:
        """Stop, copy the data dir to ``to`` (as an operator's backup would), start again."""
        await self.stop()
        shutil.copytree(self.data_dir, to)
        await self.start()

    async def restart_on(self, data: Path) -> None:
        """Stop, replace the data dir with a copy of ``data`` (an old backup, or a second branch), start again."""
        await self.stop()
        shutil.rmtree(self.data_dir)
        shutil.copytree(data, self.data_dir)
        await self.start()


    def entries(self) -> list[tuple[int, Entry]]:
        """Every entry the relay stored, (seq, entry), read from its database as an onlooker would."""
        with sqlite3.connect(f"file:{self.data_dir / DB_FILE}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT seq, raw FROM entries ORDER BY seq").fetchall()
        return [(seq, Entry.decode(bytes(raw))) for seq, raw in rows]

    def blob_files(self, space: encspaces.Space) -> list[Path]:
        """The files the relay keeps a space's blobs in."""
        folder = self.data_dir / "blobs" / space.space_bytes.hex()
        return sorted(folder.iterdir()) if folder.exists() else []


class Relays:
    """The relays one test starts, stopped together at its end: the first one's data is in
    ``root / "relay"``, the next ones' in ``relay1``, ``relay2``... unless ``data_dir`` is given."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[RelayHandle] = []

    async def start(
        self, cls: type[RelayServer] = RelayServer, data_dir: Path | None = None, **overrides: Any
    ) -> RelayHandle:
        name = "relay" if not self.started else f"relay{len(self.started)}"
        handle = RelayHandle(data_dir or self.root / name, cls, **overrides)
        self.started.append(handle)
        await handle.start()
        return handle

    async def stop(self) -> None:
        for handle in self.started:
            await handle.stop()


RelayFactory = Callable[..., Awaitable[RelayHandle]]


@pytest.fixture
async def make_relay(tmp_path: Path) -> AsyncIterator[RelayFactory]:
    """Start relays: ``await make_relay(LyingRelay, **config)``; all are stopped at the end."""
    relays = Relays(tmp_path)
    try:
        yield relays.start
    finally:
        await relays.stop()


@pytest.fixture
async def relay(make_relay: RelayFactory) -> RelayHandle:
    """One honest relay for the test, stopped at the end."""
    return await make_relay()


# --- members --------------------------------------------------------------------------------------


async def make_members(
    url: str, tmp_path: Path, n: int, options: encspaces.SpaceOptions | None = None,
    roles: Sequence[str] | None = None,
) -> tuple[list[encspaces.Identity], list[encspaces.Space]]:
    """A space created by the first of ``n`` fresh identities, the others added (as writers, or with
    ``roles``, one per added member) and then connected; member i's data dir is ``tmp_path / f"m{i}"``."""
    roles = ["writer"] * (n - 1) if roles is None else list(roles)
    assert len(roles) == n - 1, "one role per added member"
    identities = [encspaces.Identity.generate() for _ in range(n)]
    creator = await encspaces.create_space(url, identities[0], data_dir=tmp_path / "m0", options=options)
    for other, role in zip(identities[1:], roles, strict=True):
        await creator.add_member(other.public, role)
    spaces = [creator]
    for i, other in enumerate(identities[1:], start=1):
        spaces.append(await encspaces.connect(url, other, creator.id, data_dir=tmp_path / f"m{i}", options=options))
    return identities, spaces


async def space_for_a_child(
    url: str, tmp_path: Path,
) -> tuple[encspaces.Identity, encspaces.Identity, str]:
    """(alice, bob, space id): alice creates a space in ``tmp_path / "a"`` with bob in it and closes
    it, her identity saved to ``tmp_path / "alice.key"`` for a child process to open it with."""
    alice_id, bob_id = encspaces.Identity.generate(), encspaces.Identity.generate()
    alice_id.save(tmp_path / "alice.key")
    alice = await encspaces.create_space(url, alice_id, data_dir=tmp_path / "a")
    await alice.add_member(bob_id.public)
    await alice.close()
    return alice_id, bob_id, alice.id


async def start_child(
    source: str, url: str, tmp_path: Path, space_id: str, env: dict[str, str] | None = None,
    stderr: bool = False,
) -> asyncio.subprocess.Process:
    """Run the script ``source`` as alice's device of ``space_for_a_child`` in a process of its own
    (arguments: relay URL, her key file, the space id, her data dir); its stdout is piped."""
    script = tmp_path / "child.py"
    script.write_text(source)
    return await asyncio.create_subprocess_exec(
        sys.executable, str(script), url, str(tmp_path / "alice.key"), space_id, str(tmp_path / "a"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE if stderr else None,
        env={**os.environ, **(env or {})},
    )


async def settle(spaces: list[encspaces.Space]) -> None:
    """Every member's edits in the log, and every member caught up with all of them."""
    for space in spaces:
        await space.sync()
    newest = max(space.seq for space in spaces)
    for space in spaces:
        await space.wait_for_seq(newest)


class Members:
    """Members of one space, made one by one, all closed at the end; member i's data dir is ``root / f"m{i}"``."""

    def __init__(self, relay: RelayHandle, root: Path, options: encspaces.SpaceOptions | None = None) -> None:
        self.relay = relay
        self.root = root
        self.options = options
        self.spaces: list[encspaces.Space] = []

    def data_dir(self, space: encspaces.Space) -> Path:
        return self.root / f"m{self.spaces.index(space)}"

    def folder(self, space: encspaces.Space) -> Path:
        """The space's own folder in its member's data dir (its local store, spooled uploads)."""
        return self.data_dir(space) / space.space_bytes.hex()

    async def create(self) -> encspaces.Space:
        identity = encspaces.Identity.generate()
        space = await encspaces.create_space(self.relay.url, identity, data_dir=self.root / f"m{len(self.spaces)}",
                                             options=self.options)
        self.spaces.append(space)
        return space

    async def join(self, creator: encspaces.Space, role: str = "writer") -> encspaces.Space:
        """A new member added by ``creator``, connected and caught up with it."""
        identity = encspaces.Identity.generate()
        await creator.add_member(identity.public, role)
        space = await encspaces.connect(self.relay.url, identity, creator.id,
                                        data_dir=self.root / f"m{len(self.spaces)}", options=self.options)
        self.spaces.append(space)
        await space.wait_for_seq(creator.seq)
        return space

    async def close(self) -> None:
        for space in self.spaces:
            await space.close()


@pytest.fixture
async def members(relay: RelayHandle, tmp_path: Path) -> AsyncIterator[Members]:
    """Members of one space on the test's relay."""
    group = Members(relay, tmp_path)
    try:
        yield group
    finally:
        await group.close()


@pytest.fixture
async def other_members(members: Members, tmp_path: Path) -> AsyncIterator[Members]:
    """Members of another space on the same relay."""
    group = Members(members.relay, tmp_path / "other")
    try:
        yield group
    finally:
        await group.close()


# --- lying relays -----------------------------------------------------------------------------------


class TamperingRelay(RelayServer):
    """Honest until ``armed``; then flips a byte of the ciphertext of every live entry it serves
    (heads re-signed over the tampered entries, so only the body digest gives it away)."""

    armed = False

    def frames_for_entries(
        self, space: bytes, first_seq: int, entries: list[bytes], head: SignedHead
    ) -> Sequence[bytes]:
        if not self.armed:
            return super().frames_for_entries(space, first_seq, entries, head)
        e = Entry.decode(entries[-1])
        body = bytearray(e.body)
        body[-1] ^= 1
        tampered = [*entries[:-1], pack([e.header_bytes, e.body_hash, e.signature, bytes(body)])]
        h = self.rooms[space].state.heads[first_seq - 1]
        for i, raw in enumerate(tampered):
            h = next_head(h, first_seq + i, Entry.decode(raw).digest())
        signed = SignedHead.create(self.signing_key, space, first_seq + len(tampered) - 1, h)
        return [Entries(first_seq, tampered, signed).encode()]


class ForkingRelay(RelayServer):
    """Welcomes returning clients with a head re-signed over another hash at their own seq (a fork)."""

    def encode_welcome(self, space: bytes, head: SignedHead, anchor: SignedHead | None) -> bytes:
        if anchor is None:
            return super().encode_welcome(space, head, anchor)
        forged = SignedHead.create(self.signing_key, space, anchor.seq, bytes(32))
        return Welcome(head, forged).encode()


Intercept = Callable[[Room, Submission], bool]


class InterceptingRelay(RelayServer):
    """The real relay, whose rooms first hand every submission to ``intercept`` (when set): it
    returns True when it dealt with the submission itself (dropped or answered it), False to let
    the room sequence it as usual."""

    intercept: Intercept | None = None

    async def open_room(self, admission: Admission, address: str = "") -> Room:
        room = await super().open_room(admission, address)
        if getattr(room, "_intercepted", False):
            return room
        honest = room.submit

        def submit(submission: Submission) -> bool:
            if self.intercept is not None and self.intercept(room, submission):
                return True
            return honest(submission)

        room.submit = submit  # type: ignore[method-assign]
        room._intercepted = True  # type: ignore[attr-defined]
        return room


def swallow(member: bytes, into: list[Submission]) -> Intercept:
    """Read ``member``'s submissions and drop them without an answer (kept in ``into``): its entries
    stay unverified in its outbox, as behind a relay that lost them."""

    def intercept(room: Room, submission: Submission) -> bool:
        if submission.peer.member != member:
            return False
        into.append(submission)
        submission.peer.inflight.release()
        return True

    return intercept


async def wait_for(condition: Callable[[], bool], what: str = "condition", timeout: float = 15.0) -> None:
    """Poll until ``condition()`` holds; fails the test (not a timing assertion) if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def assert_fork_at(error: BaseException | None, seq: int, role: str) -> None:
    """A ForkError naming the held head at ``seq`` (from the relay's ``role`` message), caught by
    whichever came first: a log through ``seq`` with another head there, or another head the
    relay signed for ``seq`` (the next ack's or welcome's, which may arrive before the frame)."""
    assert isinstance(error, errors.ForkError), error
    message = str(error)
    assert f"at seq {seq} (in its {role})" in message or (
        f"two heads at seq {seq}," in message and f"(in its {role})" in message), message


class AuthoredDoc:
    """A document in which a test crafts updates that ``identity`` may send: its client id is
    derived from that key and a nonce of its own, as a session's is (encspaces.core.client_ids).
    ``payload`` is the data entry's plaintext for one of its updates."""

    def __init__(self, identity: Identity, nonce: bytes | None = None) -> None:
        self.nonce = crypto.random_bytes(NONCE_SIZE) if nonce is None else nonce
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=derive_client_id(identity.public.sign_key, self.nonce))

    def payload(self, update: bytes) -> bytes:
        return data_plaintext(self.nonce, update)


class RawMember:
    """A (possibly dishonest) member's own client without ``Space``: a raw ``ClientSession`` over a
    real websocket to the real relay, which submits exactly the entry bytes a test builds.

    ``connect`` handshakes and catches up (the ``LogVerifier`` learns the member's keys);
    ``entry`` builds a correctly numbered and chained entry with the core (``build_entry``), any
    field overridable; ``submit`` sends exact bytes and returns the relay's answer (``Acked`` or a
    ``Notice``), or raises the ``RelayError`` with which the relay closed the connection.
    """

    def __init__(self, url: str, identity: Identity, space: bytes) -> None:
        self.url = url
        self.identity = identity
        self.verifier = LogVerifier(space, identity)
        self.session = ClientSession(identity, self.verifier)
        self._ws: ClientConnection | None = None
        self._numbered = 0  # the newest author_seq ``entry`` handed out

    async def __aenter__(self) -> RawMember:
        self._ws = await ws_connect(self.url, compression=None, max_size=DEFAULT_MAX_MESSAGE)
        while self.session.state is not SessionState.LIVE:
            await self._receive()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def _receive(self) -> list[Event]:
        assert self._ws is not None
        message = await asyncio.wait_for(self._ws.recv(), 15)
        assert isinstance(message, bytes)
        events = self.session.receive(message, int(time.time() * 1000))
        for event in events:
            if isinstance(event, Send):
                await self._ws.send(event.data)
        return events

    def entry(self, kind: Kind, payload: bytes, **fields: Any) -> Entry:
        """The member's next entry (numbered after the verified log and any entry built before) on top
        of the verified log; ``fields`` override ``build_entry``'s."""
        state = self.verifier.state
        args: dict[str, Any] = {
            "space": self.verifier.space,
            "author_seq": max(self._numbered, state.author_seqs.get(self.identity.public.sign_key, 0)) + 1,
            "epoch": state.epoch,
            "kind": kind,
            "parent_seq": self.verifier.seq,
            "parent_hash": self.verifier.head,
            "payload": payload,
            "epoch_key": self.verifier.epoch_keys.get(state.epoch),
        }
        args.update(fields)
        self._numbered = args["author_seq"]
        return build_entry(self.identity, **args)

    async def submit(self, *entries: Entry) -> Acked | Notice:
        """Send the entries' exact bytes in one submission; the relay's ack or notice for it."""
        assert self._ws is not None
        await self._ws.send(self.session.submit([e.raw for e in entries]))
        while True:
            for event in await self._receive():
                if isinstance(event, (Acked, Notice)):
                    return event

    async def commit(self, *entries: Entry) -> int:
        """Submit entries the relay must accept; the seq it gave the last of them."""
        answer = await self.submit(*entries)
        assert isinstance(answer, Acked), f"the relay did not accept the entries: {answer}"
        return max(seq for _, seq in answer.results)

    async def presence(self, data: bytes) -> None:
        """Send a (sealed) presence message to the other members."""
        assert self._ws is not None
        await self._ws.send(self.session.presence(data))


def sealed_presence(raw: RawMember, state: bytes, counter: int) -> bytes:
    """A presence message with ``state`` as its packed state, exactly (msgpack's own packer
    refuses to nest past 511: another client's need not), sealed and signed as the SDK's are."""
    verifier = raw.verifier
    epoch = verifier.state.epoch
    head = None if verifier.latest_head is None else verifier.latest_head.encode()
    nonce = crypto.random_nonce()
    header = pack([PRESENCE_VERSION, verifier.space, raw.identity.public.sign_key, epoch, nonce])
    body = crypto.aead_seal(verifier.epoch_keys[epoch], nonce,
                            pack([counter, epoch, head, int(time.time() * 1000), [], state]), header)
    return pack([header, body, raw.identity.sign(CTX_PRESENCE_SIG, header + body)])


def nest(at: Any, depth: int) -> None:
    """Put lists and maps ``depth`` deep under ``at`` (a map in a document; the API refuses past 64)."""
    for i in range(depth):
        inner: Any = pycrdt.Array() if i % 2 else pycrdt.Map()
        if isinstance(at, pycrdt.Map):
            at["a"] = inner
        else:
            at.append(inner)
        at = inner
