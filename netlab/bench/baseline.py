"""The stdlib baselines: the most minimal code that does the job netlab's service does.

How this works: a plain-socket peer (in a child process running this module,
or a thread) echoes or sends bulk; the measuring side is a 16-byte
``sendall``/``recv`` ping-pong, a ``recv_into`` of 64 KiB chunks into one
reused buffer, or, for UDP, a raw one-way blast of datagrams of one size into
a 4 MiB SO_RCVBUF with no acks and no checks. The blast's goodput is the bytes
that actually arrived over the time to the last arrival; it ends on an empty
end-marker datagram, or after a second of silence when the markers were lost
too.
"""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

from netlab.bench.figures import (
    BLAST_END_MARKERS,
    BLAST_SILENCE,
    BULK_CHUNK_SIZE,
    IO_TIMEOUT,
    PING_SIZE,
    RECEIVE_BUFFER_SIZE,
    ROUND_TRIP_TRANSPORTS,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    STREAM_TRANSPORTS,
    UDP_BULK_SIZE,
    UDP_DATAGRAM_SIZES,
    UDP_SOCKET_BUFFER_SIZE,
    UDP_TRANSPORTS,
    BlastFigures,
    BulkFigures,
    RoundTripFigures,
    bench_address,
    check_common,
    check_udp_bulk,
    time_round_trips,
)
from netlab.bench.pinning import pin_server
from netlab.errors import TransportError
from netlab.lab.placement import LOOPBACK, Placement
from netlab.proto.seq.wire import MAX_DATAGRAM_SIZE
from netlab.service.launch import ChildProcess, start_child
from netlab.transport import parse_address

_SIZE_HEADER = 8
_LENGTH_HEADER = 4
_DATAGRAM_SIZE_HEADER = 4
#: Linux socket options the socket module does not export (root may exceed rmem_max).
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33


def baseline_round_trips(
    transport: str,
    *,
    count: int = 10_000,
    duration: float | None = None,
    payload_size: int = PING_SIZE,
    placement: str = "process",
    hosts: Placement = LOOPBACK,
) -> RoundTripFigures:
    """Time a plain stdlib ping-pong of ``payload_size`` bytes against an echoing peer.

    ``hosts`` puts the peer in the server's network namespace and this end in the client's (loopback by default).
    """
    check_common(transport, placement, count, payload_size, ROUND_TRIP_TRANSPORTS)
    ping = b"p" * payload_size
    with _baseline_peer(transport, "echo", placement, hosts) as sock:
        buffer = bytearray(payload_size)
        view = memoryview(buffer)

        def one_round_trip() -> None:
            sock.sendall(ping)
            received = 0
            while received < payload_size:
                got = sock.recv_into(view[received:])
                if not got:
                    raise TransportError("the baseline peer closed the connection")
                received += got

        return time_round_trips(one_round_trip, count, duration)


def baseline_length_round_trips(transport: str, *, count: int = 10_000, duration: float | None = None,
                                payload_size: int = PING_SIZE, placement: str = "process") -> RoundTripFigures:
    """Time the minimal length-prefixed stdlib ping-pong: a 4-byte big-endian length, then the payload, each way.

    The peer reads each frame's header and payload and answers with one ``sendall``
    of a frame; this is the floor for any framed protocol written in Python.
    """
    check_common(transport, placement, count, payload_size, STREAM_TRANSPORTS)
    frame = len(b"p" * payload_size).to_bytes(_LENGTH_HEADER, "big") + b"p" * payload_size
    with _baseline_peer(transport, "length", placement) as sock:
        receive_exactly = _exact_receiver(sock)

        def one_round_trip() -> None:
            sock.sendall(frame)
            receive_exactly(int.from_bytes(receive_exactly(_LENGTH_HEADER), "big"))

        return time_round_trips(one_round_trip, count, duration)


def _exact_receiver(sock: socket.socket) -> Callable[[int], bytes]:
    """A function that reads exactly N bytes from ``sock`` (TransportError at end of stream)."""
    buffer = bytearray(RECEIVE_BUFFER_SIZE)
    view = memoryview(buffer)
    recv_into = sock.recv_into

    def receive_exactly(size: int) -> bytes:
        received = 0
        while received < size:
            got = recv_into(view[received:size])
            if not got:
                raise TransportError("the baseline peer closed the connection")
            received += got
        return bytes(view[:size])

    return receive_exactly


def baseline_bulk(transport: str, *, payload_size: int = 256 * 2**20, placement: str = "process",
                  hosts: Placement = LOOPBACK) -> BulkFigures:
    """Time a plain stdlib transfer: the peer ``sendall``s 64 KiB chunks, we ``recv_into`` one buffer.

    ``hosts`` as in :func:`baseline_round_trips`.
    """
    check_common(transport, placement, 1, payload_size)
    with _baseline_peer(transport, "bulk", placement, hosts) as sock:
        buffer = bytearray(RECEIVE_BUFFER_SIZE)
        started = time.perf_counter()
        sock.sendall(payload_size.to_bytes(_SIZE_HEADER, "big"))
        received = 0
        while received < payload_size:
            got = sock.recv_into(buffer)
            if not got:
                break
            received += got
        seconds = time.perf_counter() - started
    return BulkFigures(received, seconds, received / seconds / 1e6)


def baseline_udp_blast(
    transport: str = "udp",
    *,
    payload_size: int = UDP_BULK_SIZE,
    datagram_size: int = UDP_DATAGRAM_SIZES[0],
    placement: str = "process",
) -> BlastFigures:
    """Time a raw one-way UDP blast: the peer sends ``payload_size`` bytes as datagrams, we count arrivals.

    No acks, no checks, no retransmission: what the receive buffer dropped is
    simply missing from ``received_bytes``.
    """
    check_udp_bulk(transport, None, placement, payload_size, datagram_size)
    buffer = bytearray(datagram_size)
    most_datagrams = -(-payload_size // datagram_size) + BLAST_END_MARKERS
    request = payload_size.to_bytes(_SIZE_HEADER, "big") + datagram_size.to_bytes(_DATAGRAM_SIZE_HEADER, "big")
    with _baseline_peer(transport, "blast", placement) as sock:
        sock.settimeout(BLAST_SILENCE)
        received = 0
        started = last_arrival = time.perf_counter()
        try:
            sock.send(request)
            for _ in range(most_datagrams):
                got = sock.recv_into(buffer)
                if not got:
                    break  # an end marker
                received += got
                last_arrival = time.perf_counter()
        except TimeoutError:
            pass  # the end markers were lost as well: the silence ends the blast
        except OSError as exc:
            raise TransportError(f"the raw udp blast failed: {exc.strerror or exc}; is the peer still running?") \
                from exc
    seconds = last_arrival - started
    goodput = received / seconds / 1e6 if seconds > 0 else 0.0
    return BlastFigures(datagram_size, payload_size, received, seconds, goodput)


def _set_udp_buffers(sock: socket.socket) -> None:
    """A generous SO_RCVBUF and SO_SNDBUF, forced past rmem_max/wmem_max when allowed (as the transport does)."""
    for forced, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF), (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, UDP_SOCKET_BUFFER_SIZE)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, UDP_SOCKET_BUFFER_SIZE)


# -- the stdlib baseline peer --------------------------------------------------------------

def serve_baseline_peer(family: int, kind: int, bind: object, mode: str, report: Callable[[object], None]) -> None:
    """The baseline's peer, plain stdlib: accept one connection, then echo or send bulk.

    ``echo`` sends back whatever arrives until end of stream; ``bulk`` reads an
    8-byte big-endian size and ``sendall``s that many bytes in 64 KiB chunks.
    ``report`` is called with the bound address before accepting. A datagram
    ``kind`` serves :func:`serve_datagram_peer` instead.
    """
    if kind == socket.SOCK_DGRAM:
        serve_datagram_peer(family, bind, mode, report)
        return
    listener = socket.socket(family, kind)
    listener.bind(bind)  # type: ignore[arg-type]
    listener.listen(1)
    report(listener.getsockname())
    connection, _ = listener.accept()
    listener.close()
    with connection:
        if mode == "length":
            _serve_length_frames(connection)
            return
        if mode == "echo":
            while True:
                data = connection.recv(65536)
                if not data:
                    return
                connection.sendall(data)
        header = b""
        while len(header) < _SIZE_HEADER:
            more = connection.recv(_SIZE_HEADER - len(header))
            if not more:
                return
            header += more
        remaining = int.from_bytes(header, "big")
        chunk = bytes(index % 251 for index in range(BULK_CHUNK_SIZE))
        while remaining >= BULK_CHUNK_SIZE:
            connection.sendall(chunk)
            remaining -= BULK_CHUNK_SIZE
        if remaining:
            connection.sendall(chunk[:remaining])
        connection.recv(1)  # wait for the client to close


def _serve_length_frames(connection: socket.socket) -> None:
    """Echo length-prefixed frames (4-byte big-endian length, payload) one ``sendall`` each, until end of stream."""
    receive_exactly = _exact_receiver(connection)
    with suppress(TransportError):
        while True:
            header = receive_exactly(_LENGTH_HEADER)
            connection.sendall(header + receive_exactly(int.from_bytes(header, "big")))


def serve_datagram_peer(family: int, bind: object, mode: str, report: Callable[[object], None]) -> None:
    """The raw UDP baseline's peer: echo datagrams, or blast one transfer.

    ``echo`` sends each datagram back to its sender until an empty one arrives.
    ``blast`` waits for one request (8-byte big-endian total, 4-byte datagram
    size), sends the total as datagrams of that size as fast as the socket
    takes them, then :data:`BLAST_END_MARKERS` empty datagrams. Either ends
    after IO_TIMEOUT seconds of silence or when the requester is gone.
    """
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        _set_udp_buffers(sock)
        sock.bind(bind)  # type: ignore[arg-type]
        sock.settimeout(IO_TIMEOUT)
        report(sock.getsockname())
        try:
            if mode == "echo":
                while True:
                    data, sender = sock.recvfrom(MAX_DATAGRAM_SIZE)
                    if not data:
                        return
                    sock.sendto(data, sender)
            request, sender = sock.recvfrom(_SIZE_HEADER + _DATAGRAM_SIZE_HEADER)
            total = int.from_bytes(request[:_SIZE_HEADER], "big")
            size = int.from_bytes(request[_SIZE_HEADER:], "big")
            sock.connect(sender)
            datagram = bytes(index % 251 for index in range(size))
            full_datagrams, rest = divmod(total, size)
            for _ in range(full_datagrams):
                sock.send(datagram)
            if rest:
                sock.send(datagram[:rest])
            for _ in range(BLAST_END_MARKERS):
                sock.send(b"")
        except OSError:
            return  # silence, or the requester closed its socket (ICMP port unreachable)


@contextmanager
def _baseline_peer(transport: str, mode: str, placement: str,
                   hosts: Placement = LOOPBACK) -> Iterator[socket.socket]:
    """Start the baseline peer in ``mode`` (echo or bulk); yield a connected stdlib socket.

    Over namespaces (``hosts``) the peer's thread or child process starts inside
    the server's namespace (both are born there) and the socket is made in the client's.
    """
    with bench_address(transport, hosts.server_host(transport) if hosts.namespaced else None) as url:
        address = parse_address(url)
        family = address.family
        kind = (socket.SOCK_SEQPACKET if transport == "unix-seqpacket"
                else socket.SOCK_DGRAM if transport in UDP_TRANSPORTS else socket.SOCK_STREAM)
        where = address.path if address.is_unix else address.host
        with hosts.server():
            name, child, thread = _start_peer(family, kind, where, mode, placement)
        with hosts.client():
            sock = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_DGRAM:
                _set_udp_buffers(sock)
            sock.settimeout(IO_TIMEOUT)
            sock.connect(name)  # type: ignore[arg-type]
            yield sock
        finally:
            if kind == socket.SOCK_DGRAM:
                with suppress(OSError):
                    sock.send(b"")  # ends an echoing datagram peer
            sock.close()
            if child is not None:
                child.stop(STOP_TIMEOUT)
            if thread is not None:
                thread.join(STOP_TIMEOUT)


def _start_peer(family: int, kind: int, where: str, mode: str,
                placement: str) -> tuple[object, ChildProcess | None, threading.Thread | None]:
    """Start the peer bound to ``where`` in a thread or a child process; return its address and the child or thread."""
    if placement == "thread":
        bound: list[object] = []
        ready = threading.Event()

        def report(name: object) -> None:
            bound.append(name)
            ready.set()

        bind = where if family == socket.AF_UNIX else (where, 0)
        thread = threading.Thread(target=serve_baseline_peer, args=(family, kind, bind, mode, report),
                                  name="netlab-bench-peer", daemon=True)
        thread.start()
        if not ready.wait(STARTUP_TIMEOUT):
            raise TransportError("the baseline peer did not start within the timeout")
        return bound[0], None, thread
    child = start_child(("peer", str(int(family)), str(int(kind)), where, mode), module="netlab.bench",
                        stdout=subprocess.PIPE)
    pin_server(child.process.pid)
    return _read_peer_name(child), child, None


def _read_peer_name(child: ChildProcess) -> object:
    """The address the child peer printed (a repr), waiting at most STARTUP_TIMEOUT."""
    line = (child.read_line(child.process.stdout, STARTUP_TIMEOUT) or "").strip()
    if not line:
        child.stop(STOP_TIMEOUT)
        raise TransportError("the baseline peer did not start within the timeout")
    return ast.literal_eval(line)


def main(arguments: Sequence[str] | None = None) -> None:
    """A child process of this module: ``peer FAMILY KIND BIND MODE`` (its bound address on stdout)."""
    family, kind, bind, mode = (sys.argv[1:] if arguments is None else arguments)[1:]
    serve_baseline_peer(int(family), int(kind), bind if int(family) == socket.AF_UNIX else (bind, 0), mode,
                        lambda name: print(repr(name), flush=True))
