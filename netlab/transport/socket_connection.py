"""Connection and Listener over a kernel socket, shared by the TCP and UNIX transports.

How this works: a :class:`SocketConnection` owns one connected socket, kept in
blocking mode. ``send`` is one ``send`` (looping only if the kernel takes part
of the data) and ``receive`` one ``recv``. Timeouts are enforced by the kernel,
not by Python: a positive timeout is set as SO_RCVTIMEO / SO_SNDTIMEO (only when
it differs from the last one used for that direction, so a loop with a steady
timeout makes no extra system calls), and the call fails with EAGAIN when it
passes; a timeout of 0 is one MSG_DONTWAIT call. Python's own ``settimeout``
would instead poll() before every recv and send: one more system call each
way. OS errors are turned into :mod:`netlab.errors` classes at this boundary,
with the original ``OSError`` kept as ``__cause__`` (experiments can read its
``errno``). ``close`` shuts the socket down before closing it so that a thread
blocked in ``recv`` or ``accept`` wakes up; that thread then gets
:class:`ClosedError`.
"""

from __future__ import annotations

import errno
import math
import socket
import struct
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from netlab.errors import (
    BindError,
    BrokenError,
    ClosedError,
    ReadError,
    ReadTimeout,
    TransportError,
    WriteError,
    WriteTimeout,
)
from netlab.transport.address import Address
from netlab.transport.base import DEFAULT_RECEIVE_SIZE, Connection, Listener

#: errno values meaning the peer reset the connection or vanished.
BROKEN_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT})
_UNSET: object = object()
_TIMEVAL = struct.Struct("ll")  # struct timeval {time_t tv_sec; suseconds_t tv_usec;}
#: Longer timeouts are set as this; the kernel already treats it as "forever".
_LONGEST_TIMEVAL_SECONDS = 2**31 - 1


def timeval(timeout: float | None) -> bytes:
    """Encode a timeout for SO_RCVTIMEO / SO_SNDTIMEO; None (and only None) is 0, "forever".

    Raises:
        ValueError: the timeout is negative or not a number.
    """
    if timeout is None:
        return _TIMEVAL.pack(0, 0)
    if not timeout >= 0:
        raise ValueError(f"a timeout must be None or a number of seconds >= 0, not {timeout!r}")
    if timeout >= _LONGEST_TIMEVAL_SECONDS:
        return _TIMEVAL.pack(_LONGEST_TIMEVAL_SECONDS, 0)
    microseconds = max(1, math.ceil(timeout * 1_000_000))  # rounded up: 0 would mean "forever"
    return _TIMEVAL.pack(*divmod(microseconds, 1_000_000))


def describe_timeout(timeout: float | None) -> str:
    """Render a timeout for messages: ``0.5 s``."""
    return f"{timeout:g} s"


class SocketConnection(Connection):
    """A connected stream socket (TCP or AF_UNIX) behind the Connection interface."""

    receives_in_place = True

    def __init__(self, sock: socket.socket, local_address: str, peer_address: str) -> None:
        """Wrap an already connected socket; the connection owns it from now on."""
        if sock.gettimeout() is not None:
            sock.settimeout(None)  # blocking: the kernel enforces timeouts (see the module comment)
        self._socket = sock
        # The SO_RCVTIMEO / SO_SNDTIMEO now set; a new socket has 0 ("forever") for both.
        self._receive_timeout: float | None = None
        self._send_timeout: float | None = None
        self._closed = False
        self._write_shut = False
        self.local_address = local_address
        self.peer_address = peer_address

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send all of ``data``: one ``send`` unless the kernel takes only part of it.

        After a WriteTimeout an unknown prefix of ``data`` may have been sent:
        the stream is out of step, so close the connection.

        Args:
            data: the bytes to send.
            timeout: total seconds to wait for buffer space; None waits forever,
                0 sends only what fits now.
        Raises:
            WriteTimeout, BrokenError (peer reset), ClosedError (we closed or
            shut down writing), WriteError (anything else).
        """
        try:
            if timeout == 0:
                sent = self._socket.send(data, socket.MSG_DONTWAIT)
                if sent < len(data):
                    raise BlockingIOError(errno.EAGAIN, "the send buffer is full")
                return
            if timeout != self._send_timeout:
                self._set_send_timeout(timeout)
            if timeout is None:
                self._socket.sendall(data)
                return
            started = time.monotonic()
            sent = self._socket.send(data)
            if sent < len(data):
                self._send_rest(memoryview(data)[sent:], started + timeout)
        except OSError as exc:
            raise self._send_error(exc, timeout) from exc

    def send_parts(self, parts: Sequence[bytes], timeout: float | None = None) -> None:
        """Send the concatenation of ``parts`` as one gathered write (``sendmsg``: no copy; one message on seqpacket).

        Raises:
            as :meth:`send`.
        """
        if timeout == 0:
            self.send(b"".join(parts), timeout)
            return
        try:
            if timeout != self._send_timeout:
                self._set_send_timeout(timeout)
            started = time.monotonic()
            sent = self._socket.sendmsg(parts)
            total = sum(map(len, parts))
            if sent < total:  # cut short by the timeout or a signal: copy only then
                rest = memoryview(b"".join(parts))[sent:]
                if timeout is None:
                    self._socket.sendall(rest)
                else:
                    self._send_rest(rest, started + timeout)
        except OSError as exc:
            raise self._send_error(exc, timeout) from exc

    def send_available(self, data: bytes) -> int:
        """Send what fits in the socket buffer now (one non-blocking ``send``); return the count.

        Raises:
            BrokenError (peer reset), ClosedError (we closed), WriteError.
        """
        try:
            return self._socket.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._send_error(exc, 0) from exc

    def _send_rest(self, rest: memoryview, deadline: float) -> None:
        """Send what a cut-short ``send`` left (its timeout passed or a signal came) until ``deadline``."""
        while len(rest):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "send timed out")
            self._set_send_timeout(remaining)
            rest = rest[self._socket.send(rest):]

    def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None) -> bytes:
        """Return what one ``recv`` gives, at most ``max_bytes``; ``b""`` at end of stream.

        Args:
            max_bytes: the most bytes to return.
            timeout: seconds to wait for data; None waits forever.
        Raises:
            ReadTimeout, BrokenError (peer reset), ClosedError (we closed),
            ReadError (anything else).
        """
        try:  # the timeout already set (the usual case): no call to prepare the receive
            flags = 0 if timeout == self._receive_timeout else self._receive_flags(timeout)
            data = self._socket.recv(max_bytes, flags)
        except OSError as exc:
            raise self._receive_error(exc, timeout) from exc
        if not data and self._closed:
            raise self._closed_error("receive")
        return data

    def receive_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        """Receive into ``buffer`` in place (one ``recv_into``); return the count, 0 at end of stream.

        Raises:
            ReadTimeout, BrokenError (peer reset), ClosedError (we closed),
            ReadError (anything else).
        """
        try:
            flags = 0 if timeout == self._receive_timeout else self._receive_flags(timeout)
            count = self._socket.recv_into(buffer, 0, flags)
        except OSError as exc:
            raise self._receive_error(exc, timeout) from exc
        if not count and self._closed:
            raise self._closed_error("receive")
        return count

    def shutdown_write(self) -> None:
        """Half-close: the peer reads end of stream; we can still receive.

        Raises:
            ClosedError (we closed), BrokenError (the peer is gone).
        """
        if self._closed:
            raise self._closed_error("shutdown_write")
        try:
            self._socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._send_error(exc, None) from exc
        self._write_shut = True

    def close(self) -> None:
        """Close gracefully (FIN for TCP); idempotent; wakes threads blocked on this socket."""
        if self._closed:
            return
        self._closed = True
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the peer may be gone already; closing is all that is left to do
        self._socket.close()

    def abort(self) -> None:
        """Close at once without a graceful shutdown (see the subclasses for what the peer sees)."""
        if self._closed:
            return
        self._closed = True
        self._socket.close()

    def fileno(self) -> int:
        """The socket's file descriptor (-1 after close)."""
        return self._socket.fileno()

    def _receive_flags(self, timeout: float | None) -> int:
        """Prepare a receive with ``timeout``: set SO_RCVTIMEO if it changed; return the recv flags.

        Never called with the timeout last set (``_receive_timeout``, never 0): that needs flags 0 and nothing set.

        Raises:
            OSError: the option cannot be set (EBADF: the socket was closed).
        """
        if timeout == 0:
            return socket.MSG_DONTWAIT
        if timeout != self._receive_timeout:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(timeout))
            self._receive_timeout = timeout
        return 0

    def _set_send_timeout(self, timeout: float | None) -> None:
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(timeout))
        self._send_timeout = timeout

    def _closed_error(self, action: str) -> ClosedError:
        return ClosedError(f"{action} on the connection to {self.peer_address} after close(): open a new connection")

    def _send_error(self, exc: OSError, timeout: float | None) -> TransportError:
        if self._closed:
            return self._closed_error("send")
        if isinstance(exc, (TimeoutError, BlockingIOError)):
            return WriteTimeout(
                f"{self.peer_address} did not take our data within {describe_timeout(timeout)}: "
                "the peer is not reading; the stream is now out of step, close it"
            )
        if exc.errno == errno.EPIPE and self._write_shut:
            return ClosedError(f"send to {self.peer_address} after shutdown_write(): writing is closed")
        if exc.errno in BROKEN_ERRNOS:
            return BrokenError(
                f"{self.peer_address} reset or closed the connection while we were sending ({exc.strerror}): reconnect"
            )
        return WriteError(f"sending to {self.peer_address} failed: {exc.strerror or exc}")

    def _receive_error(self, exc: OSError, timeout: float | None) -> TransportError:
        if self._closed:
            return self._closed_error("receive")
        if isinstance(exc, (TimeoutError, BlockingIOError)):
            return ReadTimeout(f"nothing arrived from {self.peer_address} within {describe_timeout(timeout)}")
        if exc.errno in BROKEN_ERRNOS:
            return BrokenError(f"{self.peer_address} reset the connection ({exc.strerror}): reconnect")
        return ReadError(f"receiving from {self.peer_address} failed: {exc.strerror or exc}")


class SocketListener(Listener):
    """A listening socket; subclasses turn accepted sockets into connections."""

    def __init__(self, sock: socket.socket, address: Address) -> None:
        """Wrap a bound, listening socket; the listener owns it from now on."""
        self._socket = sock
        self._timeout: float | None | object = _UNSET
        self._closed = False
        self.address = address

    def accept(self, timeout: float | None = None) -> Connection:
        """Wait for and return the next connection.

        Args:
            timeout: seconds to wait; None waits forever, 0 polls once.
        Returns:
            The accepted connection.
        Raises:
            ReadTimeout when nothing arrives in time, ClosedError after close(),
            TransportError when the kernel refuses (e.g. out of descriptors).
        """
        if self._closed:
            raise self._closed_error()
        try:
            if timeout != self._timeout:
                self._socket.settimeout(timeout)
                self._timeout = timeout
            sock, peer = self._socket.accept()
        except OSError as exc:
            if self._closed:
                raise self._closed_error() from exc
            if isinstance(exc, (TimeoutError, BlockingIOError)):
                raise ReadTimeout(
                    f"no connection arrived at {self.address} within {describe_timeout(timeout)}"
                ) from exc
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise TransportError(
                    f"cannot accept on {self.address}: out of file descriptors; close connections or raise 'ulimit -n'"
                ) from exc
            raise TransportError(f"accept on {self.address} failed: {exc.strerror or exc}") from exc
        return self._wrap_accepted(sock, peer)

    @abstractmethod
    def _wrap_accepted(self, sock: socket.socket, peer: Any) -> Connection:
        """Turn an accepted socket into a connection (closing the socket if that fails)."""

    def close(self) -> None:
        """Stop listening; idempotent; wakes a thread blocked in accept."""
        if self._closed:
            return
        self._closed = True
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not every kernel lets a listener be shut down; close() still works
        self._socket.close()

    def fileno(self) -> int:
        """The listening descriptor (-1 after close)."""
        return self._socket.fileno()

    def _closed_error(self) -> ClosedError:
        return ClosedError(f"accept on {self.address} after close(): listen again")


def ip_bind_error(address: Address, exc: OSError) -> BindError:
    """The BindError, with a sentence that helps, for a failed bind of a TCP or UDP address."""
    if exc.errno == errno.EADDRINUSE:
        return BindError(f"{address} is in use — is another netlab server running? pick another port or stop it")
    if exc.errno == errno.EACCES:
        return BindError(
            f"permission denied binding {address}: ports below 1024 need root; pick a port of 1024 or more"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return BindError(
            f"{address.host} is not an address of this machine: bind a local address such as "
            f"{'::1' if address.family == socket.AF_INET6 else '127.0.0.1'}"
        )
    return BindError(f"cannot listen on {address}: {exc.strerror or exc}")
