"""The one loop that drives a framer over a connection: messages in, messages out.

How this works: a :class:`Channel` joins a transport :class:`Connection` and a
sans-IO parser, a :class:`Session` (the client and the server) or a bare
:class:`Framer` (tools that pipeline, which a session's order rules forbid).
It does the four steps the framer interface asks of its I/O loop
(:mod:`netlab.proto.framing.base`) and nothing more:

1. receive: straight into the parser's buffer where the connection reads in
   place (sockets), else one ``receive`` whose bytes the parser keeps;
2. send what the parser must send now (the ack framing's acks and bodies);
3. pop messages until the parser needs more bytes;
4. send bytes in one write, or in pieces where they exceed the transport's
   message limit (seqpacket's ~208 KiB): every framing parses across receives.

Who waits is the caller's choice: the client and the tools call
:meth:`Channel.next_message`, which receives as needed; a server model
receives itself and hands the bytes to :meth:`Channel.feed`. Timeouts are per
call, so a caller may change its own between calls.
"""

from __future__ import annotations

from netlab.proto.framing import Framer
from netlab.proto.messages import NEED_DATA, Message, _Sentinel
from netlab.proto.session import Session
from netlab.transport.base import Connection

#: On boundary-preserving transports a receive must hold a whole message, or
#: the kernel cuts it (seqpacket, UDP); frames and coalesced sends stay below this.
MESSAGE_RECEIVE_SIZE = 512 * 1024
#: Piece size when data is longer than a transport's message limit (seqpacket's
#: is about 208 KiB; every framing parses across receives, so data may be cut).
MESSAGE_SEND_SIZE = 64 * 1024

Parser = Session | Framer


def send_data(connection: Connection, data: bytes, timeout: float | None) -> None:
    """Send ``data``: in one write, or in pieces where it exceeds the transport's message limit."""
    limit = connection.max_message_size
    if limit is not None and len(data) > limit:
        view = memoryview(data)
        for start in range(0, len(data), MESSAGE_SEND_SIZE):
            connection.send(bytes(view[start : start + MESSAGE_SEND_SIZE]), timeout)
    else:
        connection.send(data, timeout)


def receive_size_for(parser: Parser, connection: Connection) -> int:
    """How many bytes one receive asks for: the framing's size, or a whole message.

    The raw framing keeps its tutorial ``recv(1024)`` everywhere, so truncation
    on a boundary-preserving transport stays visible.
    """
    framer = parser.framer if isinstance(parser, Session) else parser
    if connection.preserves_boundaries and framer.name != "raw":
        return max(framer.receive_size, MESSAGE_RECEIVE_SIZE)
    return framer.receive_size


class Channel:
    """Messages over one connection, through one session or framer.

    Attributes:
        connection: the transport connection (the channel never closes it).
        parser: the session or framer that turns bytes into messages.
        receive_size: bytes asked of one receive.
    """

    __slots__ = ("_buffer_updated", "_data_to_send", "_get_buffer", "_in_place", "_next", "_receive_data",
                 "_send", "connection", "parser", "receive_size")

    def __init__(self, connection: Connection, parser: Parser, receive_size: int | None = None) -> None:
        """Join ``connection`` and ``parser``; ``receive_size`` defaults to :func:`receive_size_for`."""
        self.connection = connection
        self.parser = parser
        self.receive_size = receive_size if receive_size is not None else receive_size_for(parser, connection)
        self._next = parser.next_event if isinstance(parser, Session) else parser.next_message
        self._in_place = connection.receives_in_place
        # A session hands received bytes to its framer unchanged: the framer's own methods, bound once.
        framer = parser.framer if isinstance(parser, Session) else parser
        self._receive_data = framer.receive_data
        self._get_buffer = framer.get_buffer
        self._buffer_updated = framer.buffer_updated
        # None where the framing never sends on its own (only ack does): nothing to ask after each receive
        sends = type(framer).data_to_send is not Framer.data_to_send
        self._data_to_send = framer.data_to_send if sends else None
        # A byte stream takes any write whole: no need to look at a message limit on every send.
        self._send = connection.send if connection.max_message_size is None else self._send_in_pieces

    def next_message(self, timeout: float | None) -> Message | _Sentinel:
        """The peer's next message (or END_OF_STREAM), receiving as needed.

        Args:
            timeout: seconds each receive may wait; None waits forever.
        Raises:
            ReadTimeout: a receive waited ``timeout`` in vain; TransportError,
            RemoteProtocolError (the peer broke the protocol).
        """
        message = self._next()
        while message is NEED_DATA:
            self.receive(timeout)
            message = self._next()
        return message

    def receive(self, timeout: float | None) -> int:
        """One receive into the parser, then send what it must send; return the bytes received (0: end of stream).

        Raises:
            ReadTimeout, TransportError.
        """
        if self._in_place:
            count = self.connection.receive_into(self._get_buffer(self.receive_size), timeout)
            self._buffer_updated(count)
        else:  # each receive is a fresh bytes object already: the parser keeps it without a copy
            data = self.connection.receive(self.receive_size, timeout)
            self._receive_data(data)
            count = len(data)
        if self._data_to_send is not None:
            extra = self._data_to_send()
            if extra:
                send_data(self.connection, extra, timeout)
        return count

    def feed(self, data: bytes, timeout: float | None) -> None:
        """Hand over bytes the caller received (``b""``: the peer closed), then send what the parser must.

        Raises:
            RemoteProtocolError, TransportError (sending an ack failed).
        """
        self._receive_data(data)
        if self._data_to_send is not None:
            extra = self._data_to_send()
            if extra:
                send_data(self.connection, extra, timeout)

    def send(self, data: bytes, timeout: float | None) -> None:
        """Send encoded bytes (see :func:`send_data`); nothing for ``b""``."""
        if data:
            self._send(data, timeout)

    def _send_in_pieces(self, data: bytes, timeout: float | None) -> None:
        send_data(self.connection, data, timeout)
