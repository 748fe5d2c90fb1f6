"""What the benchmarks measure, as data: figures, rows, and the parameters they are measured with.

How this works: a measurement returns frozen figures (round trips with their
latency percentiles, bulk bytes over seconds); a row puts netlab's figures
beside the baseline's, measured in the same run, with their ratio. Latencies
are per round trip (``perf_counter_ns``), percentiles nearest-rank, MB/s 10**6
bytes per second. :func:`time_round_trips` is the one timing loop; the
``check_*`` functions refuse parameters no measurement can use, in one line.
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass
from operator import attrgetter
from typing import Any

from netlab.bench.rounds import Spread
from netlab.errors import UsageError
from netlab.proto.seq import FAST_FLOOR, SequencingStatistics
from netlab.proto.seq.wire import HEADER_SIZE, MAX_DATAGRAM_SIZE
from netlab.transport.address import STREAM_SCHEMES, UDP_SCHEMES, UNIX_SCHEMES, ephemeral_url

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
    #: netlab's blob only: the server's SHA-256 matched (None: not asked, the framing carries none, or a baseline)
    verified: bool | None = None


@dataclass(frozen=True)
class ComparedRow:
    """What every row shares: the cell that was measured, and its ratio to the baseline of the same rounds.

    The ratio and its spread are keyword-only, so each kind of row lists its own
    figures after the cell.
    """

    transport: str
    framing: str
    model: str
    placement: str
    _: KW_ONLY
    #: netlab's figure over the baseline's (with rounds: the median of the per-round ratios)
    ratio: float
    #: alternating rounds measured; the lowest and highest per-round ratio (NaN for one measurement)
    rounds: int = 1
    ratio_low: float = math.nan
    ratio_high: float = math.nan
    #: where the client and the servers ran (CPU pinning), as said in the output
    pinning: str = ""


@dataclass(frozen=True)
class RoundTripRow(ComparedRow):
    """Built-in ``echo`` round trips through netlab beside a stdlib ping-pong."""

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


@dataclass(frozen=True)
class BulkRow(ComparedRow):
    """``blob SIZE`` through netlab beside a stdlib bulk transfer of the same size."""

    payload_bytes: int
    received_bytes: int
    seconds: float
    megabytes_per_second: float
    #: the server's SHA-256 matched what arrived (None: not asked, or the framing carries none)
    verified: bool | None
    baseline_received_bytes: int
    baseline_seconds: float
    baseline_megabytes_per_second: float


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
class UdpBulkRow(ComparedRow):
    """``blob SIZE`` over sequenced UDP beside a raw UDP blast of the same size and datagrams.

    With rounds, each figure is the median over the rounds (the counters too).
    """

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


@dataclass(frozen=True)
class UdpBulkSettings:
    """What a udp bulk measurement is asked for, beyond its transport, framing, model and placement.

    Attributes:
        payload_size: bytes to transfer.
        datagram_size: largest datagram, header included, on both ends and in the raw blast.
        impairment: a seeded impairment spec (see ``parse_impairment``) applied to
            both ends as written ("" for none); the raw blast is never impaired.
        rto_floor: lowest retransmission timeout on both ends, seconds.
        verify: ask for the server's SHA-256 and check it (the blast never hashes).
    """

    payload_size: int = UDP_BULK_SIZE
    datagram_size: int = UDP_DATAGRAM_SIZES[0]
    impairment: str = ""
    rto_floor: float = FAST_FLOOR
    verify: bool = False


# -- rows from figures -----------------------------------------------------------------


def _spread_fields(found: Spread, pinning: str) -> dict[str, Any]:
    """The ComparedRow fields that come from the ratio's median and spread (no spread for one measurement)."""
    low, high = (found.low, found.high) if found.rounds > 1 else (math.nan, math.nan)
    return {"ratio": found.median, "rounds": found.rounds, "ratio_low": low, "ratio_high": high, "pinning": pinning}


def _median(results: Sequence[object], figure: Callable[[Any], float]) -> float:
    return statistics.median(figure(result) for result in results)


def _verified(results: Sequence[BulkFigures] | Sequence[UdpBulkFigures]) -> bool | None:
    """True when every round verified, None when no round was asked to."""
    seen = {result.verified for result in results}
    return None if seen == {None} else seen == {True}


def round_trip_row(transport: str, framing: str, model: str, placement: str, services: Sequence[RoundTripFigures],
                   baselines: Sequence[RoundTripFigures], found: Spread, *, payload_size: int = PING_SIZE,
                   pinning: str = "") -> RoundTripRow:
    """The round-trip row of a cell: each figure the median over the rounds, beside the ratio and its spread."""
    return RoundTripRow(
        transport, framing, model, placement, payload_bytes=payload_size,
        round_trips=round(_median(services, attrgetter("round_trips"))),
        per_second=_median(services, attrgetter("per_second")), p50_us=_median(services, attrgetter("p50_us")),
        p99_us=_median(services, attrgetter("p99_us")), p999_us=_median(services, attrgetter("p999_us")),
        baseline_round_trips=round(_median(baselines, attrgetter("round_trips"))),
        baseline_per_second=_median(baselines, attrgetter("per_second")),
        baseline_p50_us=_median(baselines, attrgetter("p50_us")),
        baseline_p99_us=_median(baselines, attrgetter("p99_us")),
        baseline_p999_us=_median(baselines, attrgetter("p999_us")), **_spread_fields(found, pinning))


def bulk_row(transport: str, framing: str, model: str, placement: str, payload_size: int,
             services: Sequence[BulkFigures], baselines: Sequence[BulkFigures], found: Spread, *,
             pinning: str = "") -> BulkRow:
    """The bulk row of a cell: the least that arrived in any round, the median seconds and MB/s."""
    return BulkRow(
        transport, framing, model, placement, payload_bytes=payload_size,
        received_bytes=min(result.received_bytes for result in services),
        seconds=_median(services, attrgetter("seconds")),
        megabytes_per_second=_median(services, attrgetter("megabytes_per_second")), verified=_verified(services),
        baseline_received_bytes=min(result.received_bytes for result in baselines),
        baseline_seconds=_median(baselines, attrgetter("seconds")),
        baseline_megabytes_per_second=_median(baselines, attrgetter("megabytes_per_second")),
        **_spread_fields(found, pinning))


def udp_bulk_row(transport: str, framing: str, model: str, placement: str, settings: UdpBulkSettings,
                 services: Sequence[UdpBulkFigures], baselines: Sequence[BlastFigures], found: Spread, *,
                 pinning: str = "") -> UdpBulkRow:
    """The udp bulk row of a cell: the blob's figures and the sender's counters (medians) beside the raw blast."""

    def counter(name: str, end: str = "sender") -> int:
        return round(_median(services, lambda result: getattr(getattr(result, end), name)))

    return UdpBulkRow(
        transport, framing, model, placement, datagram_size=settings.datagram_size,
        impairment=settings.impairment, rto_floor=settings.rto_floor, payload_bytes=settings.payload_size,
        received_bytes=min(result.received_bytes for result in services),
        seconds=_median(services, attrgetter("seconds")),
        megabytes_per_second=_median(services, attrgetter("megabytes_per_second")), verified=_verified(services),
        retransmits_timeout=counter("retransmits_timeout"), retransmits_fast=counter("retransmits_fast"),
        data_datagrams_sent=counter("data_datagrams_sent"), duplicates=counter("duplicates", "receiver"),
        baseline_sent_bytes=min(result.sent_bytes for result in baselines),
        baseline_received_bytes=min(result.received_bytes for result in baselines),
        baseline_seconds=_median(baselines, attrgetter("seconds")),
        baseline_megabytes_per_second=_median(baselines, attrgetter("megabytes_per_second")),
        **_spread_fields(found, pinning))


# -- timing --------------------------------------------------------------------------


def time_round_trips(one_round_trip: Callable[[], None], count: int, duration: float | None) -> RoundTripFigures:
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
        p50_us=percentile(samples, 0.50) / 1000,
        p99_us=percentile(samples, 0.99) / 1000,
        p999_us=percentile(samples, 0.999) / 1000,
    )


def percentile(sorted_samples: list[int], fraction: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(fraction * len(sorted_samples)))
    return float(sorted_samples[rank - 1])


def ratio(measured: float, baseline: float) -> float:
    return measured / baseline if baseline > 0 else math.nan


def check_placement(transport: str, placement: str, transports: tuple[str, ...]) -> None:
    if transport not in transports:
        raise UsageError(f"transport {transport!r} is not measured here: choose one of {', '.join(transports)}")
    if placement not in PLACEMENTS:
        raise UsageError(f"unknown placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")


def check_common(transport: str, placement: str, count: int, payload_size: int,
                  transports: tuple[str, ...] = STREAM_TRANSPORTS) -> None:
    check_placement(transport, placement, transports)
    if count < 1:
        raise UsageError(f"count must be at least 1, got {count}")
    if payload_size < 2:
        raise UsageError(f"payload size must be at least 2 bytes (one character and a newline), got {payload_size}")


def check_bulk_framing(framing: str) -> None:
    """UsageError for a framing whose client cannot tell where a bulk reply ends (raw)."""
    if framing not in BULK_FRAMINGS:
        raise UsageError(f"the {framing} framing cannot delimit a bulk reply: use one of {', '.join(BULK_FRAMINGS)}")


def check_udp_bulk(transport: str, framing: str | None, placement: str, payload_size: int,
                    datagram_size: int) -> None:
    """Check a udp bulk measurement's parameters; ``framing`` None for the raw blast."""
    check_placement(transport, placement, UDP_TRANSPORTS)
    if payload_size < 1:
        raise UsageError(f"payload size must be at least 1 byte, got {payload_size}")
    if framing is not None:
        check_bulk_framing(framing)
    if not HEADER_SIZE < datagram_size <= MAX_DATAGRAM_SIZE:
        raise UsageError(f"datagram size {datagram_size} is out of range: use {HEADER_SIZE + 1} to "
                         f"{MAX_DATAGRAM_SIZE} bytes")


# -- servers under test ------------------------------------------------------------------


@contextmanager
def bench_address(transport: str, host: str | None = None) -> Iterator[str]:
    """A loopback URL (or one on ``host``), or a UNIX path in a fresh temporary directory removed afterwards."""
    if transport not in UNIX_SCHEMES:
        yield (f"{transport}://[{host}]:0" if ":" in host else f"{transport}://{host}:0") if host else \
            ephemeral_url(transport, "")
        return
    directory = tempfile.mkdtemp(prefix="netlab-bench-")
    try:
        yield ephemeral_url(transport, directory, "bench.sock")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
