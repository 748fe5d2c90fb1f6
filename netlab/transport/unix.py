"""AF_UNIX transports: ``unix://`` (SOCK_STREAM) and ``unix-seqpacket://`` (SOCK_SEQPACKET).

How this works, listening side:

1. The socket's directory is created with mode 0700 if it is missing (one
   level only). The default runtime directory (``/tmp/netlab-<uid>`` or
   ``$XDG_RUNTIME_DIR/netlab``) must already be ours and private, or we refuse.
2. Something already at the path is handled with care: a regular file, a
   directory or a link is never touched (BindError says what is there); a
   socket file is probed with a non-blocking connect. ECONNREFUSED means a dead
   server left it: it is removed. A connection or EAGAIN (a full queue) means a
   live server: BindError. (A live server sees the probe as a client that
   connects and closes at once.)
3. bind, chmod 0600, then listen: nobody can connect before ``listen``, so the
   chmod leaves no window. The inode is remembered, and ``close`` removes the
   file only if the path still names that inode.
4. ``accept`` reads the peer's SO_PEERCRED (pid, uid, gid). Peers whose uid is
   not allowed (default: our own uid and root) are closed and reported by
   raising AuthError; a server loop logs it and accepts the next one.

Connecting side, and a Linux trap: on a full AF_UNIX listener a non-blocking
connect fails with EAGAIN at once, and Python's ``settimeout`` makes the socket
non-blocking, so ``settimeout(5); connect()`` raises BlockingIOError without
waiting. We connect in blocking mode with SO_SNDTIMEO set to the timeout
instead: the kernel sleeps until the server accepts (the connect then succeeds
at that moment) or the timeout passes (EAGAIN -> ConnectTimeout). This was
measured on Linux: the wait lasts the timeout rounded up to a jiffy, and an
accept wakes the sleeper at once. ``timeout=0`` is one non-blocking attempt: a
full queue then raises ConnectionRefused whose ``__cause__`` is the
BlockingIOError (errno EAGAIN), so experiments can tell "EAGAIN at once" from
ConnectTimeout ("waited and gave up").
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple, cast

from netlab.errors import (
    AddressError,
    AuthError,
    BindError,
    BrokenError,
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
    ReadError,
    TransportError,
    WriteError,
)
from netlab.transport.address import UNIX_SCHEMES, Address, runtime_directory
from netlab.transport.base import DEFAULT_RECEIVE_SIZE
from netlab.transport.registry import DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT, register_transport
from netlab.transport.socket_connection import SocketConnection, SocketListener, describe_timeout, timeval

SOCKET_FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
#: Linux refuses a seqpacket message longer than the sender's SO_SNDBUF minus this overhead.
SEQPACKET_OVERHEAD = 32
_CREDENTIALS = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


class PeerCredentials(NamedTuple):
    """Who is at the other end of a UNIX connection, as the kernel saw it at connect time."""

    pid: int
    uid: int
    gid: int


def read_peer_credentials(sock: socket.socket) -> PeerCredentials:
    """Read SO_PEERCRED from a connected AF_UNIX socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    return PeerCredentials(*_CREDENTIALS.unpack(raw))


class UnixConnection(SocketConnection):
    """A connected AF_UNIX stream socket.

    AF_UNIX has no RST: after ``abort()`` the peer gets BrokenError (ECONNRESET)
    only if data it sent us is still unread; otherwise it reads end of stream.

    Attributes:
        peer_credentials: the peer's (pid, uid, gid) from SO_PEERCRED.
    """

    def __init__(
        self, sock: socket.socket, local_address: str, peer_address: str, peer_credentials: PeerCredentials
    ) -> None:
        """Wrap a connected AF_UNIX socket whose peer credentials were read already."""
        super().__init__(sock, local_address, peer_address)
        self.peer_credentials = peer_credentials


class SeqpacketConnection(UnixConnection):
    """A connected AF_UNIX SOCK_SEQPACKET socket: each send arrives as one receive.

    Limits: one message holds at most ``max_message_size`` bytes (the sender's
    SO_SNDBUF minus 32; 212,960 with Linux defaults). ``receive(max_bytes)``
    must be given at least the size of the message waiting, or the kernel cuts
    it and we raise ReadError. An empty message would read as end of stream, so
    sending ``b""`` sends nothing: only close ends the stream.
    """

    preserves_boundaries = True

    def __init__(
        self, sock: socket.socket, local_address: str, peer_address: str, peer_credentials: PeerCredentials
    ) -> None:
        """Wrap a connected seqpacket socket; reads its message size limit once."""
        super().__init__(sock, local_address, peer_address, peer_credentials)
        self.max_message_size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - SEQPACKET_OVERHEAD

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send ``data`` as one message; ``b""`` sends nothing (an empty message would read as end of stream).

        Raises:
            WriteError (longer than ``max_message_size``), WriteTimeout, BrokenError, ClosedError.
        """
        if data:
            super().send(data, timeout)

    def send_parts(self, parts: Sequence[bytes], timeout: float | None = None) -> None:
        """Send the concatenation of ``parts`` as one message; nothing when they are all empty.

        Raises:
            as :meth:`send`.
        """
        if any(parts):
            super().send_parts(parts, timeout)

    def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None) -> bytes:
        """Return one whole message of at most ``max_bytes``; ``b""`` at end of stream.

        Raises:
            ReadError (the message was longer than max_bytes and was cut),
            ReadTimeout, BrokenError, ClosedError.
        """
        try:
            data, _, flags, _ = self._socket.recvmsg(max_bytes, 0, self._receive_flags(timeout))
        except OSError as exc:
            raise self._receive_error(exc, timeout) from exc
        if flags & socket.MSG_TRUNC:
            raise self._truncated(max_bytes)
        if not data and self._closed:
            raise self._closed_error("receive")
        return data

    def receive_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        """Receive one whole message into ``buffer``; return its size, 0 at end of stream.

        Raises:
            ReadError (the message was longer than the buffer and was cut),
            ReadTimeout, BrokenError, ClosedError.
        """
        try:
            count, _, flags, _ = self._socket.recvmsg_into([buffer], 0, self._receive_flags(timeout))
        except OSError as exc:
            raise self._receive_error(exc, timeout) from exc
        if flags & socket.MSG_TRUNC:
            raise self._truncated(len(buffer))
        if not count and self._closed:
            raise self._closed_error("receive")
        return count

    def _truncated(self, max_bytes: int) -> ReadError:
        return ReadError(
            f"a message from {self.peer_address} was longer than max_bytes={max_bytes} and the kernel cut it: "
            f"receive with max_bytes of at least the largest message (up to {self.max_message_size})"
        )

    def _send_error(self, exc: OSError, timeout: float | None) -> TransportError:
        if exc.errno == errno.EMSGSIZE and not self._closed:
            return WriteError(
                f"a seqpacket message is limited to {self.max_message_size} bytes: split the data into smaller messages"
            )
        return super()._send_error(exc, timeout)


class UnixListener(SocketListener):
    """A listening AF_UNIX socket that owns its socket file and checks peer uids.

    Attributes:
        allowed_uids: peer uids ``accept`` lets through.
    """

    def __init__(
        self, sock: socket.socket, address: Address, file_identity: tuple[int, int], allowed_uids: frozenset[int]
    ) -> None:
        """Wrap a bound, listening socket whose file has (st_dev, st_ino) ``file_identity``."""
        super().__init__(sock, address)
        self._file_identity = file_identity
        self.allowed_uids = allowed_uids

    def accept(self, timeout: float | None = None) -> UnixConnection:
        """Wait for the next connection from an allowed uid.

        Args:
            timeout: seconds to wait; None waits forever, 0 polls once.
        Returns:
            The connection, with ``peer_credentials`` set.
        Raises:
            AuthError (a peer with another uid connected; it was closed — call
            accept again), ReadTimeout, ClosedError, TransportError.
        """
        return cast(UnixConnection, super().accept(timeout))

    def _wrap_accepted(self, sock: socket.socket, peer: Any) -> UnixConnection:
        try:
            credentials = read_peer_credentials(sock)
        except OSError as exc:
            sock.close()
            raise BrokenError(f"a client of {self.address} vanished before its connection was set up") from exc
        if credentials.uid not in self.allowed_uids:
            sock.close()
            raise AuthError(
                f"rejected a client of {self.address} with uid {credentials.uid} (pid {credentials.pid}): "
                f"only uids {sorted(self.allowed_uids)} may connect; pass allowed_uids to admit it"
            )
        peer_address = f"{self.address.scheme}://{peer}" if peer else _unnamed(self.address.scheme, credentials.pid)
        connection_class = SeqpacketConnection if self.address.scheme == "unix-seqpacket" else UnixConnection
        return connection_class(sock, str(self.address), peer_address, credentials)

    def close(self) -> None:
        """Stop listening and remove the socket file if it is still the one we created."""
        if self._closed:
            return
        path = self.address.path
        try:
            info = os.lstat(path)
            if (info.st_dev, info.st_ino) == self._file_identity:
                os.unlink(path)
        except OSError:
            pass  # already removed or replaced by someone else: not ours to delete
        super().close()


def listen_unix(
    address: Address, backlog: int = DEFAULT_BACKLOG, allowed_uids: Collection[int] | None = None
) -> UnixListener:
    """Listen on a ``unix://`` or ``unix-seqpacket://`` path.

    Args:
        address: the socket path; see the module comment for how an existing
            file is treated.
        backlog: accept queue size (Linux admits backlog+1).
        allowed_uids: peer uids to accept; default our own uid and root.
    Returns:
        The listener; its socket file has mode 0600.
    Raises:
        BindError (a live server, a non-socket file, permission, missing or
        unsafe directory), AddressError (not a UNIX address).
    """
    socket_type = _socket_type(address)
    path = address.path
    _prepare_directory(address)
    _remove_stale_socket(address, socket_type)
    sock = socket.socket(socket.AF_UNIX, socket_type)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise _bind_error(address, exc) from exc
    try:
        os.chmod(path, SOCKET_FILE_MODE)
        info = os.lstat(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        _unlink_if_present(path)
        raise BindError(f"cannot set up the socket file {path}: {exc.strerror or exc}") from exc
    uids = frozenset(allowed_uids) if allowed_uids is not None else frozenset({os.getuid(), 0})
    return UnixListener(sock, address, (info.st_dev, info.st_ino), uids)


def connect_unix(address: Address, timeout: float | None = DEFAULT_CONNECT_TIMEOUT) -> UnixConnection:
    """Connect to a ``unix://`` or ``unix-seqpacket://`` path.

    Args:
        address: the server's socket path.
        timeout: seconds to wait, including for room in a full accept queue;
            None waits forever; 0 makes one non-blocking attempt.
    Returns:
        The connection (a SeqpacketConnection for ``unix-seqpacket``), blocking,
        with ``peer_credentials`` set to the server's.
    Raises:
        ConnectionRefused (no socket file, nothing listening, or — only with
        timeout=0 — a full queue), ConnectTimeout (the queue stayed full for
        the whole timeout), ConnectError (permission, wrong socket type).
    """
    socket_type = _socket_type(address)
    sock = socket.socket(socket.AF_UNIX, socket_type)
    try:
        if timeout is None:
            sock.connect(address.path)
        elif timeout == 0:
            sock.setblocking(False)
            sock.connect(address.path)
            sock.setblocking(True)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(timeout))
            sock.connect(address.path)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(None))
        credentials = read_peer_credentials(sock)
    except OSError as exc:
        sock.close()
        raise _connect_error(address, exc, timeout) from exc
    connection_class = SeqpacketConnection if socket_type == socket.SOCK_SEQPACKET else UnixConnection
    return connection_class(sock, _unnamed(address.scheme, os.getpid()), str(address), credentials)


def _socket_type(address: Address) -> int:
    if address.scheme not in UNIX_SCHEMES:
        raise AddressError(f"{address} is not a UNIX address: use unix:///path or unix-seqpacket:///path")
    return socket.SOCK_SEQPACKET if address.scheme == "unix-seqpacket" else socket.SOCK_STREAM


def _unnamed(scheme: str, pid: int) -> str:
    """How an unnamed AF_UNIX end (a client that never bound) is shown: by its process."""
    return f"{scheme}:pid={pid}"


def _prepare_directory(address: Address) -> None:
    """Create the socket's directory 0700 if missing; insist the default one is private."""
    directory = os.path.dirname(address.path)
    try:
        os.mkdir(directory, DIRECTORY_MODE)
        os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode is filtered by the umask; make it exact
        return
    except FileExistsError:
        pass
    except FileNotFoundError as exc:
        raise BindError(
            f"cannot create {directory} for {address}: {os.path.dirname(directory)} does not exist; create it first"
        ) from exc
    except OSError as exc:
        raise BindError(f"cannot create the socket directory {directory}: {exc.strerror or exc}") from exc
    if os.path.normpath(directory) != os.path.normpath(runtime_directory()):
        return
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise BindError(
            f"refusing the runtime directory {directory}: it must be a directory owned by uid {os.getuid()} "
            f"with mode 0700 (found owner {info.st_uid}, mode {stat.filemode(info.st_mode)}); remove it"
        )


def _remove_stale_socket(address: Address, socket_type: int) -> None:
    """Remove a socket file nobody listens on; refuse anything else at the path."""
    path = address.path
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise BindError(f"cannot inspect {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISSOCK(info.st_mode):
        raise BindError(
            f"a {_file_kind(info.st_mode)} is at {path}, not a socket: refusing to replace it; "
            "remove it or pick another path"
        )
    probe = socket.socket(socket.AF_UNIX, socket_type)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        _unlink_if_present(path)
        return
    except BlockingIOError:
        pass  # EAGAIN: the queue is full, so a live server owns it
    except OSError as exc:
        if exc.errno != errno.EPROTOTYPE:  # EPROTOTYPE: a live server of the other socket type
            raise BindError(
                f"cannot tell whether the socket {path} is in use ({exc.strerror}): remove it if no server runs"
            ) from exc
    finally:
        probe.close()
    raise BindError(f"{address} is in use — is another netlab server running? stop it or pick another path")


def _unlink_if_present(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # someone else removed it meanwhile: the path is free either way


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISREG(mode):
        return "regular file"
    return "non-socket file"


def _bind_error(address: Address, exc: OSError) -> BindError:
    path = address.path
    if exc.errno == errno.EADDRINUSE:
        return BindError(f"{address} is in use — is another netlab server running? stop it or pick another path")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BindError(f"permission denied creating {path}: the directory is not writable by you; pick another path")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return BindError(f"the directory of {path} does not exist: create it or pick another path")
    if exc.errno == errno.ENAMETOOLONG:
        return BindError(f"the socket path {path} is too long for the kernel: pick a shorter path")
    return BindError(f"cannot listen on {address}: {exc.strerror or exc}")


def _connect_error(address: Address, exc: OSError, timeout: float | None) -> ConnectError:
    path = address.path
    if exc.errno == errno.ENOENT:
        return ConnectionRefused(f"no socket file at {path} — is the server running?")
    if exc.errno == errno.ECONNREFUSED:
        return ConnectionRefused(
            f"a socket file is at {path} but nothing listens on it — the server stopped; start it again"
        )
    if exc.errno == errno.EAGAIN:
        if timeout == 0:
            return ConnectionRefused(f"the server's accept queue at {address} is full (EAGAIN at once, timeout=0)")
        return ConnectTimeout(
            f"the server's accept queue at {address} stayed full for {describe_timeout(timeout)}: "
            "the server is not accepting; retry later or raise its backlog"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConnectError(
            f"permission denied connecting to {path}: the socket or its directory belongs to another user"
        )
    if exc.errno == errno.EPROTOTYPE:
        other = "unix" if address.scheme == "unix-seqpacket" else "unix-seqpacket"
        return ConnectError(f"the socket at {path} is of another type: try {other}://{path}")
    if exc.errno == errno.ENOTDIR:
        return ConnectionRefused(f"no socket file at {path}: a part of the path is not a directory")
    return ConnectError(f"cannot connect to {address}: {exc.strerror or exc}")


register_transport("unix", listen_unix, connect_unix)
register_transport("unix-seqpacket", listen_unix, connect_unix)
