"""In-memory connections and listeners (``memory://name``) for tests of the layers above.

How this works: a connection pair is two one-way pipes, each a bounded byte
buffer guarded by a condition variable. ``send`` copies into the peer's
buffer, waiting for room when it is full (so WriteTimeout exists, like a full
socket buffer); ``receive`` takes up to ``max_bytes`` from our buffer (stream
semantics: sends may merge or split). ``shutdown_write`` and ``close`` mark our
outgoing pipe finished, so the peer reads ``b""`` after draining it; after our
``close`` the peer's sends raise BrokenError (like EPIPE). ``abort`` marks the
pipe reset: the peer's next receive raises BrokenError at once (like RST).

A :class:`MemoryListener` registers its name in a process-wide table. Its queue
holds backlog + 1 pending connections, as Linux does; ``connect`` waits for
room up to its timeout (ConnectTimeout), and ``timeout=0`` on a full queue is
ConnectionRefused at once, mirroring the UNIX transport.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque

from netlab.errors import (
    BindError,
    BrokenError,
    ClosedError,
    ConnectionRefused,
    ConnectTimeout,
    ReadTimeout,
    WriteTimeout,
)
from netlab.transport.address import MEMORY_SCHEME, Address
from netlab.transport.base import DEFAULT_RECEIVE_SIZE, Connection, Listener
from netlab.transport.registry import DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT, register_transport
from netlab.transport.socket_connection import describe_timeout

#: Bytes one direction buffers before ``send`` waits (about a loopback socket buffer).
DEFAULT_CAPACITY = 262144

_pair_numbers = itertools.count(1)
_ephemeral_numbers = itertools.count(1)
_listeners: dict[str, MemoryListener] = {}
_listeners_lock = threading.Lock()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _wait(condition: threading.Condition, deadline: float | None) -> bool:
    """Wait on ``condition`` (held) until notified or the deadline; False once the deadline has passed."""
    if deadline is None:
        condition.wait()
        return True
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    condition.wait(remaining)
    return True


class _Pipe:
    """One direction of a memory connection."""

    def __init__(self, capacity: int) -> None:
        self.condition = threading.Condition()
        self.buffer = bytearray()
        self.capacity = capacity
        self.writer_finished = False  # reader gets b"" once the buffer is empty
        self.reader_gone = False  # writer gets BrokenError
        self.reset = False  # reader gets BrokenError at once

    def finish_writing(self) -> None:
        with self.condition:
            self.writer_finished = True
            self.condition.notify_all()


class MemoryConnection(Connection):
    """One end of an in-memory stream; thread-safe; ``fileno()`` is -1."""

    def __init__(self, incoming: _Pipe, outgoing: _Pipe, local_address: str, peer_address: str) -> None:
        """Join two pipes into a connection end (use :func:`memory_pair` instead)."""
        self._incoming = incoming
        self._outgoing = outgoing
        self._closed = False
        self._write_shut = False
        self.local_address = local_address
        self.peer_address = peer_address

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Copy all of ``data`` to the peer, waiting for buffer room.

        Args:
            data: the bytes to send.
            timeout: total seconds to wait for room; None waits forever.
        Raises:
            WriteTimeout (part of data may have been sent), BrokenError (the
            peer closed), ClosedError (we closed or shut down writing).
        """
        if self._write_shut and not self._closed:
            raise ClosedError(f"send to {self.peer_address} after shutdown_write(): writing is closed")
        pipe = self._outgoing
        view = memoryview(data)
        deadline = _deadline(timeout)
        with pipe.condition:
            while True:
                if self._closed:
                    raise self._closed_error("send")
                if pipe.reader_gone:
                    raise BrokenError(f"{self.peer_address} closed the connection while we were sending: reconnect")
                room = pipe.capacity - len(pipe.buffer)
                if room > 0:
                    pipe.buffer += view[:room]
                    view = view[room:]
                    pipe.condition.notify_all()
                    if not view:
                        return
                elif not _wait(pipe.condition, deadline):
                    raise WriteTimeout(
                        f"{self.peer_address} did not take our data within {describe_timeout(timeout)}: "
                        "the peer is not reading; the stream is now out of step, close it"
                    )

    def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None) -> bytes:
        """Return up to ``max_bytes`` buffered bytes; ``b""`` at end of stream.

        Raises:
            ReadTimeout, BrokenError (the peer aborted), ClosedError (we closed).
        """
        pipe = self._incoming
        deadline = _deadline(timeout)
        with pipe.condition:
            while True:
                if self._closed:
                    raise self._closed_error("receive")
                if pipe.reset:
                    raise BrokenError(f"{self.peer_address} reset the connection: reconnect")
                if pipe.buffer:
                    data = bytes(pipe.buffer[:max_bytes])
                    del pipe.buffer[:max_bytes]
                    pipe.condition.notify_all()
                    return data
                if pipe.writer_finished:
                    return b""
                if not _wait(pipe.condition, deadline):
                    raise ReadTimeout(f"nothing arrived from {self.peer_address} within {describe_timeout(timeout)}")

    def shutdown_write(self) -> None:
        """Half-close: the peer reads end of stream once it has drained our data.

        Raises:
            ClosedError (we closed).
        """
        if self._closed:
            raise self._closed_error("shutdown_write")
        self._write_shut = True
        self._outgoing.finish_writing()

    def close(self) -> None:
        """Close; the peer reads end of stream and its sends raise BrokenError; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._outgoing.finish_writing()
        self._drop_incoming()

    def abort(self) -> None:
        """Close so that the peer's next receive raises BrokenError, like a TCP reset."""
        if self._closed:
            return
        self._closed = True
        with self._outgoing.condition:
            self._outgoing.reset = True
            self._outgoing.condition.notify_all()
        self._drop_incoming()

    def fileno(self) -> int:
        """-1: memory connections have no descriptor to select on."""
        return -1

    def _drop_incoming(self) -> None:
        with self._incoming.condition:
            self._incoming.reader_gone = True
            self._incoming.buffer.clear()
            self._incoming.condition.notify_all()

    def _closed_error(self, action: str) -> ClosedError:
        return ClosedError(f"{action} on the connection to {self.peer_address} after close(): open a new connection")


def memory_pair(
    capacity: int = DEFAULT_CAPACITY, addresses: tuple[str, str] | None = None
) -> tuple[MemoryConnection, MemoryConnection]:
    """Create two connected in-memory ends.

    Args:
        capacity: bytes buffered per direction before ``send`` waits.
        addresses: the (first, second) address strings for logs; default
            ``memory:pair<N>.a`` and ``memory:pair<N>.b``.
    Returns:
        (first, second): what one sends, the other receives.
    """
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1 byte, got {capacity}")
    if addresses is None:
        number = next(_pair_numbers)
        addresses = (f"memory:pair{number}.a", f"memory:pair{number}.b")
    first_to_second, second_to_first = _Pipe(capacity), _Pipe(capacity)
    first = MemoryConnection(second_to_first, first_to_second, addresses[0], addresses[1])
    second = MemoryConnection(first_to_second, second_to_first, addresses[1], addresses[0])
    return first, second


class MemoryListener(Listener):
    """A named in-memory listener; ``fileno()`` is -1."""

    def __init__(self, address: Address, backlog: int) -> None:
        """Create an unregistered listener (use :func:`listen_memory`)."""
        self.address = address
        self._queue_limit = backlog + 1
        self._pending: deque[MemoryConnection] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._client_numbers = itertools.count(1)

    def accept(self, timeout: float | None = None) -> MemoryConnection:
        """Wait for and return the next connection.

        Raises:
            ReadTimeout when nothing arrives in time, ClosedError after close().
        """
        deadline = _deadline(timeout)
        with self._condition:
            while True:
                if self._closed:
                    raise ClosedError(f"accept on {self.address} after close(): listen again")
                if self._pending:
                    connection = self._pending.popleft()
                    self._condition.notify_all()
                    return connection
                if not _wait(self._condition, deadline):
                    raise ReadTimeout(f"no connection arrived at {self.address} within {describe_timeout(timeout)}")

    def close(self) -> None:
        """Stop listening: free the name and reset connections never accepted; idempotent."""
        with _listeners_lock:
            if _listeners.get(self.address.host) is self:
                del _listeners[self.address.host]
        with self._condition:
            self._closed = True
            for connection in self._pending:
                connection.abort()
            self._pending.clear()
            self._condition.notify_all()

    def fileno(self) -> int:
        """-1: memory listeners have no descriptor."""
        return -1

    def enqueue_client(self, timeout: float | None) -> MemoryConnection:
        """Queue a new connection for ``accept`` and return the client end.

        Raises:
            ConnectionRefused (closed, or a full queue with timeout=0),
            ConnectTimeout (the queue stayed full for the whole timeout).
        """
        deadline = _deadline(timeout)
        with self._condition:
            while True:
                if self._closed:
                    raise ConnectionRefused(f"nothing listens on {self.address} — is the server running?")
                if len(self._pending) < self._queue_limit:
                    client_name = f"{self.address}#client{next(self._client_numbers)}"
                    client, server = memory_pair(addresses=(client_name, str(self.address)))
                    server.local_address, server.peer_address = str(self.address), client_name
                    self._pending.append(server)
                    self._condition.notify_all()
                    return client
                if timeout == 0:
                    raise ConnectionRefused(f"the accept queue of {self.address} is full (timeout=0)")
                if not _wait(self._condition, deadline):
                    raise ConnectTimeout(
                        f"the accept queue of {self.address} stayed full for {describe_timeout(timeout)}: "
                        "the server is not accepting; retry later or raise its backlog"
                    )


def listen_memory(address: Address, backlog: int = DEFAULT_BACKLOG) -> MemoryListener:
    """Listen on ``memory://name``; an empty name picks a fresh one (like port 0).

    Raises:
        BindError: another memory listener in this process has the name.
    """
    with _listeners_lock:
        name = address.host or f"ephemeral-{next(_ephemeral_numbers)}"
        if name in _listeners:
            raise BindError(f"memory://{name} is in use in this process: close that listener or pick another name")
        listener = MemoryListener(Address(scheme=MEMORY_SCHEME, host=name), backlog)
        _listeners[name] = listener
    return listener


def connect_memory(address: Address, timeout: float | None = DEFAULT_CONNECT_TIMEOUT) -> MemoryConnection:
    """Connect to a memory listener in this process.

    Raises:
        ConnectionRefused (no such listener, or a full queue with timeout=0),
        ConnectTimeout (the queue stayed full for the whole timeout).
    """
    with _listeners_lock:
        listener = _listeners.get(address.host)
    if listener is None:
        raise ConnectionRefused(f"nothing listens on {address} — is the server running in this process?")
    return listener.enqueue_client(timeout)


register_transport(MEMORY_SCHEME, listen_memory, connect_memory)
