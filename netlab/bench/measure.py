"""Round trips and bulk throughput of the command service, beside a stdlib baseline.

How this works: each measurement runs the same exchange twice on the same
transport in the same run. Once through netlab (``Client.run`` against a real
server: the built-in ``echo`` for round trips, ``blob SIZE`` for bulk) and once
through the most minimal stdlib code that does the same job (a 16-byte
``sendall``/``recv`` ping-pong against a peer that echoes; a peer that
``sendall``s 64 KiB chunks into a ``recv_into`` with one reused buffer; see
:mod:`netlab.bench.baseline`). The row carries both figures and their ratio, so machines and runs can be
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
stdout when its stdin closes). Child processes (``netlab serve``, or
``python -m netlab.bench`` for :func:`main`) start through the service's launcher.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from functools import partial
from operator import attrgetter
from typing import Any, TypeVar

from netlab.bench.baseline import baseline_bulk, baseline_round_trips, baseline_udp_blast
from netlab.bench.figures import (
    IO_TIMEOUT,
    PING_SIZE,
    ROUND_TRIP_TRANSPORTS,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    BlastFigures,
    BulkFigures,
    BulkRow,
    RoundTripFigures,
    RoundTripRow,
    UdpBulkFigures,
    UdpBulkRow,
    UdpBulkSettings,
    bench_address,
    bulk_row,
    check_bulk_framing,
    check_common,
    check_udp_bulk,
    ratio,
    round_trip_row,
    time_round_trips,
    udp_bulk_row,
)
from netlab.bench.pinning import pin_server
from netlab.bench.rounds import Spread
from netlab.errors import TransportError
from netlab.lab.placement import LOOPBACK, Placement
from netlab.proto.framing import FRAMERS
from netlab.proto.seq import SequencingStatistics
from netlab.service.client import Client
from netlab.service.launch import ChildProcess, ChildServer, server_in_thread, start_child
from netlab.service.policy import DEFAULT_OUTPUT_CAP, Policy
from netlab.service.token import new_token, write_token_file
from netlab.transport import connect
from netlab.transport.address import UNIX_SCHEMES
from netlab.transport.base import Connection
from netlab.transport.impairment import parse_impairment
from netlab.transport.udp import UdpConnection, UdpOptions

# -- public measurements -----------------------------------------------------------

#: The udp bulk settings when none are given: 64 MiB in 1,200-byte datagrams, no impairment.
DEFAULT_UDP_BULK = UdpBulkSettings()

_F = TypeVar("_F")
_B = TypeVar("_B")


def _beside(measure_service: Callable[[], _F], baseline: _B | None, measure_baseline: Callable[[], _B],
            figure: Callable[[Any], float]) -> tuple[list[_F], list[_B], Spread]:
    """The one measuring skeleton: the baseline (unless one is given), then netlab's cell, and their ratio.

    Returns what a row builder of :mod:`netlab.bench.figures` takes: one round's
    figures of each side and the ratio as a one-round :class:`Spread`.
    """
    base = measure_baseline() if baseline is None else baseline
    measured = measure_service()
    return [measured], [base], Spread(ratio(figure(measured), figure(base)), math.nan, math.nan, 1)


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
    hosts: Placement = LOOPBACK,
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
        hosts: where the two ends are: loopback (the default), or the servers in
            one network namespace and the clients in another (``netlab.lab``).
    Returns:
        The row, with the ratio computed from the two figures.
    Raises:
        UsageError (bad parameters), TransportError (cannot listen or connect).
    """
    check_common(transport, placement, count, payload_size, ROUND_TRIP_TRANSPORTS)
    services, baselines, found = _beside(
        partial(service_round_trips, transport, framing, model, count=count, duration=duration,
                payload_size=payload_size, placement=placement, hosts=hosts),
        baseline, partial(baseline_round_trips, transport, count=count, duration=duration, payload_size=payload_size,
                          placement=placement, hosts=hosts), attrgetter("per_second"))
    return round_trip_row(transport, framing, model, placement, services, baselines, found, payload_size=payload_size)


def measure_bulk(
    transport: str,
    framing: str = "length",
    model: str = "threaded",
    *,
    payload_size: int = 256 * 2**20,
    placement: str = "process",
    baseline: BulkFigures | None = None,
    verify: bool = False,
    hosts: Placement = LOOPBACK,
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
        hosts: as in :func:`measure_round_trips`.
    Returns:
        The row; ``received_bytes`` is what actually arrived on each side.
    Raises:
        UsageError (bad parameters, raw framing), TransportError.
    """
    check_common(transport, placement, 1, payload_size)
    check_bulk_framing(framing)
    services, baselines, found = _beside(
        partial(service_bulk, transport, framing, model, payload_size=payload_size, placement=placement, verify=verify,
                hosts=hosts),
        baseline, partial(baseline_bulk, transport, payload_size=payload_size, placement=placement, hosts=hosts),
        attrgetter("megabytes_per_second"))
    return bulk_row(transport, framing, model, placement, payload_size, services, baselines, found)


def measure_udp_bulk(
    transport: str = "udp",
    framing: str = "length",
    model: str = "threaded",
    settings: UdpBulkSettings = DEFAULT_UDP_BULK,
    *,
    placement: str = "process",
    baseline: BlastFigures | None = None,
) -> UdpBulkRow:
    """Time one ``blob`` over sequenced UDP, and a raw blast of the same bytes and datagram size.

    Args:
        transport: udp or udp6.
        framing: ack, line or length.
        model: iterative, threaded or selector.
        settings: size, datagram size, impairment, RTO floor, verification.
        placement: ``process`` or ``thread`` for the servers.
        baseline: reuse a blast of the same size and datagram size measured earlier.
    Returns:
        The row: the server's retransmissions and both goodputs, with their ratio.
    Raises:
        UsageError (bad parameters), TransportError.
    """
    check_udp_bulk(transport, framing, placement, settings.payload_size, settings.datagram_size)
    services, baselines, found = _beside(
        partial(service_udp_bulk, transport, framing, model, settings, placement=placement), baseline,
        partial(baseline_udp_blast, transport, payload_size=settings.payload_size,
                datagram_size=settings.datagram_size, placement=placement), attrgetter("megabytes_per_second"))
    return udp_bulk_row(transport, framing, model, placement, settings, services, baselines, found)


def service_round_trips(
    transport: str,
    framing: str = "length",
    model: str = "threaded",
    *,
    count: int = 10_000,
    duration: float | None = None,
    payload_size: int = PING_SIZE,
    placement: str = "process",
    hosts: Placement = LOOPBACK,
) -> RoundTripFigures:
    """Time ``echo`` round trips through a netlab server (see :func:`measure_round_trips`)."""
    check_common(transport, placement, count, payload_size, ROUND_TRIP_TRANSPORTS)
    argv = ("echo", "x" * (payload_size - 1))
    expected = argv[1].encode() + b"\n"
    token = server_token(transport, framing, placement, hosts)
    with netlab_server(transport, framing, model, placement, hosts=hosts, token=token) as address:
        with _client_on(hosts, address, framing, token) as client:

            def one_round_trip() -> None:
                if client.run(argv).stdout != expected:
                    raise TransportError(f"echo over {transport}/{framing} returned the wrong bytes")

            return time_round_trips(one_round_trip, count, duration)


def _time_blob(client: Client, payload_size: int, verify: bool) -> BulkFigures:
    """After a warm-up echo, time one ``blob payload_size`` reply (its output counted, not kept)."""
    client.run(("echo", "warm-up"))
    started = time.perf_counter()
    reply = client.run(("blob", str(payload_size)), keep_output=False, verify=verify)
    seconds = time.perf_counter() - started
    received = reply.stdout_bytes
    return BulkFigures(received, seconds, received / seconds / 1e6, reply.verified)


def service_bulk(
    transport: str,
    framing: str = "length",
    model: str = "threaded",
    *,
    payload_size: int = 256 * 2**20,
    placement: str = "process",
    verify: bool = False,
    hosts: Placement = LOOPBACK,
) -> BulkFigures:
    """Time one ``blob`` reply through a netlab server (``verified``: None when not asked)."""
    check_common(transport, placement, 1, payload_size)
    output_cap = max(payload_size, DEFAULT_OUTPUT_CAP)
    token = server_token(transport, framing, placement, hosts)
    with netlab_server(transport, framing, model, placement, output_cap=output_cap, hosts=hosts,
                       token=token) as address:
        with _client_on(hosts, address, framing, token) as client:
            return _time_blob(client, payload_size, verify)


def service_udp_bulk(
    transport: str = "udp",
    framing: str = "length",
    model: str = "threaded",
    settings: UdpBulkSettings = DEFAULT_UDP_BULK,
    *,
    placement: str = "process",
) -> UdpBulkFigures:
    """Time one ``blob`` reply over sequenced UDP (see :func:`measure_udp_bulk`)."""
    payload_size, datagram_size = settings.payload_size, settings.datagram_size
    check_udp_bulk(transport, framing, placement, payload_size, datagram_size)
    options = _udp_options(datagram_size, settings.rto_floor, settings.impairment)
    output_cap = max(payload_size, DEFAULT_OUTPUT_CAP)
    with _udp_server_with_statistics(transport, framing, model, options, settings.impairment, output_cap,
                                     placement) as (address, server_statistics):
        connection = connect(address, STARTUP_TIMEOUT, options=options)
        assert isinstance(connection, UdpConnection)
        with Client(address, framing=framing, read_timeout=IO_TIMEOUT, connection=connection) as client:
            figures = _time_blob(client, payload_size, settings.verify)
            receiver = connection.statistics()
            senders = server_statistics()
    if len(senders) != 1:
        raise TransportError(f"the udp bulk server saw {len(senders)} connections instead of one")
    return UdpBulkFigures(figures.received_bytes, figures.seconds, figures.megabytes_per_second, figures.verified,
                          senders[0], receiver)


def _udp_options(datagram_size: int, rto_floor: float, impairment: str) -> UdpOptions:
    """Both ends' settings; UsageError for a bad floor or impairment spec."""
    return UdpOptions.build(payload_size=datagram_size, rto_floor=rto_floor,
                            impairment=parse_impairment(impairment) if impairment else None)


@contextmanager
def netlab_server(transport: str, framing: str, model: str, placement: str = "process", *,
                  backlog: int = 16, max_connections: int = 64, output_cap: int = DEFAULT_OUTPUT_CAP,
                  hosts: Placement = LOOPBACK, token: bytes | None = None) -> Iterator[str]:
    """Run a netlab server for the block, in a child process or a thread; yield the URL it is bound to.

    ``output_cap`` is the server's per-stream output limit (a bulk transfer larger
    than the default 64 MiB needs it raised). Over namespaces (``hosts``) the
    server listens on the server host's address, its thread or child process
    started inside the server's namespace. ``token``: clients must authenticate
    with it (``netlab serve`` refuses an address off loopback without one).

    Raises:
        TransportError: the child server did not start.
    """
    host = hosts.server_host(transport) if hosts.namespaced else None
    with bench_address(transport, host) as url, ExitStack() as stack:
        token_arguments: tuple[str, ...] = ()
        if token is not None and placement != "thread":
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="netlab-bench-token-"))
            write_token_file(os.path.join(directory, "token"), token)
            token_arguments = ("--token-file", os.path.join(directory, "token"))
        with hosts.server():
            if placement == "thread":
                running = stack.enter_context(server_in_thread(
                    url, model=model, framing=framing, policy=Policy(output_cap=output_cap), backlog=backlog,
                    quiet=True, max_connections=max_connections, stop_timeout=STOP_TIMEOUT, token=token))
                address = running.address
            else:
                server = stack.enter_context(ChildServer(
                    "--address", url, "--framing", framing, "--model", model, "--backlog", str(backlog),
                    "--max-connections", str(max_connections), "--output-cap", str(output_cap), "--quiet",
                    # no flood defence, as in a thread: many clients of one host authenticate at once
                    "--max-per-peer", "0", "--max-startups", str(max_connections),
                    *token_arguments, keep_lines=False, graceful=True, startup_timeout=STARTUP_TIMEOUT))
                pin_server(server.process.pid)
                address = server.url
        yield address


def _client_on(hosts: Placement, address: str, framing: str, token: bytes | None) -> Client:
    """A client of ``address``, its socket made in the client's namespace (if any)."""
    with hosts.client():
        return Client(address, framing=framing, read_timeout=IO_TIMEOUT, token=token)


def server_token(transport: str, framing: str, placement: str, hosts: Placement) -> bytes | None:
    """A fresh token when the server is a child off loopback and its framing can carry one, else None.

    A child in the lab's server namespace without a token (raw, ack, line) is
    still allowed: ``netlab serve`` checks that nothing outside the lab reaches
    that namespace (:func:`~netlab.lab.namespace.isolated_lab_namespace`).
    """
    if not hosts.namespaced or placement == "thread" or transport in UNIX_SCHEMES:
        return None
    return new_token() if FRAMERS[framing].capabilities.authentication else None


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
    (its connections' counters as a JSON line on stdout once stdin closes).
    """
    url, framing, model, size, floor, impairment, cap = (sys.argv[1:] if arguments is None else arguments)[1:]
    serve_udp_with_statistics(url, framing, model, int(size), float(floor), impairment, int(cap),
                              lambda value: print(json.dumps(value), flush=True), sys.stdin.read)


@contextmanager
def _udp_server_with_statistics(
    transport: str, framing: str, model: str, options: UdpOptions, impairment: str, output_cap: int,
    placement: str,
) -> Iterator[tuple[str, Callable[[], list[SequencingStatistics]]]]:
    """Run :func:`serve_udp_with_statistics`; yield its URL and a call that returns its connections' counters."""
    with bench_address(transport) as url:
        if placement == "thread":
            with _serving_with_statistics(url, framing, model, options, output_cap) as served:
                yield served
            return
        arguments = (url, framing, model, options.payload_size, options.rto_floor, impairment, output_cap)
        child = start_child(("udp-server", *map(str, arguments)), module="netlab.bench",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        process = child.process
        assert process.stdin is not None
        pin_server(process.pid)
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
