"""A live connection's messages handled as websockets parses them, not by a task per message.

websockets' asyncio layer hands each message to the reading task through a queue and a future:
the session's task wakes once per message, a pass of the event loop each time. Most messages
of a live connection (a Submit whose checks need no waiting, a presence update) can be handled
right where the frame is parsed, in the transport's callback; that saved ~12 µs (2.5%) of
relay CPU per edit at bench.many_spaces' 0.5 edit/s (bench/README.md, "Live messages handled
as they are parsed").

A message is handled there only when nothing is behind: no earlier message still queued for
the session's task or being handled by it. Everything else (a message that must wait for the
backlog or a free in-flight place, one that is refused, a blob or proof request, a fragmented
message) goes through websockets' queue to the task, and so does every message after it until
the task has caught up. Messages are therefore handled in the order they arrived, and
backpressure is unchanged: when the task cannot take its next message, websockets' queue fills
and stops reading the socket.
"""

from __future__ import annotations

from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

# The session's handler of a live message: True if it handled it, False to queue it for the task.
InlineHandler = Callable[[bytes], bool]


class InlineConnection(ServerConnection):
    """A server connection whose data messages may be handled in ``data_received``.

    ``on_message`` is set by the session once the connection is live. ``behind`` counts the
    messages given to websockets' queue that the session's task has not finished with; the
    task calls ``message_done`` after each. The count runs from the connection's first
    message, so messages queued before the handler was set are counted too.
    """

    on_message: InlineHandler | None = None
    behind = 0
    spent = 0  # the handler's own count of its work since the socket was last read

    def data_received(self, data: bytes) -> None:
        self.spent = 0
        super().data_received(data)

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.BINARY, Opcode.TEXT):  # a message begins
            handler = self.on_message
            if handler is not None and not self.behind and event.opcode is Opcode.BINARY and event.fin:
                data = event.data
                if handler(data if isinstance(data, bytes) else bytes(data)):
                    return
            self.behind += 1
        super().process_event(event)

    def message_done(self) -> None:
        """The session's task is done with the message it read last."""
        self.behind -= 1
