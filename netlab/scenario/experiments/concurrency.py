"""Experiment ``concurrency``: iterative vs threaded vs selector servers under 1, 10, 100 clients.

How this works: a netlab server of the given model runs on the transport, in
a child process by default (``placement: process``) so that the client
threads of this process do not share a GIL with the server's threads;
``clients`` client threads start together (a barrier) and each runs up to
``requests`` ``echo`` round trips on one persistent connection, stopping when
``duration`` seconds have passed since the start. Latencies are per round
trip, measured by the client; "first reply" is how long each client waited,
from the common start, for its first answer (queueing included). With the
iterative model every client but the one being served waits in the accept
queue (its connect succeeded, the kernel queued it) until the served one
hangs up, which is the lesson: it shows as a late first reply. A client that
got no reply at all within the duration counts as starved; when every client
finishes its requests in time, none starves however long it waited. Round trips/s is all
completed round trips over the wall time until the last client finished.

Over ``network: namespaces`` the server runs in the server's namespace: as a
thread of this process (``placement: thread``), or as a child ``netlab
serve`` started from there (``placement: process``), which listens off
loopback and so gets a fresh token in a private file (mode 0600, in a
temporary directory removed when it stops) that the clients present (the
length framing carries it; a ``line`` child serves without one, which
``netlab serve`` allows only in a lab namespace nothing outside the lab reaches).
Against a remote target (``netlab run --target``) the clients run here
against the target's server: its model is its own, so the row's model says
``target`` and cells that differ only in ``model`` or ``placement`` run once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from netlab.bench.figures import PLACEMENTS
from netlab.bench.measure import netlab_server, server_token
from netlab.errors import NetlabError, ReadTimeout
from netlab.scenario.charts import LINE, Chart
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext
from netlab.scenario.experiments.common import (
    STREAM_TRANSPORTS,
    milliseconds,
    percentile,
    require_transport,
)
from netlab.service.client import Client
from netlab.service.server import MODELS

JOIN_MARGIN = 5.0


@dataclass
class ConcurrencyRow:
    """One server model under one number of concurrent clients."""

    model: str = field(metadata={"key": True})
    clients: int = field(metadata={"key": True})
    transport: str = field(default="tcp4", metadata={"key": True})
    round_trips: int = field(default=0, metadata={"heading": "round trips"})
    round_trips_per_s: float | None = field(default=None, metadata={"better": "higher", "heading": "round trips/s"})
    p50_us: float | None = field(default=None, metadata={"better": "lower", "heading": "p50 us"})
    p99_us: float | None = field(default=None, metadata={"better": "lower", "heading": "p99 us"})
    first_reply_p50_ms: float | None = field(default=None,
                                             metadata={"better": "lower", "heading": "first reply p50 ms"})
    first_reply_max_ms: float | None = field(default=None,
                                             metadata={"better": "lower", "heading": "first reply max ms"})
    served_clients: int = field(default=0, metadata={"better": "higher", "heading": "clients served"})
    starved_clients: int = field(default=0, metadata={"better": "lower", "heading": "clients starved"})
    errors: int = 0
    wall_s: float | None = field(default=None, metadata={"heading": "wall s"})
    note: str = ""


class _ClientOutcome:
    __slots__ = ("latencies", "error", "starved", "first_reply")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.first_reply: float | None = None
        self.error = ""
        self.starved = False


def run(parameters: Mapping[str, Any], context: RunContext) -> list[ConcurrencyRow]:
    """Drive one server model with concurrent clients and measure round trips."""
    transport, model, count = parameters["transport"], parameters["model"], parameters["clients"]
    requests, duration = parameters["requests"], min(parameters["duration"], context.remaining())
    require_transport(transport, context.network)
    outcomes = [_ClientOutcome() for _ in range(count)]
    barrier = threading.Barrier(count + 1)
    with _server(parameters, context, backlog=max(128, count), max_connections=max(64, count)) as (address, token):
        stop_at: list[float] = []

        def client_thread(outcome: _ClientOutcome) -> None:
            try:
                barrier.wait(JOIN_MARGIN)
                deadline = stop_at[0]
                with Client(address, framing=parameters["framing"], connect_timeout=duration,
                            read_timeout=duration, token=token) as client:
                    for _ in range(requests):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or context.cancelled.is_set():
                            break
                        client.read_timeout = remaining
                        started = time.perf_counter()
                        client.run(("echo", "ping"))
                        outcome.latencies.append(time.perf_counter() - started)
                        if outcome.first_reply is None:
                            outcome.first_reply = time.monotonic() - (deadline - duration)
            except ReadTimeout:
                outcome.starved = not outcome.latencies
            except (NetlabError, threading.BrokenBarrierError) as exc:
                outcome.error = f"{type(exc).__name__}: {exc}"

        threads = [threading.Thread(target=client_thread, args=(outcome,), daemon=True) for outcome in outcomes]
        with context.network.client():  # a thread starts in its creator's namespace: the client's
            for thread in threads:
                thread.start()
        stop_at.append(time.monotonic() + duration)
        started = time.monotonic()
        barrier.wait(JOIN_MARGIN)
        for thread in threads:
            thread.join(max(0.0, stop_at[0] + JOIN_MARGIN - time.monotonic()))
        wall = time.monotonic() - started
    latencies = [latency for outcome in outcomes for latency in outcome.latencies]
    first_replies = [outcome.first_reply for outcome in outcomes if outcome.first_reply is not None]
    served = sum(1 for outcome in outcomes if outcome.latencies)
    starved = sum(1 for outcome in outcomes if outcome.starved or (not outcome.latencies and not outcome.error))
    errors = [outcome.error for outcome in outcomes if outcome.error]
    note = f"{starved} of {count} clients got no reply within {duration:g} s" if starved else ""
    if errors:
        note = "; ".join(filter(None, [note, f"{len(errors)} errors, e.g. {errors[0]}"]))
    return [ConcurrencyRow(
        model="target" if context.target is not None else model,
        clients=count,
        transport=transport,
        round_trips=len(latencies),
        round_trips_per_s=round(len(latencies) / wall, 1) if wall > 0 else None,
        p50_us=_microseconds(percentile(latencies, 0.5)),
        p99_us=_microseconds(percentile(latencies, 0.99)),
        first_reply_p50_ms=milliseconds(percentile(first_replies, 0.5)),
        first_reply_max_ms=milliseconds(max(first_replies, default=None)),
        served_clients=served,
        starved_clients=starved,
        errors=len(errors),
        wall_s=round(wall, 3),
        note=note,
    )]


@contextmanager
def _server(parameters: Mapping[str, Any], context: RunContext, **limits: Any) -> Iterator[tuple[str, bytes | None]]:
    """The server under test for the block; yield its URL and the token its clients present (None: none).

    Against a remote target nothing is started. Over namespaces the server is a thread of this process in the
    server's namespace, or a child ``netlab serve`` started from there with a fresh token, since it listens off
    loopback (see :func:`~netlab.bench.measure.netlab_server`).
    """
    if context.target is not None:
        yield context.target.url, context.target.token
        return
    transport, framing, model, placement = (parameters["transport"], parameters["framing"], parameters["model"],
                                            parameters["placement"])
    token = server_token(transport, framing, placement, context.network)
    with netlab_server(transport, framing, model, placement, hosts=context.network, token=token,
                       **limits) as address:
        yield address, token


def _microseconds(seconds: float | None) -> float | None:
    value = milliseconds(seconds)
    return None if value is None else round(value * 1000, 1)


EXPERIMENT = Experiment(
    name="concurrency",
    summary="server models under concurrent clients: the iterative server queues everyone but one",
    parameters=(
        Parameter("model", str, "threaded", "server concurrency model", choices=MODELS),
        Parameter("clients", int, 10, "concurrent clients", minimum=1, maximum=1000),
        Parameter("transport", str, "tcp4", "which transport", choices=STREAM_TRANSPORTS + ("udp",)),
        Parameter("framing", str, "length", "framing (one that carries an exit status)", choices=("line", "length")),
        Parameter("requests", int, 500, "round trips per client at most", minimum=1, maximum=1_000_000),
        Parameter("duration", float, 2.0, "seconds the clients run at most", minimum=0.1, maximum=120, unit="s"),
        Parameter("placement", str, "process", "where the server runs: its own process or a thread of this one",
                  choices=PLACEMENTS),
    ),
    row_type=ConcurrencyRow,
    run=run,
    method=__doc__ or "",
    local_only="",
    server_settings=("model", "placement"),
    charts=(
        Chart("first-reply", "How long each client waits for its first reply", LINE, x=("clients",),
              y=("first_reply_p50_ms", "first_reply_max_ms"), series=("model", "transport"), log_x=True,
              log_y=True, y_label="first reply, ms"),
        Chart("round-trips", "Round trips per second by clients and server model", LINE, x=("clients",),
              y=("round_trips_per_s",), series=("model", "transport"), log_x=True),
    ),
)
