"""Benchmarks: netlab's figures beside a baseline measured in the same run.

- :mod:`netlab.bench.figures`: what is measured, as data, and the one timing loop.
- :mod:`netlab.bench.baseline`: the stdlib baselines and their plain-socket peers.
- :mod:`netlab.bench.measure`: the command service under test, and the rows.

``netlab bench`` and the throughput and concurrency experiments use them;
nothing here prints.
"""

from netlab.bench.baseline import (
    baseline_bulk,
    baseline_round_trips,
    baseline_udp_blast,
    serve_baseline_peer,
    serve_datagram_peer,
)
from netlab.bench.figures import (
    BLAST_END_MARKERS,
    BLAST_SILENCE,
    BULK_CHUNK_SIZE,
    BULK_FRAMINGS,
    IO_TIMEOUT,
    PING_SIZE,
    PLACEMENTS,
    RECEIVE_BUFFER_SIZE,
    ROUND_TRIP_TRANSPORTS,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    STREAM_TRANSPORTS,
    UDP_BULK_SIZE,
    UDP_DATAGRAM_SIZES,
    UDP_LOSS_IMPAIRMENT,
    UDP_SOCKET_BUFFER_SIZE,
    UDP_TRANSPORTS,
    BlastFigures,
    BulkFigures,
    BulkRow,
    RoundTripFigures,
    RoundTripRow,
    UdpBulkFigures,
    UdpBulkRow,
)
from netlab.bench.measure import (
    measure_bulk,
    measure_round_trips,
    measure_udp_bulk,
    netlab_server,
    serve_udp_with_statistics,
    service_bulk,
    service_round_trips,
    service_udp_bulk,
)

__all__ = [
    "BLAST_END_MARKERS",
    "BLAST_SILENCE",
    "BULK_CHUNK_SIZE",
    "BULK_FRAMINGS",
    "IO_TIMEOUT",
    "PING_SIZE",
    "PLACEMENTS",
    "RECEIVE_BUFFER_SIZE",
    "ROUND_TRIP_TRANSPORTS",
    "STARTUP_TIMEOUT",
    "STOP_TIMEOUT",
    "STREAM_TRANSPORTS",
    "UDP_BULK_SIZE",
    "UDP_DATAGRAM_SIZES",
    "UDP_LOSS_IMPAIRMENT",
    "UDP_SOCKET_BUFFER_SIZE",
    "UDP_TRANSPORTS",
    "BlastFigures",
    "BulkFigures",
    "BulkRow",
    "RoundTripFigures",
    "RoundTripRow",
    "UdpBulkFigures",
    "UdpBulkRow",
    "baseline_bulk",
    "baseline_round_trips",
    "baseline_udp_blast",
    "measure_bulk",
    "measure_round_trips",
    "measure_udp_bulk",
    "netlab_server",
    "serve_baseline_peer",
    "serve_datagram_peer",
    "serve_udp_with_statistics",
    "service_bulk",
    "service_round_trips",
    "service_udp_bulk",
]
