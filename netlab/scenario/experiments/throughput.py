"""Experiment ``throughput``: round trips and bulk MB/s per transport and framing, beside a stdlib baseline.

How this works: this module only adapts :mod:`netlab.bench`
(the measurements behind ``netlab bench``) to the scenario runner. For each
cell it calls :func:`~netlab.bench.measure.measure_round_trips` (the
built-in ``echo`` on one persistent connection, and a minimal stdlib
ping-pong measured in the same run) and, for framings that can delimit a
bulk reply, :func:`~netlab.bench.measure.measure_bulk` (``blob SIZE``
beside a stdlib transfer of the same size), then joins the two rows. Ratios
(netlab / stdlib) are the figures to compare across machines.

Over ``network: namespaces`` both servers (netlab's and the stdlib peer,
as child processes or threads per ``placement``) run in the server's
namespace and both clients in the client's, so both sides of every ratio
cross the same link: a round trip then costs the link's delay, and bulk
is capped by its rate (keep ``bulk_bytes`` small on a slow link). A
``netlab serve`` child off loopback requires a token, so with the length
framing the client authenticates (once, before timing); the raw, ack and
line framings cannot carry one, and their child serves without it because
nothing outside the lab reaches the server's namespace (``netlab serve``
checks that itself). UNIX sockets are files: they reach across namespaces
and never cross the link.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netlab.bench import figures, measure
from netlab.proto.framing import FRAMING_NAMES
from netlab.scenario.charts import BARS, Chart
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext
from netlab.scenario.experiments.common import require_transport
from netlab.service.server import MODELS


@dataclass
class ThroughputRow:
    """Round trips and bulk throughput of one transport and framing, and the stdlib's."""

    transport: str = field(metadata={"key": True})
    framing: str = field(metadata={"key": True})
    round_trips_per_s: float = field(default=0.0, metadata={"better": "higher", "heading": "round trips/s"})
    p50_us: float = field(default=0.0, metadata={"better": "lower", "heading": "p50 us"})
    p99_us: float = field(default=0.0, metadata={"better": "lower", "heading": "p99 us"})
    p999_us: float = field(default=0.0, metadata={"better": "lower", "heading": "p99.9 us"})
    baseline_round_trips_per_s: float = field(default=0.0, metadata={"heading": "stdlib round trips/s"})
    baseline_p50_us: float = field(default=0.0, metadata={"heading": "stdlib p50 us"})
    round_trip_ratio: float = field(default=0.0, metadata={"better": "higher", "heading": "ratio"})
    bulk_mb_s: float | None = field(default=None, metadata={"better": "higher", "heading": "bulk MB/s"})
    baseline_bulk_mb_s: float | None = field(default=None, metadata={"heading": "stdlib MB/s"})
    bulk_ratio: float | None = field(default=None, metadata={"better": "higher", "heading": "bulk ratio"})
    verified: bool | None = field(default=None, metadata={"heading": "sha256 ok"})
    note: str = ""


def run(parameters: Mapping[str, Any], context: RunContext) -> list[ThroughputRow]:
    """Measure one transport and framing (round trips, then bulk) with their baselines."""
    transport, framing, model = parameters["transport"], parameters["framing"], parameters["model"]
    require_transport(transport, context.network)
    duration = min(parameters["duration"], max(0.1, context.remaining() / 6))
    trips = measure.measure_round_trips(transport, framing, model, count=parameters["round_trips"],
                                           duration=duration, placement=parameters["placement"],
                                        hosts=context.network)
    context.check()
    row = ThroughputRow(
        transport=transport,
        framing=framing,
        round_trips_per_s=round(trips.per_second, 1),
        p50_us=trips.p50_us,
        p99_us=trips.p99_us,
        p999_us=trips.p999_us,
        baseline_round_trips_per_s=round(trips.baseline_per_second, 1),
        baseline_p50_us=trips.baseline_p50_us,
        round_trip_ratio=round(trips.ratio, 3),
        note=f"{trips.round_trips} round trips, stdlib {trips.baseline_round_trips}",
    )
    if framing in figures.BULK_FRAMINGS and parameters["bulk_bytes"]:
        bulk = measure.measure_bulk(transport, framing, model, payload_size=parameters["bulk_bytes"],
                                       placement=parameters["placement"], verify=parameters["verify"],
                                    hosts=context.network)
        row.bulk_mb_s = round(bulk.megabytes_per_second, 1)
        row.baseline_bulk_mb_s = round(bulk.baseline_megabytes_per_second, 1)
        row.bulk_ratio = round(bulk.ratio, 3)
        row.verified = bulk.verified
        row.note += f"; bulk {bulk.received_bytes:,} B"
    elif framing not in figures.BULK_FRAMINGS:
        row.note += f"; no bulk: {framing} cannot delimit a bulk reply"
    return [row]


EXPERIMENT = Experiment(
    name="throughput",
    summary="round trips/s and bulk MB/s through netlab, with the stdlib baseline measured in the same run",
    local_only="its stdlib baseline needs a peer netlab starts beside the server",
    parameters=(
        Parameter("transport", str, "tcp4", "which transport", choices=figures.STREAM_TRANSPORTS),
        Parameter("framing", str, "length", "the framing", choices=FRAMING_NAMES),
        Parameter("model", str, "threaded", "server concurrency model", choices=MODELS),
        Parameter("placement", str, "process", "where the servers run", choices=figures.PLACEMENTS),
        Parameter("round_trips", int, 5000, "round trips timed per side", minimum=10, maximum=10_000_000),
        Parameter("duration", float, 1.0, "seconds per side at most", minimum=0.1, maximum=120, unit="s"),
        Parameter("bulk_bytes", int, 64 * 2**20, "bytes per bulk transfer (0: no bulk)", minimum=0, maximum=2**34,
                  unit="bytes"),
        Parameter("verify", bool, False, "bulk asks for the server's SHA-256 and checks it (both ends hash)"),
    ),
    row_type=ThroughputRow,
    run=run,
    method=__doc__ or "",
    charts=(
        Chart("round-trips", "Echo round trips per second, beside the stdlib ping-pong", BARS,
              x=("transport", "framing"), y=("round_trips_per_s", "baseline_round_trips_per_s")),
        Chart("bulk", "Bulk transfer MB/s, beside a stdlib transfer of the same size", BARS,
              x=("transport", "framing"), y=("bulk_mb_s", "baseline_bulk_mb_s"), y_label="MB/s"),
        Chart("ratios", "netlab / stdlib ratios (1 = as fast as the baseline)", BARS,
              x=("transport", "framing"), y=("round_trip_ratio", "bulk_ratio"), y_label="ratio"),
    ),
)
