"""The ``raw`` framing: the classic socket tutorial, boundaries and all missing.

One send is "a message" and the receiver takes whatever one ``recv(1024)``
returns as the next one: the client sends the command line as plain UTF-8, the
server sends the command's output bytes as they come (stdout and stderr mixed,
as the tutorial does) and nothing to mark the end. It talks unchanged to a
tutorial-style client or server, and it is wrong on purpose: two quick commands
merge into one recv ("sticky packets"), an output longer than the buffer is cut
and its rest arrives as the "reply" to the next command, and an empty output
sends nothing, so the tutorial client blocks.

Cannot carry: message boundaries, stderr as a separate stream, the exit status,
authentication, per-request timeouts. A client reply is one receive's worth of
output, followed by an :class:`Exit` with no status.
"""

from __future__ import annotations

from collections import deque

from netlab.errors import LocalProtocolError, RemoteProtocolError
from netlab.proto.framing.base import DEFAULT_MAX_FRAME, Capabilities, Framer, Role
from netlab.proto.messages import (
    END_OF_STREAM,
    NEED_DATA,
    STDOUT,
    Error,
    Exit,
    Message,
    Output,
    Request,
    _Sentinel,
)

TUTORIAL_BUFFER_SIZE = 1024


class RawFramer(Framer):
    """One receive is one message; nothing on the wire marks an end."""

    name = "raw"
    capabilities = Capabilities(
        message_boundaries=False,
        stderr=False,
        exit_status=False,
        binary_safe=True,
        authentication=False,
        request_timeout=False,
    )

    def __init__(self, role: Role, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(role, max_frame)
        self.receive_size = TUTORIAL_BUFFER_SIZE
        self._messages: deque[Message] = deque()
        self._request_id = 0  # client: the last request sent; server: the last received

    def encode(self, message: Message) -> bytes:
        kind = type(message)
        if kind is Output:
            return message.data  # type: ignore[union-attr]
        if kind is Request:
            self._request_id = message.request_id  # type: ignore[union-attr]
            return message.line.encode()  # type: ignore[union-attr]
        if kind is Exit:
            return b""
        if kind is Error:
            return f"error: {message.message}\n".encode()  # type: ignore[union-attr]
        raise LocalProtocolError(f"the raw framing cannot carry {kind.__name__}")

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._closed = True
            return
        if self.role is Role.SERVER:
            try:
                line = data.decode().strip()
            except UnicodeDecodeError as exc:
                raise RemoteProtocolError(f"a command must be UTF-8 (bad byte at offset {exc.start})") from None
            if line:
                self._request_id += 1
                self._messages.append(Request(self._request_id, (), line))
        else:
            self._messages.append(Output(self._request_id, STDOUT, data))
            self._messages.append(Exit(self._request_id, exit_status=None, stdout_bytes=len(data)))

    def next_message(self) -> Message | _Sentinel:
        if self._messages:
            return self._messages.popleft()
        return END_OF_STREAM if self._closed else NEED_DATA
