"""The ``ack`` framing: the tutorial's fix for sticky packets, in lock-step.

Every message, in either direction, goes in three steps::

    sender:   <size in decimal>\\n      e.g. b"312\\n"
    receiver: ok\\n                     "ready for the body"
    sender:   <size bytes of body>

The sender may not send the body (or its next message) before the ``ok``, so
two messages can never merge, and the receiver reads exactly ``size`` bytes, so
a message can never be cut short: the price is one extra round trip per
message. Payloads are text as in ``raw``: the client sends the command line;
the server collects the whole output (stdout then stderr, as the tutorial
concatenates them) and sends it as one message when the command ends. The
client streams a long reply as several Output chunks without buffering it.

Because the size goes before the body, the server must hold a whole reply in
memory: it keeps at most :data:`MAX_SERVER_REPLY` bytes per connection, drops
the rest, and ends such a reply with one line saying so (the framing has no
other channel for it).

Cannot carry: stderr as a separate stream, the exit status, authentication,
per-request timeouts.
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

ACK = b"ok\n"
MAX_HEADER_DIGITS = 12
#: A reply is streamed, never buffered whole, so it may be far above max_frame.
MAX_REPLY_SIZE = 1 << 40
#: The most output a server holds for one reply (the whole reply waits in memory for its size line).
MAX_SERVER_REPLY = 8 * 1024 * 1024


class AckFramer(Framer):
    """Size header, acknowledgement, body: one round trip per message."""

    name = "ack"
    capabilities = Capabilities(
        message_boundaries=True,
        stderr=False,
        exit_status=False,
        binary_safe=True,
        authentication=False,
        request_timeout=False,
    )

    def __init__(self, role: Role, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(role, max_frame)
        self._buffer = bytearray()
        self._messages: deque[Message] = deque()
        self._outgoing_bodies: deque[bytes] = deque()  # bodies whose header is sent
        self._awaiting_ack = False
        self._to_send = bytearray()
        self._reply_parts: list[bytes] = []  # server: output collected until Exit
        self._reply_size = 0  # bytes in _reply_parts
        self._reply_dropped = 0  # bytes beyond MAX_SERVER_REPLY
        self._body_remaining: int | None = None  # receiving a body of this many bytes
        self._body_parts: list[bytes] = []
        self._request_id = 0  # client: the last request sent; server: the last received

    @property
    def awaiting_ack(self) -> bool:
        """True while a size line is sent and its ``ok`` has not arrived."""
        return self._awaiting_ack

    # -- sending ---------------------------------------------------------------

    def encode(self, message: Message) -> bytes:
        kind = type(message)
        if kind is Output:
            data = message.data  # type: ignore[union-attr]
            room = MAX_SERVER_REPLY - self._reply_size
            if len(data) > room:
                self._reply_dropped += len(data) - max(room, 0)
                data = data[: max(room, 0)]
            if data:
                self._reply_parts.append(data)
                self._reply_size += len(data)
            return b""
        if kind is Request:
            self._request_id = message.request_id  # type: ignore[union-attr]
            body = message.line.encode()  # type: ignore[union-attr]
        elif kind is Exit:
            if self._reply_dropped:
                self._reply_parts.append(
                    b"\nnetlab: reply cut at %d bytes, %d more dropped: the ack framing holds a whole reply in "
                    b"memory; use the length framing for large output\n" % (MAX_SERVER_REPLY, self._reply_dropped))
            body = b"".join(self._reply_parts)
            self._clear_reply()
        elif kind is Error:
            self._clear_reply()
            body = f"error: {message.message}\n".encode()  # type: ignore[union-attr]
        else:
            raise LocalProtocolError(f"the ack framing cannot carry {kind.__name__}")
        self._outgoing_bodies.append(body)
        if self._awaiting_ack:
            return b""
        return self._send_next_header()

    def _clear_reply(self) -> None:
        self._reply_parts.clear()
        self._reply_size = self._reply_dropped = 0

    def _send_next_header(self) -> bytes:
        self._awaiting_ack = True
        return b"%d\n" % len(self._outgoing_bodies[0])

    def data_to_send(self) -> bytes:
        data = bytes(self._to_send)
        self._to_send.clear()
        return data

    # -- receiving -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._closed = True
            return
        self._buffer += data
        self._parse()

    def _parse(self) -> None:
        buffer = self._buffer
        while buffer:
            if self._body_remaining is not None:
                self._take_body()
                continue
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_DIGITS:
                    raise RemoteProtocolError("expected a decimal size line or 'ok', got a long line without newline")
                return
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line == b"ok":
                self._on_ack()
            else:
                self._on_header(line)

    def _on_ack(self) -> None:
        if not self._awaiting_ack:
            raise RemoteProtocolError("an 'ok' arrived when no message was waiting for one")
        self._to_send += self._outgoing_bodies.popleft()
        self._awaiting_ack = False
        if self._outgoing_bodies:
            self._to_send += self._send_next_header()

    def _on_header(self, line: bytes) -> None:
        if not line.isdigit() or len(line) > MAX_HEADER_DIGITS:
            raise RemoteProtocolError(f"expected a decimal size line or 'ok', got {line[:20]!r}")
        size = int(line)
        limit = self.max_frame if self.role is Role.SERVER else MAX_REPLY_SIZE
        if size > limit:
            raise RemoteProtocolError(f"announced size {size} exceeds the {limit}-byte maximum")
        self._to_send += ACK
        self._body_remaining = size
        if size == 0:
            self._finish_body()

    def _take_body(self) -> None:
        buffer = self._buffer
        take = min(len(buffer), self._body_remaining or 0)
        chunk = bytes(buffer[:take])
        del buffer[:take]
        self._body_remaining = (self._body_remaining or 0) - take
        if self.role is Role.CLIENT:
            self._messages.append(Output(self._request_id, STDOUT, chunk))
        else:
            self._body_parts.append(chunk)
        if self._body_remaining == 0:
            self._finish_body()

    def _finish_body(self) -> None:
        self._body_remaining = None
        if self.role is Role.CLIENT:
            self._messages.append(Exit(self._request_id, exit_status=None))
            return
        body = b"".join(self._body_parts)
        self._body_parts.clear()
        try:
            line = body.decode().strip()
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"a command must be UTF-8 (bad byte at offset {exc.start})") from None
        self._request_id += 1
        self._messages.append(Request(self._request_id, (), line))

    def next_message(self) -> Message | _Sentinel:
        if self._messages:
            return self._messages.popleft()
        if self._closed:
            if self._buffer or self._body_remaining is not None:
                raise RemoteProtocolError("connection closed in the middle of an ack-framed message")
            return END_OF_STREAM
        return NEED_DATA
