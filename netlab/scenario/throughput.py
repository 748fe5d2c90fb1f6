"""Round trips and bulk throughput of the command service, beside a stdlib baseline.

How this works: each measurement runs the same exchange twice on the same
transport in the same run. Once through netlab (``Client.run`` against a real
server: the built-in ``echo`` for round trips, ``blob SIZE`` for bulk) and once
through the most minimal stdlib code that does the same job (a 16-byte
``sendall``/``recv`` ping-pong against a peer that echoes; a peer that
``sendall``s 64 KiB chunks into a ``recv_into`` with one reused buffer). The
row carries both figures and their ratio, so machines and runs can be
compared by ratio, never by absolute numbers. Latencies are per round trip
(``perf_counter_ns``); percentiles are nearest-rank. MB/s is 10**6 bytes per
second. Nothing here prints.

Where the server runs (``placement``): ``process`` starts
``python -m netlab serve`` (and the baseline's peer) in a child process;
``thread`` runs both in a thread of this process. ``process`` is the default:
it is how netlab is deployed, and in a thread the client and the server share
one GIL, so a round trip also pays a GIL hand-off and a bulk transfer cannot
overlap hashing on both ends; what a thread measures is partly the GIL. Both
were measured briefly on a 2-core machine (tcp4, length framing, threaded
model, 10,000 echoes, 128 MiB blob, twice each): the child process gave
27-28k round trips/s (p50 35-36 us) both times; the thread gave 15k and 31k
(p50 73 and 30 us). Bulk MB/s swung widely either way. The child process was
the steadier of the two, which matters more for a ratio than a peak.

The ``blob`` bulk figure includes the service's integrity check: the server and
the client each compute SHA-256 of stdout (about 1.3 GB/s per core here), which
caps netlab's MB/s well below a plain socket copy; that cost is part of the
service and is reported, not hidden.

Sequenced UDP (``udp``, ``udp6``): round trips work as on the streams, against
a raw 16-byte UDP ping-pong (the server is ``netlab serve`` with the transport's
defaults). Bulk has its own measurement, :func:`measure_udp_bulk`: ``blob`` over
a connection whose datagrams are ``datagram_size`` bytes (header included),
beside a raw one-way blast of datagrams of that size with no acks and no
checks, into a 4 MiB SO_RCVBUF (the transport's own size). The blast's goodput
is the bytes that actually arrived over the time to the last arrival; it ends
on an empty end-marker datagram, or after a second of silence when the markers
were lost too. A seeded impairment, when given, applies to both ends (server
and client) as written; the bench's default drops 5% of what each end
receives. The blob's sender is the server, so the retransmission counters come
from the server's connection: the bulk server is the same service (listener,
quiet log) started by :func:`serve_udp_with_statistics` rather than
``netlab serve``, because it must hand those counters back (as a JSON line on
stdout when its stdin closes). Child processes run this module (:func:`main`)
or ``netlab serve`` through the service's launcher.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass

from netlab.errors import TransportError, UsageError
from netlab.proto.seq import FAST_FLOOR, SequencingStatistics
from netlab.proto.seq.wire import HEADER_SIZE, MAX_DATAGRAM_SIZE
from netlab.service.client import Client
from netlab.service.launch import ChildProcess, ChildServer, server_in_thread, start_child
from netlab.service.policy import DEFAULT_OUTPUT_CAP, Policy
from netlab.transport import connect, parse_address
from netlab.transport.address import STREAM_SCHEMES, UDP_SCHEMES, UNIX_SCHEMES, ephemeral_url
from netlab.transport.base import Connection
from netlab.transport.impairment import parse_impairment
from netlab.transport.udp import UdpConnection, UdpOptions

STREAM_TRANSPORTS = STREAM_SCHEMES
UDP_TRANSPORTS = UDP_SCHEMES
ROUND_TRIP_TRANSPORTS = STREAM_TRANSPORTS + UDP_TRANSPORTS
#: The transport's default datagram size, and one that nearly fills a loopback datagram.
UDP_DATAGRAM_SIZES = (1200, 60_000)
#: Each end drops 5% of the datagrams it receives, the same seeded way on every run.
UDP_LOSS_IMPAIRMENT = "loss=5%,seed=7,path=receive"
UDP_BULK_SIZE = 64 * 2**20
#: SO_RCVBUF and SO_SNDBUF of the raw UDP baseline: the sequenced transport's default.
UDP_SOCKET_BUFFER_SIZE = 4 * 2**20
#: Empty datagrams that end a raw blast, and the silence that ends it when they are lost.
BLAST_END_MARKERS = 3
BLAST_SILENCE = 1.0
PLACEMENTS = ("process", "thread")
#: Framings whose client can tell where a bulk reply ends (raw cannot).
BULK_FRAMINGS = ("ack", "line", "length")
PING_SIZE = 16
BULK_CHUNK_SIZE = 64 * 1024
RECEIVE_BUFFER_SIZE = 256 * 1024
STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
IO_TIMEOUT = 60.0
_SIZE_HEADER = 8
_DATAGRAM_SIZE_HEADER = 4
#: Linux socket options the socket module does not export (root may exceed rmem_max).
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33
_SERVING_PREFIX = "netlab: serving on "


@dataclass(frozen=True)
class RoundTripFigures:
    """One side of a round-trip measurement.

    Attributes:
        round_trips: how many were timed (after the warm-up).
        seconds: their total wall time.
        per_second: round_trips / seconds.
        p50_us, p99_us, p999_us: per-round-trip latency percentiles, microseconds.
    """

    round_trips: int
    seconds: float
    per_second: float
    p50_us: float
    p99_us: float
    p999_us: float


@dataclass(frozen=True)
class BulkFigures:
    """One side of a bulk measurement: bytes received exactly, and how fast."""

    received_bytes: int
    seconds: float
    megabytes_per_second: float


@dataclass(frozen=True)
class RoundTripRow:
    """Built-in ``echo`` round trips through netlab beside a stdlib ping-pong."""

    transport: str
    framing: str
    model: str
    placement: str
    payload_bytes: int
    round_trips: int
    per_second: float
    p50_us: float
    p99_us: float
    p999_us: float
    baseline_round_trips: int
    baseline_per_second: float
    baseline_p50_us: float
    baseline_p99_us: float
    baseline_p999_us: float
    #: per_second / baseline_per_second
    ratio: float


@dataclass(frozen=True)
class BulkRow:
    """``blob SIZE`` through netlab beside a stdlib bulk transfer of the same size."""

    transport: str
    framing: str
    model: str
    placement: str
    payload_bytes: int
    received_bytes: int
    seconds: float
    megabytes_per_second: float
    #: the server's SHA-256 matched what arrived (None: not asked, or the framing carries none)
    verified: bool | None
    baseline_received_bytes: int
    baseline_seconds: float
    baseline_megabytes_per_second: float
    #: megabytes_per_second / baseline_megabytes_per_second
    ratio: float


@dataclass(frozen=True)
class BlastFigures:
    """A raw one-way UDP blast: what was sent, what arrived, and how fast it arrived.

    Attributes:
        datagram_size: bytes per datagram (the last may be shorter).
        sent_bytes: bytes the peer sent.
        received_bytes: bytes that arrived (a full receive buffer drops datagrams).
        seconds: from our request to the last datagram that arrived.
        megabytes_per_second: goodput, received_bytes / seconds / 10**6.
    """

    datagram_size: int
    sent_bytes: int
    received_bytes: int
    seconds: float
    megabytes_per_second: float


@dataclass(frozen=True)
class UdpBulkFigures:
    """One ``blob`` over sequenced UDP: what arrived, how fast, and both ends' counters.

    Attributes:
        sender: the server's connection (it sent the blob): retransmissions live here.
        receiver: the client's connection: duplicates and out-of-order arrivals.
    """

    received_bytes: int
    seconds: float
    megabytes_per_second: float
    verified: bool | None
    sender: SequencingStatistics
    receiver: SequencingStatistics


@dataclass(frozen=True)
class UdpBulkRow:
    """``blob SIZE`` over sequenced UDP beside a raw UDP blast of the same size and datagrams."""

    transport: str
    framing: str
    model: str
    placement: str
    datagram_size: int
    #: the impairment spec both ends used ("" for none)
    impairment: str
    rto_floor: float
    payload_bytes: int
    received_bytes: int
    #: completion time of the blob, request to last byte
    seconds: float
    megabytes_per_second: float
    verified: bool | None
    #: the server's (the sender's) retransmissions, by timeout and fast
    retransmits_timeout: int
    retransmits_fast: int
    data_datagrams_sent: int
    #: datagrams the client received twice (spurious retransmissions or duplication)
    duplicates: int
    baseline_sent_bytes: int
    baseline_received_bytes: int
    baseline_seconds: float
    baseline_megabytes_per_second: float
    #: megabytes_per_second / baseline_megabytes_per_second
    ratio: float


# -- public measurements -----------------------------------------------------------


def measure_round_trips(
    transport: str,
    framing: str = "length",
    model: str = "threaded",
    *,
    count: int = 10_000,
    duration: float | None = None,
    payload_size: int = PING_SIZE,
    placement: str = "process",
    baseline: RoundTripFigures | None = None,
) -> RoundTripRow:
    """Time ``echo`` round trips on one persistent connection, and the stdlib ping-pong.

    Args:
        transport: tcp4, tcp6, unix, unix-seqpacket, udp or udp6 (the udp
            server and client use the transport's default options).
        framing: raw, ack, line or length.
        model: iterative, threaded or selector.
        count: round trips to time on each side (a warm-up comes first).
        duration: stop each side after this many seconds even if ``count`` is not reached.
        payload_size: bytes of output per reply (the echo argument plus its newline).
        placement: ``process`` (child process) or ``thread`` for the servers.
        baseline: reuse a baseline measured earlier in this run on this transport.
    Returns:
        The row, with the ratio computed from the two figures.
    Raises:
        UsageError (bad parameters), TransportError (cannot listen or connect).
    """
    _check_common(transport, placement, count, payload_size, ROUND_TRIP_TRANSPORTS)
    if baseline is None:
        baseline = baseline_round_trips(transport, count=count, duration=duration,
                                        payload_size=payload_size, placement=placement)
    service = service_round_trips(transport, framing, model, count=count, duration=duration,
                                  payload_size=payload_size, placement=placement)
    return RoundTripRow(
        transport=transport, framing=framing, model=model, placement=placement, payload_bytes=payload_size,
        round_trips=service.round_trips, per_second=service.per_second,
        p50_us=service.p50_us, p99_us=service.p99_us, p999_us=service.p999_us,
        baseline_round_trips=baseline.round_trips, baseline_per_second=baseline.per_second,
        baseline_p50_us=baseline.p50_us, baseline_p99_us=baseline.p99_us, baseline_p999_us=baseline.p999_us,
        ratio=_ratio(service.per_second, baseline.per_second),
    )


def measure_bulk(
    transport: str,
    framing: str = "length",
    model: str = "threaded",
    *,
    payload_size: int = 256 * 2**20,
    placement: str = "process",
    baseline: BulkFigures | None = None,
    verify: bool = False,
) -> BulkRow:
    """Time one ``blob payload_size`` reply, and a stdlib transfer of the same size.

    Args:
        transport: tcp4, tcp6, unix or unix-seqpacket.
        framing: ack, line or length (raw cannot delimit a bulk reply).
        model: iterative, threaded or selector.
        payload_size: bytes to transfer.
        placement: ``process`` or ``thread`` for the servers.
        baseline: reuse a baseline of the same size measured earlier on this transport.
        verify: ask for the server's SHA-256 and check it (both ends hash, as
            ``netlab exec --verify`` does); the baseline never hashes.
    Returns:
        The row; ``received_bytes`` is what actually arrived on each side.
    Raises:
        UsageError (bad parameters, raw framing), TransportError.
    """
    _check_common(transport, placement, 1, payload_size)
    if framing not in BULK_FRAMINGS:
        raise UsageError(f"the {framing} framing cannot delimit a bulk reply: use one of {', '.join(BULK_FRAMINGS)}")
    if baseline is None:
        baseline = baseline_bulk(transport, payload_size=payload_size, placement=placement)
    service, verified = service_bulk(transport, framing, model, payload_size=payload_size, placement=placement,
                                     verify=verify)
    return BulkRow(
        transport=transport, framing=framing, model=model, placement=placement, payload_bytes=payload_size,
        received_bytes=service.received_bytes, seconds=service.seconds,
        megabytes_per_second=service.megabytes_per_second, verified=verified,
        baseline_received_bytes=baseline.received_bytes, baseline_seconds=baseline.seconds,
        baseline_megabytes_per_second=baseline.megabytes_per_second,
        ratio=_ratio(service.megabytes_per_second, baseline.megabytes_per_second),
    )


def service_round_trips(
    transport: str,
    framing: str = "length",
    model: str = "threaded",
    *,
    count: int = 10_000,
    duration: float | None = None,
    payload_size: int = PING_SIZE,
    placement: str = "process",
) -> RoundTripFigures:
    """Time ``echo`` round trips through a netlab server (see :func:`measure_round_trips`)."""
    _check_common(transport, placement, count, payload_size, ROUND_TRIP_TRANSPORTS)
    argv = ("echo", "x" * (payload_size - 1))
    expected = argv[1].encode() + b"\n"
    with netlab_server(transport, framing, model, placement) as address:
        with Client(address, framing=framing, read_timeout=IO_TIMEOUT) as client:

            def one_round_trip() -> None:
                if client.run(argv).stdout != expected:
                    raise TransportError(f"echo over {transport}/{framing} returned the wrong bytes")

            return _time_round_trips(one_round_trip, count, duration)


def service_bulk(
    transport: str,
    framing: str = "length",
    model: str = "threaded",
    *,
    payload_size: int = 256 * 2**20,
    placement: str = "process",
    verify: bool = False,
) -> tuple[BulkFigures, bool | None]:
    """Time one ``blob`` reply through a netlab server; also return whether it verified (None: not asked)."""
    _check_common(transport, placement, 1, payload_size)
    output_cap = max(payload_size, DEFAULT_OUTPUT_CAP)
    with netlab_server(transport, framing, model, placement, output_cap=output_cap) as address:
        with Client(address, framing=framing, read_timeout=IO_TIMEOUT) as client:
            client.run(("echo", "warm-up"))
            started = time.perf_counter()
            reply = client.run(("blob", str(payload_size)), keep_output=False, verify=verify)
            seconds = time.perf_counter() - started
    received = reply.stdout_bytes
    return BulkFigures(received, seconds, received / seconds / 1e6), reply.verified


def baseline_round_trips(
    transport: str,
    *,
    count: int = 10_000,
    duration: float | None = None,
    payload_size: int = PING_SIZE,
    placement: str = "process",
) -> RoundTripFigures:
    """Time a plain stdlib ping-pong of ``payload_size`` bytes against an echoing peer."""
    _check_common(transport, placement, count, payload_size, ROUND_TRIP_TRANSPORTS)
    ping = b"p" * payload_size
    with _baseline_peer(transport, "echo", placement) as sock:
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

        return _time_round_trips(one_round_trip, count, duration)


def baseline_bulk(transport: str, *, payload_size: int = 256 * 2**20, placement: str = "process") -> BulkFigures:
    """Time a plain stdlib transfer: the peer ``sendall``s 64 KiB chunks, we ``recv_into`` one buffer."""
    _check_common(transport, placement, 1, payload_size)
    with _baseline_peer(transport, "bulk", placement) as sock:
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


def measure_udp_bulk(
    transport: str = "udp",
    framing: str = "length",
    model: str = "threaded",
    *,
    payload_size: int = UDP_BULK_SIZE,
    datagram_size: int = UDP_DATAGRAM_SIZES[0],
    impairment: str | None = None,
    rto_floor: float = FAST_FLOOR,
    placement: str = "process",
    baseline: BlastFigures | None = None,
    verify: bool = False,
) -> UdpBulkRow:
    """Time one ``blob payload_size`` over sequenced UDP, and a raw blast of the same bytes.

    Args:
        transport: udp or udp6.
        framing: ack, line or length.
        model: iterative, threaded or selector.
        payload_size: bytes to transfer.
        datagram_size: largest datagram, header included, on both ends and in the blast.
        impairment: a seeded impairment spec (see ``parse_impairment``) applied
            to both ends as written; the raw blast is never impaired.
        rto_floor: lowest retransmission timeout on both ends, seconds.
        placement: ``process`` or ``thread`` for the servers.
        baseline: reuse a blast of the same size and datagram size measured earlier.
        verify: ask for the server's SHA-256 and check it (the blast never hashes).
    Returns:
        The row: the server's retransmissions and both goodputs, with their ratio.
    Raises:
        UsageError (bad parameters), TransportError.
    """
    _check_udp_bulk(transport, framing, placement, payload_size, datagram_size)
    if baseline is None:
        baseline = baseline_udp_blast(transport, payload_size=payload_size, datagram_size=datagram_size,
                                      placement=placement)
    service = service_udp_bulk(transport, framing, model, payload_size=payload_size, datagram_size=datagram_size,
                               impairment=impairment, rto_floor=rto_floor, placement=placement, verify=verify)
    return UdpBulkRow(
        transport=transport, framing=framing, model=model, placement=placement, datagram_size=datagram_size,
        impairment=impairment or "", rto_floor=rto_floor, payload_bytes=payload_size,
        received_bytes=service.received_bytes, seconds=service.seconds,
        megabytes_per_second=service.megabytes_per_second, verified=service.verified,
        retransmits_timeout=service.sender.retransmits_timeout, retransmits_fast=service.sender.retransmits_fast,
        data_datagrams_sent=service.sender.data_datagrams_sent, duplicates=service.receiver.duplicates,
        baseline_sent_bytes=baseline.sent_bytes, baseline_received_bytes=baseline.received_bytes,
        baseline_seconds=baseline.seconds, baseline_megabytes_per_second=baseline.megabytes_per_second,
        ratio=_ratio(service.megabytes_per_second, baseline.megabytes_per_second),
    )


def service_udp_bulk(
    transport: str = "udp",
    framing: str = "length",
    model: str = "threaded",
    *,
    payload_size: int = UDP_BULK_SIZE,
    datagram_size: int = UDP_DATAGRAM_SIZES[0],
    impairment: str | None = None,
    rto_floor: float = FAST_FLOOR,
    placement: str = "process",
    verify: bool = False,
) -> UdpBulkFigures:
    """Time one ``blob`` reply over sequenced UDP (see :func:`measure_udp_bulk`)."""
    _check_udp_bulk(transport, framing, placement, payload_size, datagram_size)
    options = _udp_options(datagram_size, rto_floor, impairment or "")
    output_cap = max(payload_size, DEFAULT_OUTPUT_CAP)
    with _udp_server_with_statistics(transport, framing, model, options, impairment or "", output_cap,
                                     placement) as (address, server_statistics):
        connection = connect(address, STARTUP_TIMEOUT, options=options)
        assert isinstance(connection, UdpConnection)
        with Client(address, framing=framing, read_timeout=IO_TIMEOUT, connection=connection) as client:
            client.run(("echo", "warm-up"))
            started = time.perf_counter()
            reply = client.run(("blob", str(payload_size)), keep_output=False, verify=verify)
            seconds = time.perf_counter() - started
            receiver = connection.statistics()
            senders = server_statistics()
    if len(senders) != 1:
        raise TransportError(f"the udp bulk server saw {len(senders)} connections instead of one")
    received = reply.stdout_bytes
    return UdpBulkFigures(received, seconds, received / seconds / 1e6, reply.verified, senders[0], receiver)


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
    _check_udp_bulk(transport, None, placement, payload_size, datagram_size)
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


# -- timing --------------------------------------------------------------------------


def _time_round_trips(one_round_trip: Callable[[], None], count: int, duration: float | None) -> RoundTripFigures:
    for _ in range(min(200, max(10, count // 50))):
        one_round_trip()
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = None if duration is None else clock() + int(duration * 1e9)
    started = clock()
    for _ in range(count):
        before = clock()
        one_round_trip()
        after = clock()
        samples.append(after - before)
        if deadline is not None and after >= deadline:
            break
    seconds = (clock() - started) / 1e9
    samples.sort()
    return RoundTripFigures(
        round_trips=len(samples),
        seconds=seconds,
        per_second=len(samples) / seconds,
        p50_us=_percentile(samples, 0.50) / 1000,
        p99_us=_percentile(samples, 0.99) / 1000,
        p999_us=_percentile(samples, 0.999) / 1000,
    )


def _percentile(sorted_samples: list[int], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(fraction * len(sorted_samples)))
    return float(sorted_samples[rank - 1])


def _ratio(measured: float, baseline: float) -> float:
    return measured / baseline if baseline > 0 else math.nan


def _check_placement(transport: str, placement: str, transports: tuple[str, ...]) -> None:
    if transport not in transports:
        raise UsageError(f"transport {transport!r} is not measured here: choose one of {', '.join(transports)}")
    if placement not in PLACEMENTS:
        raise UsageError(f"unknown placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")


def _check_common(transport: str, placement: str, count: int, payload_size: int,
                  transports: tuple[str, ...] = STREAM_TRANSPORTS) -> None:
    _check_placement(transport, placement, transports)
    if count < 1:
        raise UsageError(f"count must be at least 1, got {count}")
    if payload_size < 2:
        raise UsageError(f"payload size must be at least 2 bytes (one character and a newline), got {payload_size}")


def _check_udp_bulk(transport: str, framing: str | None, placement: str, payload_size: int,
                    datagram_size: int) -> None:
    """Check a udp bulk measurement's parameters; ``framing`` None for the raw blast."""
    _check_placement(transport, placement, UDP_TRANSPORTS)
    if payload_size < 1:
        raise UsageError(f"payload size must be at least 1 byte, got {payload_size}")
    if framing is not None and framing not in BULK_FRAMINGS:
        raise UsageError(f"the {framing} framing cannot delimit a bulk reply: use one of {', '.join(BULK_FRAMINGS)}")
    if not HEADER_SIZE < datagram_size <= MAX_DATAGRAM_SIZE:
        raise UsageError(f"datagram size {datagram_size} is out of range: use {HEADER_SIZE + 1} to "
                         f"{MAX_DATAGRAM_SIZE} bytes")


def _udp_options(datagram_size: int, rto_floor: float, impairment: str) -> UdpOptions:
    """Both ends' settings; UsageError for a bad floor or impairment spec."""
    return UdpOptions.build(payload_size=datagram_size, rto_floor=rto_floor,
                            impairment=parse_impairment(impairment) if impairment else None)


def _set_udp_buffers(sock: socket.socket) -> None:
    """A generous SO_RCVBUF and SO_SNDBUF, forced past rmem_max/wmem_max when allowed (as the transport does)."""
    for forced, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF), (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, UDP_SOCKET_BUFFER_SIZE)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, UDP_SOCKET_BUFFER_SIZE)


# -- servers under test ------------------------------------------------------------------


@contextmanager
def _listen_url(transport: str) -> Iterator[str]:
    """A loopback URL, or a UNIX path in a fresh temporary directory removed afterwards."""
    if transport not in UNIX_SCHEMES:
        yield ephemeral_url(transport, "")
        return
    directory = tempfile.mkdtemp(prefix="netlab-bench-")
    try:
        yield ephemeral_url(transport, directory, "bench.sock")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def netlab_server(transport: str, framing: str, model: str, placement: str = "process", *,
                  backlog: int = 16, max_connections: int = 64, output_cap: int = DEFAULT_OUTPUT_CAP) -> Iterator[str]:
    """Run a netlab server for the block, in a child process or a thread; yield the URL it is bound to.

    ``output_cap`` is the server's per-stream output limit (a bulk transfer larger
    than the default 64 MiB needs it raised).

    Raises:
        TransportError: the child server did not start.
    """
    with _listen_url(transport) as url:
        if placement == "thread":
            with server_in_thread(url, model=model, framing=framing, policy=Policy(output_cap=output_cap),
                                  backlog=backlog, quiet=True, max_connections=max_connections,
                                  stop_timeout=STOP_TIMEOUT) as running:
                yield running.address
            return
        with ChildServer("--address", url, "--framing", framing, "--model", model, "--backlog", str(backlog),
                         "--max-connections", str(max_connections), "--output-cap", str(output_cap), "--quiet",
                         keep_lines=False, graceful=True, startup_timeout=STARTUP_TIMEOUT) as server:
            yield server.url


@contextmanager
def _serving_with_statistics(url: str, framing: str, model: str, options: UdpOptions,
                             output_cap: int) -> Iterator[tuple[str, Callable[[], list[SequencingStatistics]]]]:
    """A netlab server on a UDP address, in a thread; yield its URL and a call returning its connections' counters."""
    accepted: list[UdpConnection] = []

    def remember(connection: Connection) -> Connection:
        accepted.append(connection)  # type: ignore[arg-type]
        return connection

    with server_in_thread(url, model=model, framing=framing, policy=Policy(output_cap=output_cap), quiet=True,
                          wrap_accepted=remember, listen_options={"options": options},
                          stop_timeout=STOP_TIMEOUT) as running:
        yield running.address, lambda: [connection.statistics() for connection in accepted]


def serve_udp_with_statistics(url: str, framing: str, model: str, datagram_size: int, rto_floor: float,
                              impairment: str, output_cap: int, report: Callable[[object], None],
                              wait_until_done: Callable[[], object]) -> None:
    """A netlab server on a UDP address that hands back its connections' counters.

    Calls ``report`` with the bound URL, waits in ``wait_until_done``, then
    calls ``report`` with a list of ``SequencingStatistics`` as dicts (one per
    accepted connection) and stops.
    """
    options = _udp_options(datagram_size, rto_floor, impairment)
    with _serving_with_statistics(url, framing, model, options, output_cap) as (address, statistics):
        report(address)
        wait_until_done()
        report([asdict(counters) for counters in statistics()])


def main(arguments: Sequence[str] | None = None) -> None:
    """A child process of this module: ``udp-server URL FRAMING MODEL SIZE FLOOR IMPAIRMENT CAP``
    (counters as a JSON line on stdout once stdin closes) or ``peer FAMILY KIND BIND MODE``.
    """
    role, *rest = sys.argv[1:] if arguments is None else arguments
    if role == "udp-server":
        url, framing, model, size, floor, impairment, cap = rest
        serve_udp_with_statistics(url, framing, model, int(size), float(floor), impairment, int(cap),
                                  lambda value: print(json.dumps(value), flush=True), sys.stdin.read)
    else:
        family, kind, bind = int(rest[0]), int(rest[1]), rest[2]
        serve_baseline_peer(family, kind, bind if family == socket.AF_UNIX else (bind, 0), rest[3],
                            lambda name: print(repr(name), flush=True))


@contextmanager
def _udp_server_with_statistics(
    transport: str, framing: str, model: str, options: UdpOptions, impairment: str, output_cap: int,
    placement: str,
) -> Iterator[tuple[str, Callable[[], list[SequencingStatistics]]]]:
    """Run :func:`serve_udp_with_statistics`; yield its URL and a call that returns its connections' counters."""
    with _listen_url(transport) as url:
        if placement == "thread":
            with _serving_with_statistics(url, framing, model, options, output_cap) as served:
                yield served
            return
        arguments = (url, framing, model, options.payload_size, options.rto_floor, impairment, output_cap)
        child = start_child(("udp-server", *map(str, arguments)), module=__name__,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        process = child.process
        assert process.stdin is not None
        try:
            address = str(_read_json_line(child, STARTUP_TIMEOUT, "the udp bulk server did not start"))

            def collect() -> list[SequencingStatistics]:
                assert process.stdin is not None
                process.stdin.close()
                return _statistics_list(_read_json_line(child, STOP_TIMEOUT,
                                                        "the udp bulk server did not report its counters"))

            yield address, collect
        finally:
            process.stdin.close()
            child.stop(STOP_TIMEOUT)


def _statistics_list(value: object) -> list[SequencingStatistics]:
    if not isinstance(value, list):
        raise TransportError(f"the udp bulk server reported {value!r} instead of its connections' counters")
    return [SequencingStatistics(**item) for item in value]


def _read_json_line(child: ChildProcess, timeout: float, failure: str) -> object:
    """The next line the child printed on stdout, as JSON, waiting at most ``timeout``."""
    line = child.read_line(child.process.stdout, timeout)
    if not line or not line.strip():
        raise TransportError(f"{failure} within {timeout:g} s")
    return json.loads(line)


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
def _baseline_peer(transport: str, mode: str, placement: str) -> Iterator[socket.socket]:
    """Start the baseline peer in ``mode`` (echo or bulk); yield a connected stdlib socket."""
    with _listen_url(transport) as url:
        address = parse_address(url)
        family = address.family
        kind = (socket.SOCK_SEQPACKET if transport == "unix-seqpacket"
                else socket.SOCK_DGRAM if transport in UDP_TRANSPORTS else socket.SOCK_STREAM)
        child: ChildProcess | None = None
        thread: threading.Thread | None = None
        if placement == "thread":
            bound: list[object] = []
            ready = threading.Event()

            def report(name: object) -> None:
                bound.append(name)
                ready.set()

            bind = address.path if address.is_unix else (address.host, 0)
            thread = threading.Thread(target=serve_baseline_peer, args=(family, kind, bind, mode, report),
                                      name="netlab-bench-peer", daemon=True)
            thread.start()
            if not ready.wait(STARTUP_TIMEOUT):
                raise TransportError("the baseline peer did not start within the timeout")
            name = bound[0]
        else:
            child = start_child(("peer", str(int(family)), str(int(kind)),
                                 address.path if address.is_unix else address.host, mode),
                                module=__name__, stdout=subprocess.PIPE)
            name = _read_peer_name(child)
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


def _read_peer_name(child: ChildProcess) -> object:
    """The address the child peer printed (a repr), waiting at most STARTUP_TIMEOUT."""
    line = (child.read_line(child.process.stdout, STARTUP_TIMEOUT) or "").strip()
    if not line:
        child.stop(STOP_TIMEOUT)
        raise TransportError("the baseline peer did not start within the timeout")
    return ast.literal_eval(line)


if __name__ == "__main__":
    main()
