"""The one transport interface every transport module implements.

A transport gives a :class:`Listener` (``listen``) and connected
:class:`Connection` objects (``accept`` / ``connect``). A connection moves
bytes; whether one ``send`` arrives as one ``receive`` depends on the transport
(``preserves_boundaries``): TCP and UNIX stream may merge and split, UNIX
seqpacket and sequenced UDP never do. OS errors never leave this layer: they are
mapped to :mod:`netlab.errors` transport errors with a sentence that helps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from netlab.errors import ReadError

if TYPE_CHECKING:
    from netlab.transport.address import Address

DEFAULT_RECEIVE_SIZE = 65536

_ConnectionT = TypeVar("_ConnectionT", bound="Connection")
_ListenerT = TypeVar("_ListenerT", bound="Listener")


class Connection(ABC):
    """A connected, bidirectional channel of bytes (or of messages)."""

    #: True when each ``send`` arrives as exactly one ``receive`` (seqpacket, UDP).
    preserves_boundaries: bool = False
    #: The most bytes one ``send`` may carry where boundaries hold (None: a byte stream).
    max_message_size: int | None = None
    #: True when :meth:`receive_into` reads straight into the buffer (sockets);
    #: False when it copies what :meth:`receive` returns (then receive is cheaper).
    receives_in_place: bool = False
    #: Bytes of a message each datagram carries (sequenced UDP): a write of a
    #: multiple of it fills every datagram. None where we do not cut messages.
    message_fragment_size: int | None = None
    #: The local and remote ends, as address URLs (for logs and tables).
    local_address: str = ""
    peer_address: str = ""

    @abstractmethod
    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send all of ``data`` as one write (one message where boundaries hold).

        Args:
            data: the bytes to send; never split into several writes by us.
            timeout: seconds to wait for buffer space; None waits forever.
        Raises:
            WriteTimeout, BrokenError (peer reset), ClosedError (we closed).
        """

    def send_parts(self, parts: Sequence[bytes], timeout: float | None = None) -> None:
        """Send the concatenation of ``parts`` as one write, like :meth:`send`.

        This default joins them; socket transports gather them (``sendmsg``), so
        large output is not copied into a frame first.
        """
        self.send(b"".join(parts), timeout)

    def send_available(self, data: bytes) -> int:
        """Send what fits now without waiting; return how many bytes of ``data`` went.

        An event loop uses it so that one peer that never reads cannot stall the
        others. Where boundaries hold, ``data`` goes whole or not at all. This
        default (transports without a kernel buffer) sends everything.

        Raises:
            BrokenError (peer reset), ClosedError (we closed), WriteError.
        """
        self.send(data, None)
        return len(data)

    @abstractmethod
    def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None) -> bytes:
        """Return what one ``recv`` gives, at most ``max_bytes``; ``b""`` at end of stream.

        Raises:
            ReadTimeout, BrokenError (peer reset), ClosedError (we closed).
        """

    def receive_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        """Receive into ``buffer`` as one ``recv_into`` does; return the count, 0 at end of stream.

        This default copies what :meth:`receive` returns; socket transports read in place.

        Raises:
            ReadTimeout, BrokenError (peer reset), ClosedError (we closed),
            ReadError (a whole message did not fit the buffer).
        """
        data = self.receive(len(buffer), timeout)
        if len(data) > len(buffer):
            raise ReadError(f"a {len(data)}-byte message from {self.peer_address} does not fit the "
                            f"{len(buffer)}-byte receive buffer: receive into a buffer of at least the largest message")
        buffer[: len(data)] = data
        return len(data)

    @abstractmethod
    def shutdown_write(self) -> None:
        """Half-close: the peer reads end of stream, we can still receive."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; idempotent."""

    @abstractmethod
    def fileno(self) -> int:
        """The file descriptor for selectors (-1 for in-memory connections)."""

    def abort(self) -> None:
        """Close abruptly so the peer sees a reset where the transport has one.

        TCP sends RST (SO_LINGER 0); AF_UNIX reports ECONNRESET to the peer only
        if data we never read is still queued. This default simply closes.
        """
        self.close()

    def __enter__(self: _ConnectionT) -> _ConnectionT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WrappedConnection(Connection):
    """A connection that changes how ``send`` or ``receive`` behave and passes the rest on.

    Subclasses (the slicer, the tap) override ``send`` and ``receive`` (and
    ``receive_into``, which by default copies what ``receive`` returns). Every
    property of the inner connection is passed on, so whoever sends through a
    wrapper still cuts data to the transport's message limit and fills its
    datagrams; a wrapper that changes one (the slicer's boundaries) says so.
    """

    def __init__(self, inner: Connection) -> None:
        """Wrap ``inner``, taking over its properties and addresses."""
        self.inner = inner
        self.preserves_boundaries = inner.preserves_boundaries
        self.max_message_size = inner.max_message_size
        self.receives_in_place = inner.receives_in_place
        self.message_fragment_size = inner.message_fragment_size
        self.local_address = inner.local_address
        self.peer_address = inner.peer_address

    def shutdown_write(self) -> None:
        """Half-close the inner connection."""
        self.inner.shutdown_write()

    def close(self) -> None:
        """Close the inner connection."""
        self.inner.close()

    def abort(self) -> None:
        """Abort the inner connection."""
        self.inner.abort()

    def fileno(self) -> int:
        """The inner connection's descriptor."""
        return self.inner.fileno()


class Listener(ABC):
    """A bound, listening endpoint that hands out connections."""

    #: The address actually bound (port 0 resolved to the ephemeral port).
    address: Address

    @abstractmethod
    def accept(self, timeout: float | None = None) -> Connection:
        """Wait for and return the next connection.

        Raises:
            ReadTimeout when nothing arrives in time, ClosedError after close().
        """

    @abstractmethod
    def close(self) -> None:
        """Stop listening; a UNIX listener also removes its socket file."""

    @abstractmethod
    def fileno(self) -> int:
        """The listening descriptor for selectors."""

    def __enter__(self: _ListenerT) -> _ListenerT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WrappedListener(Listener):
    """A listener that hands each accepted connection through ``wrap`` (a tap, a recorder, a gate).

    Closing, the descriptor and the address are the inner listener's.
    """

    def __init__(self, inner: Listener, wrap: Callable[[Connection], Connection]) -> None:
        """Wrap ``inner``; ``wrap(connection)`` returns what :meth:`accept` gives out."""
        self.inner = inner
        self.wrap = wrap
        self.address = inner.address

    def accept(self, timeout: float | None = None) -> Connection:
        """Accept from the inner listener and pass the connection through ``wrap``."""
        return self.wrap(self.inner.accept(timeout))

    def close(self) -> None:
        """Close the inner listener."""
        self.inner.close()

    def fileno(self) -> int:
        """The inner listener's descriptor."""
        return self.inner.fileno()
