"""``encspaces edit`` in a real pseudo-terminal: it opens, takes typing, and Ctrl+Q saves and quits."""

from __future__ import annotations

import asyncio
import os
import select
import struct
import sys
import time

import pytest

from encspaces_relay.process import RelayProcess

from .conftest import COMMAND, User, member_pair

pty = pytest.importorskip("pty")
fcntl = pytest.importorskip("fcntl")
termios = pytest.importorskip("termios")


def drive_editor(user: User, *args: str, keys: bytes) -> tuple[int, bytes]:
    """Run the editor in a 100x30 terminal; type ``keys`` once it shows its status, then Ctrl+Q."""
    env = {**os.environ, "ENCSPACES_HOME": str(user.home), "TERM": "xterm-256color"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the editor
        try:
            os.execve(COMMAND[0], [*COMMAND, "edit", *args], env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    screen = b""

    def read_until(done: bytes | None, seconds: float) -> None:
        nonlocal screen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (done is None or done not in screen):
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                screen += data

    try:
        read_until(b"verified through seq", 30)
        assert b"verified through seq" in screen, screen[-2000:]
        os.write(fd, keys)
        read_until(keys[-3:], 10)  # echoed on the screen: in the document
        os.write(fd, b"\x11")  # Ctrl+Q
        read_until(None, 15)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), screen


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
async def test_edit_in_a_terminal_then_cat(relay: RelayProcess, alice: User, bob: User) -> None:
    await member_pair(relay, alice, bob)
    code, screen = await asyncio.to_thread(drive_editor, alice, "notes", keys=b"typed in the editor")
    assert code == 0, screen[-2000:]
    assert await bob.ok("cat", "notes") == "typed in the editor\n"
