"""TCP over IPv4 or IPv6 (``tcp4://`` and ``tcp6://``); the family is a parameter.

How this works: the family comes from the address scheme (AF_INET for tcp4,
AF_INET6 with IPV6_V6ONLY=1 for tcp6, so a tcp6 listener never answers IPv4).
Listeners set SO_REUSEADDR so a restarted server can bind while old connections
sit in TIME_WAIT. Every connection, dialled or accepted, sets TCP_NODELAY: a
framed exchange must never wait ~40 ms on Nagle's algorithm.

Connect timeout: a SYN that reaches a full accept queue is dropped without a
reply, so the client retries it and finally times out: that is ConnectTimeout,
not a refusal. ``timeout=0`` makes one non-blocking connect and looks once
(poll with 0 ms) for the kernel's answer; over loopback the handshake completes
inside the connect call, so this tells "accepted into the queue", "refused" and
"SYN dropped" apart at once.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import struct
from typing import Any

from netlab.errors import (
    AddressError,
    BindError,
    BrokenError,
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
)
from netlab.transport.address import TCP_SCHEMES, Address, resolve
from netlab.transport.registry import DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT, register_transport
from netlab.transport.socket_connection import SocketConnection, SocketListener, describe_timeout, ip_bind_error

_LINGER_RESET = struct.pack("ii", 1, 0)  # struct linger {l_onoff=1, l_linger=0}: close sends RST


class TcpConnection(SocketConnection):
    """A TCP connection (TCP_NODELAY set)."""

    def abort(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST and the peer gets BrokenError."""
        if self._closed:
            return
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # the connection is already dead; closing it is all that is left
        super().abort()


class TcpListener(SocketListener):
    """A listening TCP socket; accepted connections get TCP_NODELAY."""

    def _wrap_accepted(self, sock: socket.socket, peer: Any) -> TcpConnection:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = sock.getsockname()
        except OSError as exc:
            sock.close()
            raise BrokenError(f"a client of {self.address} vanished before its connection was set up") from exc
        scheme = self.address.scheme
        return TcpConnection(sock, _url(scheme, local), _url(scheme, peer))


def listen_tcp(address: Address, backlog: int = DEFAULT_BACKLOG) -> TcpListener:
    """Listen on a tcp4/tcp6 address.

    Args:
        address: a ``tcp4`` or ``tcp6`` address; port 0 picks an ephemeral port.
        backlog: accept queue size (Linux admits backlog+1, capped by somaxconn).
    Returns:
        The listener; ``listener.address.port`` is the real port.
    Raises:
        AddressError (not resolvable), BindError (in use, permission, not local).
    """
    sock, sockaddr = _stream_socket(address, passive=True)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        bound = sock.getsockname()
    except OSError as exc:
        sock.close()
        raise ip_bind_error(address, exc) from exc
    return TcpListener(sock, Address(scheme=address.scheme, host=address.host, port=bound[1]))


def connect_tcp(address: Address, timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
                source_host: str | None = None) -> TcpConnection:
    """Connect to a tcp4/tcp6 address.

    Args:
        address: a ``tcp4`` or ``tcp6`` address.
        timeout: seconds to wait for the handshake; None waits forever; 0 takes
            the kernel's immediate answer.
        source_host: the local address to connect from (e.g. ``127.0.0.2``, so a
            capture on loopback tells the two ends apart); None lets the kernel choose.
    Returns:
        The connection, blocking, with TCP_NODELAY set.
    Raises:
        ConnectionRefused (nothing listens), ConnectTimeout (no answer in time,
        e.g. a full accept queue), ConnectError, AddressError.
    """
    sock, sockaddr = _stream_socket(address, passive=False)
    if source_host is not None:
        try:
            sock.bind((source_host, 0))
        except OSError as exc:
            sock.close()
            raise AddressError(f"cannot connect from {source_host} ({exc.strerror}): give a local address of "
                               f"this host in the {address.scheme} family, e.g. 127.0.0.2") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _connect_within(sock, sockaddr, timeout)
        local, peer = sock.getsockname(), sock.getpeername()
    except TimeoutError as exc:
        sock.close()
        waited = "at once (timeout=0)" if timeout == 0 else f"within {describe_timeout(timeout)}"
        raise ConnectTimeout(
            f"no answer from {address} {waited}: its accept queue may be full (the kernel drops the SYN "
            "silently) or a firewall drops packets; retry or raise the server's backlog"
        ) from exc
    except OSError as exc:
        sock.close()
        raise _connect_error(address, exc) from exc
    return TcpConnection(sock, _url(address.scheme, local), _url(address.scheme, peer))


def _connect_within(sock: socket.socket, sockaddr: tuple[Any, ...], timeout: float | None) -> None:
    """Connect, waiting at most ``timeout`` seconds; leaves the socket blocking."""
    if timeout is None:
        sock.connect(sockaddr)
        return
    sock.setblocking(False)
    code = sock.connect_ex(sockaddr)
    if code == errno.EINPROGRESS:
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        if not poller.poll(math.ceil(timeout * 1000)):
            raise TimeoutError(errno.ETIMEDOUT, "connect timed out")
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))
    sock.setblocking(True)


def _stream_socket(address: Address, *, passive: bool) -> tuple[socket.socket, tuple[Any, ...]]:
    """A new TCP socket of ``address``'s family and the resolved socket address, to listen on or connect to.

    Raises:
        AddressError (not a TCP address, not resolvable); BindError (listening)
        or ConnectError (connecting) when the family's socket cannot be made.
    """
    if address.scheme not in TCP_SCHEMES:
        raise AddressError(f"{address} is not a TCP address: use tcp4://host:port or tcp6://[host]:port")
    sockaddr = resolve(address, socket.SOCK_STREAM, passive=passive)
    try:
        return socket.socket(address.family, socket.SOCK_STREAM), sockaddr
    except OSError as exc:
        error = BindError if passive else ConnectError
        raise error(f"cannot create a {address.scheme} socket ({exc.strerror}): is IPv6 disabled?") from exc


def _url(scheme: str, sockaddr: tuple[Any, ...]) -> str:
    return str(Address(scheme=scheme, host=sockaddr[0], port=sockaddr[1]))


def _connect_error(address: Address, exc: OSError) -> ConnectError:
    if exc.errno == errno.ECONNREFUSED:
        return ConnectionRefused(f"nothing listens on {address} — is the server running?")
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return ConnectError(f"{address} is unreachable ({exc.strerror}): check the host and your routes")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConnectError(
            f"cannot connect to {address}: no usable local address or ephemeral port ({exc.strerror}); "
            "wait for TIME_WAIT connections to clear or check the interface"
        )
    return ConnectError(f"cannot connect to {address}: {exc.strerror or exc}")


register_transport("tcp4", listen_tcp, connect_tcp)
register_transport("tcp6", listen_tcp, connect_tcp)
