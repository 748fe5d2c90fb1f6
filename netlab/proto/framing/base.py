"""The framer interface: where one message ends and the next begins.

A framer is sans-IO and role-aware (the client and the server of a text framing
say different things). The I/O loop around it does four things only:

1. ``data = connection.receive(framer.receive_size)``; ``framer.receive_data(data)``
   (``b""`` means the peer closed) — or, without the copy, receive into
   ``framer.get_buffer(size)`` and call ``framer.buffer_updated(count)``;
2. send ``framer.data_to_send()`` if not empty (acks, released bodies);
3. pop ``framer.next_message()`` until it returns ``NEED_DATA``;
4. to send a message, write ``framer.encode(message)`` (if not empty) in one send.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from netlab.proto.messages import NOT_CONTROL, Exit, Message, Output, _Sentinel

DEFAULT_MAX_FRAME = 256 * 1024
DEFAULT_RECEIVE_SIZE = 65536
#: Output larger than this is split into several Output messages by the sender.
OUTPUT_CHUNK_SIZE = 64 * 1024


class Role(enum.Enum):
    """Which end of the conversation a framer or session serves."""

    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True)
class Capabilities:
    """What a framing can carry; the typed protocol degrades to this."""

    message_boundaries: bool
    stderr: bool
    exit_status: bool
    binary_safe: bool
    authentication: bool
    request_timeout: bool
    #: the client can send the command's stdin and signals while it runs (Input, Signal)
    stdin_and_signals: bool = False


class Framer(ABC):
    """Turns messages into bytes and bytes into messages, incrementally."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: Bytes an Output frame adds to its data, where that is fixed (None: it varies).
    output_overhead: ClassVar[int | None] = None

    def __init__(self, role: Role, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.role = role
        self.max_frame = max_frame
        #: set by ``receive_data(b"")``: the peer closed its side
        self._closed = False
        #: How many bytes the I/O loop asks for in one receive.
        self.receive_size = DEFAULT_RECEIVE_SIZE
        self._receive_area = bytearray()

    @abstractmethod
    def encode(self, message: Message) -> bytes:
        """Return the bytes to send for ``message`` now (possibly empty).

        Raises:
            LocalProtocolError: the message cannot be said in this framing.
        """

    def encode_parts(self, message: Message) -> tuple[bytes, ...]:
        """Return :meth:`encode`'s bytes as buffers whose concatenation is the frame.

        A framing that can send output data without copying it into the frame
        (length) returns the data as its own buffer; this default returns one,
        or none when the framing sends nothing now (ack collects output): an
        empty buffer must never become a send, because a boundary-preserving
        transport would carry it as an empty message.
        """
        data = self.encode(message)
        return (data,) if data else ()

    def encode_reply(self, output: Output, end: Exit) -> bytes:
        """Return ``encode(output) + encode(end)``: a reply of one output chunk and its Exit, encoded together.

        Framings whose frames are built in one step override it (length); the
        bytes are always those of the two :meth:`encode` calls in turn.

        Raises:
            LocalProtocolError: either message cannot be said in this framing.
        """
        return self.encode(output) + self.encode(end)

    @abstractmethod
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from one receive; ``b""`` marks the peer's end of stream."""

    @abstractmethod
    def next_message(self) -> Message | _Sentinel:
        """Return the next whole message, ``NEED_DATA`` or ``END_OF_STREAM``.

        Raises:
            RemoteProtocolError: the bytes received are not valid in this framing.
        """

    def next_control_message(self) -> Message | _Sentinel:
        """Like :meth:`next_message` while a reply is running: only Input or Signal.

        Returns the next message if it is one of those, ``END_OF_STREAM`` when
        the peer closed with nothing buffered, ``NOT_CONTROL`` when another
        message is next (a pipelined request: it stays buffered for
        :meth:`next_message`), else ``NEED_DATA``. This default, for framings
        that carry neither, returns ``NOT_CONTROL``.
        """
        return NOT_CONTROL

    def next_reply(self, request_id: int) -> tuple[Output, Exit] | _Sentinel | None:
        """The next two messages at once when they are, both whole, an output chunk and the usual Exit
        (a status or none, no limits) of ``request_id``; ``NEED_DATA`` when nothing is buffered and the
        peer has not closed; otherwise None, with nothing consumed (then :meth:`next_message` says what is next).

        Never raises: anything it does not take whole is left to :meth:`next_message`. This default,
        for framings that do not recognise a reply at once, returns None.
        """
        return None

    def get_buffer(self, size: int) -> memoryview:
        """Return a writable buffer for the next receive: ``size`` bytes here, at least ``size`` in subclasses.

        The receive writes at the buffer's start; then call :meth:`buffer_updated`.
        This default stages the bytes in a scratch area and hands them to
        :meth:`receive_data`; a framer that parses in place overrides both.
        """
        if len(self._receive_area) < size:
            self._receive_area = bytearray(size)
        return memoryview(self._receive_area)[:size]

    def buffer_updated(self, count: int) -> None:
        """Take the ``count`` bytes the last receive wrote into :meth:`get_buffer`'s buffer (0: end of stream)."""
        with memoryview(self._receive_area) as view:
            self.receive_data(view[:count].tobytes())

    def data_to_send(self) -> bytes:
        """Bytes the framing itself must send now (acks, released bodies)."""
        return b""
