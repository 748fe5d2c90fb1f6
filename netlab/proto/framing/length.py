"""The ``length`` framing: a 4-byte big-endian length, then one typed message.

Binary-safe and carries the whole typed protocol (see ``codec.py``). The length
is checked the moment its 4 bytes arrive: zero or more than ``max_frame`` is a
protocol error before any body byte is read, and no buffer is ever sized from
the untrusted length — the receive buffer only ever holds bytes that arrived.
Hot path: a frame is built with one ``struct`` pack (``codec.encode_frame``).
Received bytes are parsed where they lie (``codec.decode_body``: only output
data is copied out): in the received ``bytes`` object itself while frames
arrive whole through :meth:`receive_data`, or in the framer's own receive area,
which :meth:`get_buffer` lends to the socket (``recv_into``, no intermediate
object) and which only ever holds bytes that arrived: a partial frame is moved
to its front when the tail runs short, and the area grows only to fit a frame.
"""

from __future__ import annotations

import struct

from netlab.errors import LocalProtocolError, RemoteProtocolError
from netlab.proto.codec import (
    EXIT_BODY_SIZE,
    EXIT_FRAME_HEAD,
    OUTPUT_FRAME_HEAD,
    OUTPUT_FRAME_OVERHEAD,
    TYPE_EXIT,
    TYPE_INPUT,
    TYPE_SIGNAL,
    TYPE_STDERR,
    TYPE_STDOUT,
    decode_body,
    encode_frame,
    encode_frame_parts,
    encode_reply_frames,
)
from netlab.proto.framing.base import DEFAULT_MAX_FRAME, Capabilities, Framer, Role
from netlab.proto.messages import END_OF_STREAM, NEED_DATA, NOT_CONTROL, Exit, Message, Output, _Sentinel

_LENGTH = struct.Struct(">I")
_unpack_output_frame_head, _unpack_exit_frame_head = OUTPUT_FRAME_HEAD.unpack_from, EXIT_FRAME_HEAD.unpack_from
_EXIT_FRAME_SIZE = 4 + EXIT_BODY_SIZE
_CONTROL_TYPES = frozenset((TYPE_INPUT, TYPE_SIGNAL))


class LengthFramer(Framer):
    """Length-prefixed frames holding :mod:`netlab.proto.codec` bodies."""

    name = "length"
    output_overhead = OUTPUT_FRAME_OVERHEAD
    capabilities = Capabilities(
        message_boundaries=True,
        stderr=True,
        exit_status=True,
        binary_safe=True,
        authentication=True,
        request_timeout=True,
        stdin_and_signals=True,
    )

    def __init__(self, role: Role, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(role, max_frame)
        # Unconsumed input is _buffer[_offset:_end]: a received bytes object, or
        # _area (the receive area lent out by get_buffer).
        self._buffer: bytes | bytearray = b""
        self._offset = 0
        self._end = 0
        self._area = bytearray()

    def encode(self, message: Message) -> bytes:
        frame = encode_frame(message)
        if len(frame) > self.max_frame + 4:
            raise self._too_large(len(frame) - 4)
        return frame

    def encode_reply(self, output: Output, end: Exit) -> bytes:
        if len(output.data) + OUTPUT_FRAME_OVERHEAD - 4 > self.max_frame:
            raise self._too_large(len(output.data) + OUTPUT_FRAME_OVERHEAD - 4)
        frames = encode_reply_frames(output, end)
        if len(frames) - len(output.data) - OUTPUT_FRAME_OVERHEAD - 4 > self.max_frame:  # a tiny max_frame
            raise self._too_large(len(frames) - len(output.data) - OUTPUT_FRAME_OVERHEAD - 4)
        return frames

    def encode_parts(self, message: Message) -> tuple[bytes, ...]:
        parts = encode_frame_parts(message)
        size = sum(map(len, parts)) - 4
        if size > self.max_frame:
            raise self._too_large(size)
        return parts

    def _too_large(self, size: int) -> LocalProtocolError:
        return LocalProtocolError(
            f"a {size}-byte frame exceeds the {self.max_frame}-byte maximum; send output in chunks"
        )

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._closed = True
            return
        if self._closed:
            raise RemoteProtocolError("data after end of stream")
        if self._offset == self._end and type(data) is bytes:
            self._buffer, self._offset, self._end = data, 0, len(data)  # nothing pending: keep the caller's bytes
            return
        self.get_buffer(len(data))[: len(data)] = data
        self._end += len(data)

    def get_buffer(self, size: int) -> memoryview:
        """Return the free tail of the receive area, at least ``size`` bytes long."""
        area, offset, end = self._area, self._offset, self._end
        if self._buffer is area and len(area) - end >= size:
            return memoryview(area)[end:]
        pending = end - offset
        if len(area) < pending + size:
            area = bytearray(max(pending + size, 2 * size))
        if pending:
            with memoryview(self._buffer) as view:
                area[:pending] = view[offset:end].tobytes()  # a copy: the two ranges may overlap
        self._area = self._buffer = area
        self._offset, self._end = 0, pending
        return memoryview(area)[pending:]

    def buffer_updated(self, count: int) -> None:
        if not count:
            self._closed = True
        elif self._closed:
            raise RemoteProtocolError("data after end of stream")
        else:
            self._end += count

    def next_control_message(self) -> Message | _Sentinel:
        buffer, offset, end = self._buffer, self._offset, self._end
        if end - offset < 5:
            return END_OF_STREAM if self._closed and end == offset else NEED_DATA
        if buffer[offset + 4] not in _CONTROL_TYPES:
            return NOT_CONTROL
        return self.next_message()

    def next_reply(self, request_id: int) -> tuple[Output, Exit] | _Sentinel | None:
        buffer, offset, end = self._buffer, self._offset, self._end
        if end - offset < OUTPUT_FRAME_OVERHEAD + _EXIT_FRAME_SIZE:
            return NEED_DATA if offset == end and not self._closed else None
        length, kind, output_id = _unpack_output_frame_head(buffer, offset)
        if (output_id != request_id or (kind != TYPE_STDOUT and kind != TYPE_STDERR)
                or length < OUTPUT_FRAME_OVERHEAD - 4 or length > self.max_frame):
            return None
        middle = offset + 4 + length
        stop = middle + _EXIT_FRAME_SIZE
        if stop > end or _unpack_exit_frame_head(buffer, middle) != (EXIT_BODY_SIZE, TYPE_EXIT, request_id, 0):
            return None
        # both bodies are whole and of the shapes decode_body reads without a check that can fail
        self._offset = stop
        return decode_body(buffer, offset + 4, middle), decode_body(buffer, middle + 4, stop)  # type: ignore[return-value]

    def next_message(self) -> Message | _Sentinel:
        buffer, offset, end = self._buffer, self._offset, self._end
        available = end - offset
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
        stop = start + length
        if end < stop:
            if self._closed:
                raise RemoteProtocolError(f"connection closed inside a frame ({available - 4} of {length} bytes)")
            return NEED_DATA
        self._offset = stop
        return decode_body(buffer, start, stop)
