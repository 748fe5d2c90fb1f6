"""The ``length`` framing: a 4-byte big-endian length, then one typed message.

Binary-safe and carries the whole typed protocol (see ``codec.py``). The length
is checked the moment its 4 bytes arrive: zero or more than ``max_frame`` is a
protocol error before any body byte is read, and no buffer is ever sized from
the untrusted length — the receive buffer only ever holds bytes that arrived.
Hot path: a frame is built with one ``struct`` pack (``codec.encode_frame``);
while frames arrive whole, the framer decodes them in place in the received
``bytes`` object (``codec.decode_body``: only output data is copied out); only
a partial frame is copied into a bytearray to wait for the rest.
"""

from __future__ import annotations

import struct

from netlab.errors import LocalProtocolError, RemoteProtocolError
from netlab.proto.codec import decode_body, encode_frame
from netlab.proto.framing.base import DEFAULT_MAX_FRAME, Capabilities, Framer, Role
from netlab.proto.messages import END_OF_STREAM, NEED_DATA, Message, _Sentinel

_LENGTH = struct.Struct(">I")


class LengthFramer(Framer):
    """Length-prefixed frames holding :mod:`netlab.proto.codec` bodies."""

    name = "length"
    capabilities = Capabilities(
        message_boundaries=True,
        stderr=True,
        exit_status=True,
        binary_safe=True,
        authentication=True,
        request_timeout=True,
    )

    def __init__(self, role: Role, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(role, max_frame)
        # Unconsumed input is _buffer[_offset:]: the received bytes object itself
        # while frames arrive whole, a bytearray while a partial frame waits.
        self._buffer: bytes | bytearray = b""
        self._offset = 0

    def encode(self, message: Message) -> bytes:
        frame = encode_frame(message)
        if len(frame) - 4 > self.max_frame:
            raise LocalProtocolError(
                f"a {len(frame) - 4}-byte frame exceeds the {self.max_frame}-byte maximum; send output in chunks"
            )
        return frame

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._closed = True
            return
        if self._closed:
            raise RemoteProtocolError("data after end of stream")
        buffer, offset = self._buffer, self._offset
        if offset == len(buffer) and type(data) is bytes:
            self._buffer, self._offset = data, 0  # nothing pending: keep the caller's bytes
            return
        if type(buffer) is bytearray:
            del buffer[:offset]
        else:
            buffer = bytearray(memoryview(buffer)[offset:])
        buffer += data
        self._buffer, self._offset = buffer, 0

    def next_message(self) -> Message | _Sentinel:
        buffer, offset = self._buffer, self._offset
        available = len(buffer) - offset
        if available < 4:
            if self._closed:
                if available:
                    raise RemoteProtocolError(f"connection closed inside a frame header ({available} of 4 bytes)")
                return END_OF_STREAM
            return NEED_DATA
        (length,) = _LENGTH.unpack_from(buffer, offset)
        if length == 0 or length > self.max_frame:
            raise RemoteProtocolError(
                f"frame length {length} is outside 1..{self.max_frame}: the peer is not speaking "
                "the length framing, or its frames are too large"
            )
        start = offset + 4
        end = start + length
        if len(buffer) < end:
            if self._closed:
                raise RemoteProtocolError(f"connection closed inside a frame ({available - 4} of {length} bytes)")
            return NEED_DATA
        self._offset = end
        return decode_body(buffer, start, end)
