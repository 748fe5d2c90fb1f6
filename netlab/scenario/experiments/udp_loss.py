"""Experiment ``udp-loss``: sequenced UDP under seeded loss, with the RFC 6298 RTO floor or a fast one.

How this works: a netlab server (threaded model, length framing) listens on
``udp://127.0.0.1:0`` with the given RTO floor; the client connects with the
same floor and an impairment on its socket (``path=both``: its datagrams and
the server's are dropped with probability ``loss``), seeded from the run's
seed so a run repeats exactly. Both ends use RFC 6298's retransmission timer
(``loss_timer=rto``), the one the floor belongs to: RFC 9002's probe timeout,
sequenced UDP's default, has no floor once a round trip is measured, so under
it the two floors would differ only before the first sample. Cells that differ only in the RTO floor share
their seed, so at one loss rate both floors meet the same loss pattern. The
client runs ``commands`` commands
``echo <id> <payload>`` one after another and checks every reply. "Exactly
once" compares the server's command log with what was sent: each command must
have run once, none twice, none lost. Goodput is reply payload bytes over the
completion time; retransmissions are the client end's (timeouts and fast).
Over ``network: namespaces`` the server and client sit in their own namespaces
and the link's own delay and loss come on top of the socket impairment (the
loss column is the impairment's only; the link's is in the result's network
section).
A run that would outlast its time bound stops a few seconds before it; when
not every command completed, its row says "did not complete: done/total in
N s" with the cause (the loss ate the handshake, or the replies stopped): the
measured system failed, which is a result, not a broken experiment.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import ConnectTimeout, NetlabError, UsageError
from netlab.scenario.charts import LINE, Chart
from netlab.scenario.experiments.base import (
    Experiment,
    Parameter,
    RunContext,
    RunIncomplete,
    did_not_complete,
)
from netlab.scenario.experiments.common import on_client, placed_service, require_transport, service_url
from netlab.service.client import Client
from netlab.transport import connect, listen

RFC_RTO_FLOOR = 1.0
#: Both ends find unrevealed losses with RFC 6298's retransmission timer, whose floor this experiment
#: varies; RFC 9002's probe timeout (the default elsewhere) has no floor once a round trip is measured.
LOSS_TIMER = "rto"
SELF_STOP_MARGIN = 3.0


@dataclass
class UdpLossRow:
    """One loss rate and RTO floor."""

    loss: float = field(metadata={"key": True, "heading": "loss %"})
    rto_floor: float = field(metadata={"key": True, "heading": "RTO floor s"})
    commands: int = 0
    completed: int = field(default=0, metadata={"better": "higher"})
    exactly_once: bool = field(default=False, metadata={"heading": "all exactly once"})
    completion_s: float | None = field(default=None, metadata={"better": "lower", "heading": "completion s"})
    goodput_kb_s: float | None = field(default=None, metadata={"better": "higher", "heading": "goodput kB/s"})
    retransmits_timeout: int | None = field(default=None, metadata={"better": "lower", "heading": "RTO retransmits"})
    retransmits_fast: int | None = field(default=None, metadata={"better": "lower", "heading": "fast retransmits"})
    datagrams_sent: int | None = field(default=None, metadata={"better": "lower", "heading": "datagrams sent"})
    note: str = ""


def build_impairment(parameters: Mapping[str, Any], seed: int) -> Any:
    """The client's impairment: ``loss`` percent plus the ``impairment`` text, on both paths."""
    from netlab.transport.impairment import parse_impairment

    parts = [f"loss={parameters['loss']:g}%"]
    if parameters["impairment"]:
        parts.append(parameters["impairment"])
    parts += [f"seed={seed}", "path=both"]
    return parse_impairment(",".join(parts))


def run(parameters: Mapping[str, Any], context: RunContext) -> list[UdpLossRow]:
    """Run the commands over impaired sequenced UDP and count what came back."""
    require_transport("udp", context.network)
    from netlab.transport.udp import UdpConnection  # its counters; imported once the transport is known present

    floor, count, payload = parameters["rto_floor"], parameters["commands"], "x" * parameters["payload"]
    impairment = build_impairment(parameters, context.random.randrange(2**31))
    lines = [f"echo c{number:04d} {payload}" for number in range(1, count + 1)]
    completed = received_bytes = 0
    statistics = None
    cause = ""
    with context.network.server():
        listener = listen(service_url("udp", context), 128, rto_floor=floor, initial_rto=floor,
                          loss_timer=LOSS_TIMER)
    with placed_service(context, listener, model="threaded", framing="length") as service:
        started = time.monotonic()
        connect_timeout = max(0.1, min(10.0, context.remaining() - SELF_STOP_MARGIN))
        try:
            connection = on_client(context, lambda: connect(listener.address, connect_timeout, rto_floor=floor,
                                                            initial_rto=floor, loss_timer=LOSS_TIMER,
                                                            impairment=impairment))
            assert isinstance(connection, UdpConnection)
        except ConnectTimeout:
            connection = None
            cause = (f"no handshake completed within {connect_timeout:g} s although the server was listening: "
                     f"the seeded {parameters['loss']:g}% loss dropped the handshake on every attempt")
        if connection is not None:
            try:
                with Client("", connection=connection, read_timeout=max(0.1, context.remaining())) as client:
                    for line in lines:
                        context.check()
                        # stop on our own before the runner's bound, so the row shows how far it got
                        client.read_timeout = max(0.1, context.remaining() - SELF_STOP_MARGIN)
                        reply = client.run(line)
                        if reply.stdout == " ".join(line.split()[1:]).encode() + b"\n":
                            completed += 1
                            received_bytes += len(reply.stdout)
                    statistics = connection.statistics()
            except NetlabError as exc:
                cause = f"stopped by {type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - started
    ran = collections.Counter(event["line"] for event in service.log_events("command"))
    exactly_once = completed == count and all(ran[line] == 1 for line in lines) and sum(ran.values()) == count
    twice = sum(1 for line in lines if ran[line] > 1)
    if completed < count:
        cause = cause or f"{count - completed} replies differed from what was sent"
        note = did_not_complete(completed, count, elapsed, cause + (f"; {twice} ran more than once" if twice else ""))
    elif twice:
        note = f"{twice} ran more than once"
    else:
        note = "every command ran once and answered"
    row = UdpLossRow(
        loss=parameters["loss"],
        rto_floor=floor,
        commands=count,
        completed=completed,
        exactly_once=exactly_once,
        completion_s=round(elapsed, 3),
        goodput_kb_s=round(received_bytes / elapsed / 1000, 2) if elapsed > 0 else None,
        retransmits_timeout=statistics.retransmits_timeout if statistics else None,
        retransmits_fast=statistics.retransmits_fast if statistics else None,
        datagrams_sent=statistics.datagrams_sent if statistics else None,
        note=note,
    )
    if completed < count:
        raise RunIncomplete(note, [row])
    return [row]


def _check_cell(parameters: Mapping[str, Any]) -> str | None:
    try:
        build_impairment(parameters, 0)
    except ImportError:
        return None  # the run reports the transport as unavailable
    except UsageError as exc:
        return f"impairment: {exc}"
    return None


EXPERIMENT = Experiment(
    name="udp-loss",
    summary="sequenced UDP under loss: completion time and retransmissions, RFC 1 s RTO floor vs a fast floor",
    local_only="it impairs the server's own socket (seeded loss at both ends) and sets its RTO floor",
    parameters=(
        Parameter("loss", float, 0.0, "datagram loss in percent, both directions", minimum=0, maximum=90, unit="%"),
        Parameter("rto_floor", float, RFC_RTO_FLOOR, "lowest retransmission timeout, s", minimum=0.001, maximum=5,
                  shares_seed=True, unit="s"),
        Parameter("commands", int, 40, "commands run one after another", minimum=1, maximum=100_000),
        Parameter("payload", int, 100, "bytes echoed per command", minimum=0, maximum=60_000, unit="bytes"),
        Parameter("impairment", str, "", "extra impairment, e.g. dup=1%,reorder=5%"),
    ),
    row_type=UdpLossRow,
    run=run,
    method=__doc__ or "",
    charts=(
        Chart("completion", "Completion time vs loss, per RTO floor", LINE, x=("loss",), y=("completion_s",),
              series=("rto_floor",), require=("exactly_once",), log_y=True),
        Chart("retransmits", "Retransmissions vs loss, per RTO floor", LINE, x=("loss",),
              y=("retransmits_timeout", "retransmits_fast"), series=("rto_floor",), require=("exactly_once",),
              y_label="retransmissions"),
    ),
    check_cell=_check_cell,
)
