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
"""

from __future__ import annotations

import ast
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from netlab.errors import TransportError, UsageError
from netlab.service.client import Client
from netlab.service.executor import Executor
from netlab.service.handler import ServiceConfig
from netlab.service.log import ServerLog
from netlab.service.policy import Policy
from netlab.service.server import make_server
from netlab.transport import listen, parse_address

STREAM_TRANSPORTS = ("tcp4", "tcp6", "unix", "unix-seqpacket")
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
    #: the server's SHA-256 matched what arrived (None: the framing carries none)
    verified: bool | None
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
        transport: tcp4, tcp6, unix or unix-seqpacket.
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
    _check_common(transport, placement, count, payload_size)
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
) -> BulkRow:
    """Time one ``blob payload_size`` reply, and a stdlib transfer of the same size.

    Args:
        transport: tcp4, tcp6, unix or unix-seqpacket.
        framing: ack, line or length (raw cannot delimit a bulk reply).
        model: iterative, threaded or selector.
        payload_size: bytes to transfer.
        placement: ``process`` or ``thread`` for the servers.
        baseline: reuse a baseline of the same size measured earlier on this transport.
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
    service, verified = service_bulk(transport, framing, model, payload_size=payload_size, placement=placement)
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
    _check_common(transport, placement, count, payload_size)
    argv = ("echo", "x" * (payload_size - 1))
    expected = argv[1].encode() + b"\n"
    with _netlab_server(transport, framing, model, placement) as address:
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
) -> tuple[BulkFigures, bool | None]:
    """Time one ``blob`` reply through a netlab server; also return whether it verified."""
    _check_common(transport, placement, 1, payload_size)
    with _netlab_server(transport, framing, model, placement) as address:
        with Client(address, framing=framing, read_timeout=IO_TIMEOUT) as client:
            client.run(("echo", "warm-up"))
            started = time.perf_counter()
            reply = client.run(("blob", str(payload_size)), keep_output=False)
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
    _check_common(transport, placement, count, payload_size)
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


def _check_common(transport: str, placement: str, count: int, payload_size: int) -> None:
    if transport not in STREAM_TRANSPORTS:
        raise UsageError(f"unknown stream transport {transport!r}: choose one of {', '.join(STREAM_TRANSPORTS)}")
    if placement not in PLACEMENTS:
        raise UsageError(f"unknown placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")
    if count < 1:
        raise UsageError(f"count must be at least 1, got {count}")
    if payload_size < 2:
        raise UsageError(f"payload size must be at least 2 bytes (one character and a newline), got {payload_size}")


# -- servers under test ------------------------------------------------------------------


@contextmanager
def _listen_url(transport: str) -> Iterator[str]:
    """A loopback URL, or a UNIX path in a fresh temporary directory removed afterwards."""
    if transport == "tcp4":
        yield "tcp4://127.0.0.1:0"
        return
    if transport == "tcp6":
        yield "tcp6://[::1]:0"
        return
    directory = tempfile.mkdtemp(prefix="netlab-bench-")
    try:
        yield f"{transport}://{directory}/bench.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _netlab_server(transport: str, framing: str, model: str, placement: str) -> Iterator[str]:
    """Run a netlab server for the block; yield the URL it is bound to."""
    with _listen_url(transport) as url:
        if placement == "thread":
            listener = listen(url, 16)
            server = make_server(model, listener, Executor(Policy()), ServiceConfig(framing=framing),
                                 ServerLog(quiet=True))
            thread = threading.Thread(target=server.serve_forever, name="netlab-bench-server", daemon=True)
            thread.start()
            try:
                yield str(listener.address)
            finally:
                server.request_shutdown()
                thread.join(STOP_TIMEOUT)
            return
        command = [sys.executable, "-m", "netlab", "serve", "--address", url, "--framing", framing,
                   "--model", model, "--quiet"]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            first_line = _first_line(process)
            if not first_line.startswith(_SERVING_PREFIX):
                raise TransportError(f"the benchmark server did not start: {first_line or 'no output'}")
            yield first_line[len(_SERVING_PREFIX):].split(" ", 1)[0]
        finally:
            _stop(process)


def _first_line(process: subprocess.Popen[bytes]) -> str:
    """The child's first stderr line, waiting at most STARTUP_TIMEOUT."""
    assert process.stderr is not None
    collected = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while b"\n" not in collected:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            chunk = os.read(process.stderr.fileno(), 4096)
            if not chunk:
                break
            collected += chunk
    return collected.partition(b"\n")[0].decode(errors="replace")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


# -- the stdlib baseline peer --------------------------------------------------------------

def serve_baseline_peer(family: int, kind: int, bind: object, mode: str, report: Callable[[object], None]) -> None:
    """The baseline's peer, plain stdlib: accept one connection, then echo or send bulk.

    ``echo`` sends back whatever arrives until end of stream; ``bulk`` reads an
    8-byte big-endian size and ``sendall``s that many bytes in 64 KiB chunks.
    ``report`` is called with the bound address before accepting.
    """
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


_PEER_MAIN = (
    "import sys; from netlab.scenario.throughput import serve_baseline_peer as serve; "
    "family, kind, bind, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]; "
    "serve(family, kind, bind if family == 1 else (bind, 0), mode, lambda name: print(repr(name), flush=True))"
)


@contextmanager
def _baseline_peer(transport: str, mode: str, placement: str) -> Iterator[socket.socket]:
    """Start the baseline peer in ``mode`` (echo or bulk); yield a connected stdlib socket."""
    with _listen_url(transport) as url:
        address = parse_address(url)
        family = address.family
        kind = socket.SOCK_SEQPACKET if transport == "unix-seqpacket" else socket.SOCK_STREAM
        process: subprocess.Popen[bytes] | None = None
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
            process = subprocess.Popen(
                [sys.executable, "-c", _PEER_MAIN, str(int(family)), str(int(kind)),
                 address.path if address.is_unix else address.host, mode],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            name = _read_peer_name(process)
        sock = socket.socket(family, kind)
        try:
            sock.settimeout(IO_TIMEOUT)
            sock.connect(name)  # type: ignore[arg-type]
            yield sock
        finally:
            sock.close()
            if process is not None:
                _stop(process)
            if thread is not None:
                thread.join(STOP_TIMEOUT)


def _read_peer_name(process: subprocess.Popen[bytes]) -> object:
    """The address the child peer printed (a repr), waiting at most STARTUP_TIMEOUT."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(STARTUP_TIMEOUT)
    line = process.stdout.readline().decode().strip() if ready else ""
    if not line:
        _stop(process)
        raise TransportError("the baseline peer did not start within the timeout")
    return ast.literal_eval(line)
