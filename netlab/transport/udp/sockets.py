"""The socket side of a UDP endpoint: making sockets, addresses, batched reads, ICMP reports.

How this works: every system call on a UDP socket lives here. Sockets are
blocking (a reader waits in ``recvmsg`` itself, bounded by SO_RCVTIMEO);
every other call passes MSG_DONTWAIT. :func:`read_batch` reads up to a batch
of datagrams and returns socket errors instead of raising them; ICMP errors
(port or host unreachable, message too big) surface as such errors on a
connected socket, and on a listener's error queue (IP_RECVERR), which
:func:`read_error_queue` drains.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Sequence
from typing import Any

from netlab.errors import AddressError
from netlab.transport.address import UDP_SCHEMES, Address, parse_address, resolve
from netlab.transport.udp.options import ListenerStatistics, UdpOptions

#: Linux socket option numbers the socket module does not export.
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33
#: Most datagrams, and bytes, read before the state machines get to run (small
#: batches of large datagrams let ACKs leave sooner).
BATCH = 64
_BATCH_BYTES = 128 * 1024
#: UDP segmentation offload (Linux >= 4.18, <linux/udp.h>): one ``sendmsg`` of
#: up to 64 equal datagrams (UDP_SEGMENT), and one ``recvmsg`` of the datagrams
#: that arrived as one such send, with their size in a control message (UDP_GRO).
_SOL_UDP = 17
_UDP_SEGMENT = 103
_UDP_GRO = 104
#: The kernel's UDP_MAX_SEGMENTS, and the most bytes one send may hold (one IPv4 datagram's payload).
MAX_SEGMENTS = 64
MAX_SEGMENTED_BYTES = 65507
_SEGMENT_SIZE = struct.Struct("@H")
_GRO_SIZE = struct.Struct("@i")
_GRO_ANCILLARY = socket.CMSG_SPACE(_GRO_SIZE.size)
#: A coalesced read holds at most one send's worth of datagrams.
_GRO_BUFFER = 65535
#: errnos of a segmented send the kernel, route or device cannot do (the datagrams are then sent one by one).
SEGMENTATION_REFUSED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
#: Plain ints: socket's flags are IntFlags, whose ``&`` and ``|`` run Python code per datagram.
_MSG_TRUNC = int(socket.MSG_TRUNC)
MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_TIMEVAL = struct.Struct("@ll")
#: errnos that report an ICMP error from the network rather than a local failure.
ICMP_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMSGSIZE}
)


def open_socket(
    address: Address | str, options: UdpOptions, *, passive: bool
) -> tuple[Address, tuple[Any, ...], socket.socket]:
    """Check and resolve a udp/udp6 address and make a socket for it (not yet bound or connected).

    Returns:
        ``(address, socket address, socket)``.
    Raises:
        AddressError: not a UDP address, unresolvable, or no socket can be made.
    """
    checked = check_scheme(address)
    sockaddr = resolve(checked, socket.SOCK_DGRAM, passive)
    return checked, sockaddr, make_socket(checked, options)


def make_socket(address: Address, options: UdpOptions) -> socket.socket:
    """A blocking UDP socket of the address's family with the configured buffer sizes.

    Raises:
        AddressError: the family is unavailable or the socket cannot be set up.
    """
    try:
        sock = socket.socket(address.family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise AddressError(
            f"cannot open a UDP socket for {address}: {exc.strerror or exc}"
            + (" (is IPv6 enabled on this machine?)" if address.family == socket.AF_INET6 else "")
        ) from exc
    try:
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for forced, plain in (
            (_SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (_SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, forced, options.socket_buffer_size)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, plain, options.socket_buffer_size)
        # Blocking, so a reader waits in recvmsg itself (SO_RCVTIMEO bounds it);
        # every other call passes MSG_DONTWAIT.
        sock.setblocking(True)
    except OSError as exc:
        sock.close()
        raise AddressError(f"cannot set up a UDP socket for {address}: {exc.strerror or exc}") from exc
    return sock


def check_scheme(address: Address | str) -> Address:
    """``address`` parsed, or AddressError when it is not a udp/udp6 address."""
    parsed = parse_address(address) if isinstance(address, str) else address
    if parsed.scheme not in UDP_SCHEMES:
        raise AddressError(
            f"{parsed} is not a UDP address: use udp://host:port or udp6://[host]:port"
        )
    return parsed


def url_of(sockaddr: Any, scheme: str = "udp") -> str:
    """The ``udp://`` or ``udp6://`` URL of a socket address."""
    host, port = sockaddr[0], sockaddr[1]
    if ":" in host and scheme == "udp":
        scheme = "udp6"
    return str(Address(scheme=scheme, host=host, port=port))


def enable_error_queue(sock: socket.socket, family: int) -> None:
    """Ask the kernel to queue ICMP errors for this unconnected socket (IP_RECVERR)."""
    level, option = (
        (socket.IPPROTO_IPV6, _IPV6_RECVERR)
        if family == socket.AF_INET6
        else (socket.IPPROTO_IP, _IP_RECVERR)
    )
    sock.setsockopt(level, option, 1)


def set_receive_timeout(sock: socket.socket, milliseconds: int) -> None:
    """Make a blocking ``recvmsg`` on ``sock`` return after ``milliseconds`` (at least 1)."""
    sock.setsockopt(
        socket.SOL_SOCKET,
        socket.SO_RCVTIMEO,
        _TIMEVAL.pack(milliseconds // 1000, milliseconds % 1000 * 1000),
    )


def is_loopback(sockaddr: Any) -> bool:
    """True when a socket address is on loopback (127.0.0.0/8, ::1, or 127.x mapped into IPv6)."""
    host = sockaddr[0]
    return host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")


def can_segment(sock: socket.socket) -> bool:
    """True when the kernel knows UDP_SEGMENT on this socket (a send may still refuse it: see SEGMENTATION_REFUSED)."""
    try:
        sock.getsockopt(_SOL_UDP, _UDP_SEGMENT)
    except OSError:
        return False
    return True


def enable_coalesced_reads(sock: socket.socket) -> bool:
    """Ask for UDP_GRO: a segmented send arrives as one read, split by :func:`read_batch`. False if refused."""
    try:
        sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
    except OSError:
        return False
    return True


def send_datagrams(sock: socket.socket, datagrams: Sequence[Sequence[bytes | memoryview]], peer: Any) -> None:
    """One ``sendmsg`` per datagram (header and payload gathered). ``peer`` None: the connected peer.

    Raises OSError as ``sendmsg`` does (the datagrams before it were sent).
    """
    sendmsg = sock.sendmsg
    if peer is None:
        for datagram in datagrams:
            sendmsg(datagram, (), MSG_DONTWAIT)
    else:
        for datagram in datagrams:
            sendmsg(datagram, (), MSG_DONTWAIT, peer)


def send_segmented(sock: socket.socket, parts: list[bytes | memoryview], size: int, peer: Any) -> None:
    """One ``sendmsg`` of datagrams of ``size`` bytes (the last may be shorter), the kernel cutting ``parts``' bytes.

    ``peer`` None: the connected peer. Raises OSError as ``sendmsg`` does.
    """
    ancillary = [(_SOL_UDP, _UDP_SEGMENT, _SEGMENT_SIZE.pack(size))]
    if peer is None:
        sock.sendmsg(parts, ancillary, MSG_DONTWAIT)
    else:
        sock.sendmsg(parts, ancillary, MSG_DONTWAIT, peer)


def read_batch(
    sock: socket.socket, size_limit: int, first_flags: int, stats: ListenerStatistics, coalesced: bool = False
) -> tuple[list[tuple[bytes, Any]], list[OSError]]:
    """Read up to a batch of datagrams; the first read uses ``first_flags`` (0 blocks), the rest never block.

    Datagrams larger than ``size_limit`` (MSG_TRUNC) are counted and dropped.
    ``coalesced``: the socket has UDP_GRO on, so one read may hold several
    datagrams of one segmented send; they are split by the size the kernel
    reports and returned one by one, as if read one at a time.

    Returns:
        ``([(datagram, sender address), ...], [socket errors met])``.
    """
    batch: list[tuple[bytes, Any]] = []
    errors: list[OSError] = []
    recvmsg = sock.recvmsg
    buffer_size, ancillary_size = (max(size_limit, _GRO_BUFFER), _GRO_ANCILLARY) if coalesced else (size_limit, 0)
    batch_bytes = 0
    flags_in = first_flags
    for _ in range(BATCH):
        try:
            data, ancillary, flags, address = recvmsg(buffer_size, ancillary_size, flags_in)
        except BlockingIOError:
            break
        except InterruptedError:
            continue
        except OSError as exc:
            errors.append(exc)
            if len(errors) > 1:
                break
            flags_in = MSG_DONTWAIT
            continue
        flags_in = MSG_DONTWAIT
        size = len(data)
        segment = (_segment_size(ancillary) or size) if ancillary else size
        count = 1 if segment >= size else -(-size // segment)
        stats.datagrams_received += count
        stats.bytes_received += size
        if flags & _MSG_TRUNC or segment > size_limit:
            stats.oversized += count
            continue
        if count == 1:
            batch.append((data, address))
        else:
            batch.extend([(data[start : start + segment], address) for start in range(0, size, segment)])
        batch_bytes += size
        if size < size_limit or batch_bytes >= _BATCH_BYTES:
            # Not a full datagram (or segment run), so probably not part of a burst: skip
            # the extra recvmsg that would only say EAGAIN (the next wait catches more).
            break
    return batch, errors


def _segment_size(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The datagram size UDP_GRO reports for a coalesced read (0: none reported)."""
    for level, kind, value in ancillary:
        if level == _SOL_UDP and kind == _UDP_GRO and len(value) >= _GRO_SIZE.size:
            return int(_GRO_SIZE.unpack_from(value)[0])
    return 0


def read_error_queue(sock: socket.socket) -> list[Any]:
    """Drain queued ICMP reports (IP_RECVERR); return the addresses they concern."""
    addresses = []
    for _ in range(BATCH):
        try:
            _, _, _, address = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except OSError:
            break
        addresses.append(address)
    return addresses
