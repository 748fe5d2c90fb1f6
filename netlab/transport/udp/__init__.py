"""Sequenced UDP (``udp://`` and ``udp6://``): reliable, ordered messages over datagrams.

How this works: :func:`listen_udp` and :func:`connect_udp` make an
:class:`~netlab.transport.udp.endpoint.Endpoint` (one socket, the sequencing
machines behind it, one loop) and hand out :class:`UdpListener` and
:class:`UdpConnection`, thin fronts that take the endpoint's lock and wait
through its one waiting loop. The parts:

- :mod:`.options`: :class:`UdpOptions` and the endpoint's counters;
- :mod:`.sockets`: every system call (sockets, addresses, batched reads, ICMP reports);
- :mod:`.endpoint`: thread hand-off, the waiting loop, timers, dispatch to the machines.

Sending is done by the calling thread, one ``sendmsg`` per datagram (header and
payload as two buffers, no copy). Garbage, oversized datagrams (MSG_TRUNC) and
ICMP errors are counted in :class:`ListenerStatistics` and never stop the loop.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

from netlab.errors import (
    BrokenError,
    ClosedError,
    ConnectError,
    ConnectTimeout,
    NetlabError,
    ProtocolError,
    ReadTimeout,
    WriteTimeout,
)
from netlab.proto.seq import SequencingAcceptor, SequencingConnection, SequencingStatistics
from netlab.proto.seq.congestion import TraceRow
from netlab.transport.address import UDP_SCHEMES, Address
from netlab.transport.base import DEFAULT_RECEIVE_SIZE, Connection, Listener
from netlab.transport.registry import (
    DEFAULT_BACKLOG,
    DEFAULT_CONNECT_TIMEOUT,
    register_transport,
)
from netlab.transport.socket_connection import ip_bind_error
from netlab.transport.udp.endpoint import Endpoint, Slot
from netlab.transport.udp.options import ListenerStatistics, UdpOptions
from netlab.transport.udp.sockets import enable_error_queue, open_socket, url_of

__all__ = [
    "ListenerStatistics",
    "UdpConnection",
    "UdpListener",
    "UdpOptions",
    "connect_udp",
    "listen_udp",
]


def _raised(error: NetlabError) -> NetlabError:
    """The exception to raise for a connection's stored error.

    A new one each time (one stored error is raised in many threads). A peer
    that broke the sequencing protocol broke this connection only: that is
    raised as BrokenError, a TransportError, so a server loop ends the
    connection and serves on.
    """
    if isinstance(error, ProtocolError):
        return BrokenError(f"the connection broke: {error.message}")
    return type(error)(error.message)


class UdpConnection(Connection):
    """A sequenced UDP connection: each ``send`` arrives as exactly one ``receive``."""

    preserves_boundaries = True

    def __init__(
        self, endpoint: Endpoint, slot: Slot, local_address: str, peer_address: str
    ) -> None:
        """Made by :func:`connect_udp` and :meth:`UdpListener.accept`."""
        self._endpoint = endpoint
        self._slot = slot
        self._machine = slot.machine
        self._closed = False
        self.local_address = local_address
        self.peer_address = peer_address
        self.max_message_size = slot.machine.config.max_message_size
        self.message_fragment_size = slot.machine.fragment_size  # as agreed in the handshake

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Queue ``data`` as one message; it is delivered whole, in order, exactly once.

        An empty message carries no bytes of the stream and is not sent (only
        ``shutdown_write`` or ``close`` ends the stream the peer reads).

        Args:
            data: the message (a message may be larger than a datagram).
            timeout: seconds to wait while the send buffer is full; None waits forever.
        Raises:
            WriteTimeout (the peer does not take our data), BrokenError (peer
            reset, vanished or broke the protocol), ClosedError (we closed or
            shut down writing).
        """
        endpoint, machine, slot = self._endpoint, self._machine, self._slot
        limit = endpoint.options.send_buffer_size

        def queued() -> bool | None:
            if self._closed:
                raise self._closed_error("send on")
            if machine.error is not None:
                raise _raised(machine.error)
            if machine.send_backlog >= limit:
                return None
            if data:
                now = time.monotonic()
                try:
                    machine.send_message(data, now)
                except ClosedError:
                    raise ClosedError(
                        f"sending to {self.peer_address} was shut down: open a new connection"
                    ) from None
                endpoint.after_change(slot, now)
            return True

        def timed_out(timeout: float) -> NetlabError:
            return WriteTimeout(
                f"{self.peer_address} did not take {machine.send_backlog} queued bytes within "
                f"{timeout:g} s: the peer is not reading or the path is lossy"
            )

        with endpoint.lock:
            endpoint.wait_for(queued, slot, timeout, timed_out)

    def receive(
        self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None
    ) -> bytes:
        """Return the next whole message (never cut: ``max_bytes`` does not apply); ``b""`` at end.

        Only the peer's FIN ends the stream: an empty message (which carries no
        bytes of the stream) is skipped.

        Args:
            max_bytes: ignored; a message is returned whole whatever its size.
            timeout: seconds to wait; None waits forever; 0 only looks.
        Raises:
            ReadTimeout, BrokenError (peer reset, vanished or broke the
            sequencing protocol), WriteTimeout (our data went unacknowledged
            past the retry limit), ClosedError (we closed).
        """
        endpoint, machine, slot = self._endpoint, self._machine, self._slot

        def arrived() -> bytes | None:
            if self._closed:
                raise self._closed_error("receive on")
            message = machine.next_message()
            skipped = False
            while message == b"":
                skipped = True
                message = machine.next_message()
            if message is not None or skipped:
                endpoint.after_read(slot)  # reading may have opened the window
            if message is not None:
                return message
            if machine.error is not None:
                raise _raised(machine.error)
            if machine.at_end:
                return b""
            return None

        def timed_out(timeout: float) -> NetlabError:
            return ReadTimeout(f"no message from {self.peer_address} within {timeout:g} s")

        with endpoint.lock:
            return endpoint.wait_for(arrived, slot, timeout, timed_out)

    def _closed_error(self, what: str) -> ClosedError:
        return ClosedError(f"{what} the closed connection to {self.peer_address}: open a new one")

    def shutdown_write(self) -> None:
        """Send FIN after the queued messages: the peer reads ``b""``; we can still receive.

        Raises:
            ClosedError (we closed), the connection's error after a failure.
        """
        endpoint = self._endpoint
        with endpoint.lock:
            if self._closed:
                raise ClosedError(
                    f"shutdown of the closed connection to {self.peer_address}"
                )
            now = time.monotonic()
            self._machine.shutdown_write(now)
            endpoint.after_change(self._slot, now)

    def close(self) -> None:
        """Close both directions; queued messages are still delivered (up to ``linger``). Idempotent."""
        self._close(abort=False)

    def abort(self) -> None:
        """Reset the connection at once: the peer gets BrokenError."""
        self._close(abort=True)

    def _close(self, abort: bool) -> None:
        endpoint, slot = self._endpoint, self._slot
        with endpoint.lock:
            if self._closed:
                return
            self._closed = True
            now = time.monotonic()
            if abort:
                self._machine.reset(now)
            elif self._machine.error is None:
                self._machine.close(now)
            slot.app_closed = True
            slot.close_deadline = now + endpoint.options.linger
            slot.close_ready_fd()
            if slot.machine.connection_id in endpoint.slots:
                endpoint.after_change(slot, now)
            elif not endpoint.slots and not endpoint.listening:
                endpoint.request_stop()
            slot.changed.notify_all()
            endpoint._wake()

    def fileno(self) -> int:
        """A descriptor that is readable while a message, end of stream or an error is ready (-1 after close)."""
        with self._endpoint.lock:
            return self._slot.open_ready_fd()

    def statistics(self) -> SequencingStatistics:
        """Counters, SRTT/RTTVAR/RTO and goodput of this connection end."""
        with self._endpoint.lock:
            return self._machine.statistics(time.monotonic())

    def congestion_trace(self) -> list[TraceRow] | None:
        """A copy of the congestion controller's trace (``congestion_trace`` option), or None."""
        with self._endpoint.lock:
            trace = self._machine.congestion_trace
            return None if trace is None else list(trace)

    def endpoint_statistics(self) -> ListenerStatistics:
        """The socket loop's counters (shared by all connections of a listener)."""
        with self._endpoint.lock:
            return self._endpoint.stats.snapshot()


class UdpListener(Listener):
    """A UDP socket serving many sequenced connections, told apart by connection id."""

    def __init__(self, endpoint: Endpoint, address: Address) -> None:
        """Made by :func:`listen_udp`."""
        self._endpoint = endpoint
        self._closed = False
        self.address = address

    def accept(self, timeout: float | None = None) -> UdpConnection:
        """Wait for a client that completed the cookie handshake.

        Args:
            timeout: seconds to wait; None waits forever; 0 only looks.
        Returns:
            The established connection.
        Raises:
            ReadTimeout when none arrives in time, ClosedError after close().
        """
        endpoint = self._endpoint

        def accepted() -> UdpConnection | None:
            if self._closed:
                raise ClosedError(f"accept on the closed listener {self.address}")
            if not endpoint.accept_queue:
                return None
            slot = endpoint.accept_queue.popleft()
            if not endpoint.accept_queue:
                try:
                    os.eventfd_read(endpoint.accept_ready_fd)
                except BlockingIOError:
                    pass
            return UdpConnection(
                endpoint, slot, str(self.address), url_of(slot.peer, self.address.scheme)
            )

        def timed_out(timeout: float) -> NetlabError:
            return ReadTimeout(f"no connection arrived at {self.address} within {timeout:g} s")

        with endpoint.lock:
            return endpoint.wait_for(accepted, None, timeout, timed_out)

    def close(self) -> None:
        """Stop accepting; accepted connections live on until they close. Idempotent."""
        endpoint = self._endpoint
        with endpoint.lock:
            if self._closed:
                return
            self._closed = True
            endpoint.listening = False
            now = time.monotonic()
            unaccepted = list(endpoint.accept_queue) + list(endpoint.half_open.values())
            endpoint.accept_queue.clear()
            for slot in unaccepted:
                slot.machine.reset(now)  # Never accepted: like TCP, reset it.
                slot.app_closed = True
                endpoint.after_change(slot, now)
                endpoint.forget(slot)
            if not endpoint.slots:
                endpoint.request_stop()
            endpoint.accept_changed.notify_all()
            endpoint._wake()

    def fileno(self) -> int:
        """A descriptor that is readable while a connection waits in the accept queue."""
        return self._endpoint.accept_ready_fd

    def statistics(self) -> ListenerStatistics:
        """Counters of the socket loop and of the stateless handshake."""
        with self._endpoint.lock:
            return self._endpoint.stats.snapshot()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the background thread ended and the socket is closed (after close)."""
        return self._endpoint.stopped.wait(timeout)


def listen_udp(
    address: Address | str,
    backlog: int = DEFAULT_BACKLOG,
    *,
    options: UdpOptions | None = None,
    **changes: Any,
) -> UdpListener:
    """Bind a UDP socket and serve sequenced connections on it.

    Args:
        address: a ``udp`` or ``udp6`` address (or its URL); port 0 picks a free port.
        backlog: established connections waiting for accept() beyond which new
            handshakes are ignored (like a full TCP queue: backlog + 1 admitted).
        options: :class:`UdpOptions`; keyword arguments override single fields.
    Returns:
        The listener; ``listener.address`` carries the bound port.
    Raises:
        AddressError, BindError, UsageError (bad options).
    """
    settings = UdpOptions.build(options, **changes)
    address, sockaddr, sock = open_socket(address, settings, passive=True)
    try:
        sock.bind(sockaddr)
        enable_error_queue(sock, address.family)
    except OSError as exc:
        sock.close()
        raise ip_bind_error(address, exc) from exc
    bound = Address(
        scheme=address.scheme, host=address.host, port=sock.getsockname()[1]
    )
    endpoint = Endpoint(sock, settings, str(bound), is_server=True)
    endpoint.acceptor = SequencingAcceptor(settings.sequencing_config())
    endpoint.stats.handshake = endpoint.acceptor.stats
    endpoint.accept_ready_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    endpoint.backlog = backlog
    endpoint.listening = True
    endpoint.start()
    return UdpListener(endpoint, bound)


def connect_udp(
    address: Address | str,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    *,
    options: UdpOptions | None = None,
    **changes: Any,
) -> UdpConnection:
    """Connect to a sequenced UDP server: cookie handshake within ``timeout``.

    Args:
        address: a ``udp`` or ``udp6`` address (or its URL).
        timeout: seconds for the whole handshake, which resends its datagrams
            with backoff until then; None: until the retry limit.
        options: :class:`UdpOptions`; keyword arguments override single fields.
    Returns:
        The established connection.
    Raises:
        ConnectionRefused (ICMP port unreachable or a RESET), ConnectTimeout,
        AddressError, ConnectError.
    """
    settings = UdpOptions.build(options, **changes)
    address, sockaddr, sock = open_socket(address, settings, passive=False)
    try:
        sock.connect(sockaddr)
    except OSError as exc:
        sock.close()
        raise ConnectError(
            f"cannot connect to {address}: {exc.strerror or exc}"
        ) from exc
    local = url_of(sock.getsockname(), address.scheme)
    endpoint = Endpoint(sock, settings, str(address), is_server=False)
    now = time.monotonic()
    # The state machine bounds the handshake by the connect timeout and says so
    # when it gives up; the wait below is only a safety net.
    config = settings.sequencing_config()
    if timeout is not None:
        config = replace(config, handshake_timeout=timeout)
    machine = SequencingConnection.connect(config, now)
    slot = Slot(machine, sockaddr, endpoint.lock)
    endpoint.slots[machine.connection_id] = slot
    connection = UdpConnection(endpoint, slot, local, str(address))
    endpoint.start()

    def established() -> bool | None:
        if machine.error is not None:
            raise _raised(machine.error)
        return True if machine.is_established else None

    def timed_out(timeout: float) -> NetlabError:
        return ConnectTimeout(
            f"no handshake completed with {address} within {timeout:g} s: is a netlab udp server listening "
            "there, with room in its accept queue?"
        )

    with endpoint.lock:
        endpoint.after_change(slot, now)
        try:
            endpoint.wait_for(established, slot, None if timeout is None else timeout + 1.0, timed_out)
        except NetlabError:
            slot.app_closed = True
            endpoint.forget(slot)
            raise
    connection.message_fragment_size = machine.fragment_size  # as agreed in the handshake
    return connection


for _scheme in UDP_SCHEMES:
    register_transport(_scheme, listen_udp, connect_udp)
