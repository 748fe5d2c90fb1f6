"""TCP reassembly for one direction of a flow, and the ``length`` frame splitter after it.

How this works: a :class:`StreamReassembler` turns segments, in whatever order
the capture saw them, into the byte stream the receiving application read. It
works in stream offsets (sequence number minus the initial one, unwrapped
across 2**32 the way RFC 1982 does, nearest to the next expected offset):

- a segment that starts at or before the next expected offset delivers its new
  bytes at once (the part already delivered is a retransmission);
- a segment wholly below it is a retransmission and delivers nothing;
- a segment beyond it is out of order: kept (bounded) until the gap fills.

:class:`FrameSplitter` then cuts the delivered bytes into ``length`` frames
(4-byte big-endian length + body) and decodes each body with
:func:`netlab.proto.codec.decode_message`, so one message may span segments and
one segment may complete several messages. Bytes that are not valid ``length``
framing (a raw or line flow) stop the splitter; the caller shows them as data.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from netlab.errors import ProtocolError
from netlab.proto.codec import decode_message
from netlab.proto.messages import Message

SEQUENCE_SPACE = 1 << 32
HALF_SEQUENCE_SPACE = 1 << 31
#: At most this many bytes wait out of order per direction; beyond, segments are dropped.
MAX_OUT_OF_ORDER_BYTES = 16 * 1024 * 1024
#: Frames above this are taken as "not the length framing" (the service's own limit is lower).
MAX_INSPECTED_FRAME = 64 * 1024 * 1024
_LENGTH = struct.Struct("!I")


class SegmentKind(enum.Enum):
    """What a segment meant for the stream."""

    IN_ORDER = "in order"
    RETRANSMIT = "RETRANSMIT"
    PARTIAL_RETRANSMIT = "PARTIAL RETRANSMIT"
    OUT_OF_ORDER = "OUT-OF-ORDER"


@dataclass(frozen=True)
class Delivery:
    """The result of adding one segment: its kind and the bytes now in order."""

    kind: SegmentKind
    data: bytes


class StreamReassembler:
    """One direction of a TCP connection, rebuilt from captured segments."""

    def __init__(self, first_data_sequence: int) -> None:
        """Start a stream whose first data byte has ``first_data_sequence`` (ISN + 1)."""
        self.base = first_data_sequence % SEQUENCE_SPACE
        #: stream offset of the next byte the application will read
        self.next_offset = 0
        self._waiting: dict[int, bytes] = {}
        self._waiting_bytes = 0

    def offset_of(self, sequence: int) -> int:
        """The stream offset of a 32-bit sequence number, unwrapped near the next expected one."""
        difference = (sequence - self.base - self.next_offset) % SEQUENCE_SPACE
        if difference >= HALF_SEQUENCE_SPACE:
            difference -= SEQUENCE_SPACE
        return self.next_offset + difference

    def add(self, sequence: int, payload: bytes) -> Delivery:
        """Add one segment's payload.

        Args:
            sequence: the segment's 32-bit sequence number.
            payload: its TCP payload (not empty).
        Returns:
            The segment's kind and the bytes that became contiguous because of it.
        """
        offset = self.offset_of(sequence)
        end = offset + len(payload)
        if end <= self.next_offset:
            return Delivery(SegmentKind.RETRANSMIT, b"")
        if offset > self.next_offset:
            if offset not in self._waiting and self._waiting_bytes + len(payload) <= MAX_OUT_OF_ORDER_BYTES:
                self._waiting[offset] = payload
                self._waiting_bytes += len(payload)
            return Delivery(SegmentKind.OUT_OF_ORDER, b"")
        kind = SegmentKind.IN_ORDER if offset == self.next_offset else SegmentKind.PARTIAL_RETRANSMIT
        parts = [payload[self.next_offset - offset :]]
        self.next_offset = end
        parts.extend(self._drain_waiting())
        return Delivery(kind, b"".join(parts))

    def _drain_waiting(self) -> list[bytes]:
        parts = []
        while self._waiting:
            ready = [offset for offset in self._waiting if offset <= self.next_offset]
            if not ready:
                break
            for offset in sorted(ready):
                payload = self._waiting.pop(offset)
                self._waiting_bytes -= len(payload)
                end = offset + len(payload)
                if end > self.next_offset:
                    parts.append(payload[self.next_offset - offset :])
                    self.next_offset = end
        return parts

    @property
    def gap(self) -> bool:
        """True while bytes past a hole are waiting for it to fill."""
        return bool(self._waiting)


class FrameSplitter:
    """Cuts an in-order byte stream into ``length`` frames and decodes them."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: Set when the bytes turned out not to be ``length`` framing; then nothing is decoded.
        self.failure: str | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Take in-order bytes; return the messages they completed (may be none)."""
        if self.failure is not None or not data:
            return []
        self._buffer += data
        messages: list[Message] = []
        buffer = self._buffer
        while len(buffer) >= 4:
            (length,) = _LENGTH.unpack_from(buffer)
            if length == 0 or length > MAX_INSPECTED_FRAME:
                self._fail(f"frame length {length} is not plausible")
                break
            if len(buffer) < 4 + length:
                break
            body = bytes(buffer[4 : 4 + length])
            del buffer[: 4 + length]
            try:
                messages.append(decode_message(body))
            except ProtocolError as exc:
                self._fail(str(exc))
                break
        return messages

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self._buffer.clear()

    @property
    def pending(self) -> tuple[int, int] | None:
        """(bytes held, frame size) of a frame still incomplete, or None between frames."""
        if self.failure is not None or not self._buffer:
            return None
        if len(self._buffer) < 4:
            return len(self._buffer), 0
        return len(self._buffer), 4 + _LENGTH.unpack_from(self._buffer)[0]
