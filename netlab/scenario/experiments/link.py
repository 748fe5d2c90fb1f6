"""Experiment ``link``: what the path between client and server does, measured against its settings.

How this works, one run (server and client placed by ``context.network``: on
loopback, or in two network namespaces joined by a shaped, impaired link):

- ``round trip``: ``echo`` commands one after another through a netlab
  server; p50 and p99 of the client-side time. Configured: the two one-way
  delays added.
- ``kernel srtt``: the client socket's smoothed RTT as the kernel keeps it
  (``TCP_INFO``), read after every echo; the median of those readings
  (tcp4 only). One reading is an average with a long memory: an echo that
  waited for a retransmission lifts it for many round trips after.
- ``bulk goodput``: ``blob SIZE`` from server to client; bytes x 8 over the
  client-side time. Configured: the rate toward the client less the header
  bytes of full-sized frames (the shaper counts whole Ethernet frames).
- ``segment size`` and ``retransmissions``: the server namespace's
  ``Tcp.OutSegs`` and ``Tcp.RetransSegs`` counters read before and after the
  bulk transfer (the kernel's own, from ``/proc/thread-self/net/snmp`` in that
  namespace; on loopback other traffic of the machine adds to them).
  Configured segment size: the MSS an MTU allows with timestamps (MTU - 52).
- ``udp rate``: the same two sockets, the client sending 1,400-byte
  datagrams for ``udp_seconds`` at 1.25 times the link rate (as fast as it can
  on loopback); the rate at which they arrive, counted with their Ethernet, IP
  and UDP headers as the shaper counts them. Configured: the rate toward the
  server.
- ``udp loss``: a plain UDP socket in the client sends numbered datagrams to
  one in the server (paced at half the link rate, so the shaper's queue does
  not drop them); loss = datagrams that never arrived / sent. Configured: the
  loss toward the server.

- ``ping rtt``: ``ping`` (iputils) run inside the client's namespace
  against the server, ``pings`` echo requests 0.2 s apart: its average RTT,
  an independent check of the round trip (the row says so when ping is not
  installed).

Every row with a configured value gets a verdict: ``agrees`` when the
measurement is within ``tolerance`` (10 % by default) of the setting,
``disagrees`` otherwise, with the difference in percent. Loss is a
probability: with n datagrams and loss p the measured share spreads by about
sqrt(p(1-p)/n), so judging 1 % within 10 % needs tens of thousands of
datagrams (40,000 give a spread of 0.05 percentage points, half the
tolerance); the note gives that spread.

Loopback hides all of it: a 64 KiB MTU (segments of ~64 KiB), no delay, no
rate limit, no loss.

Against a remote target (``netlab run --target``) the round trips, the
client's kernel srtt and the bulk goodput are measured against it (nothing is
configured, so that column stays empty); the segment and retransmission
counters are the server's kernel's and the UDP probes need a plain socket on
the server host, so those rows say why they were not measured.
"""

from __future__ import annotations

import math
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netlab.lab.placement import Placement
from netlab.scenario.charts import BARS, Chart
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext
from netlab.scenario.experiments.common import (
    client_for,
    milliseconds,
    percentile,
    require_transport,
    served,
    service_url,
)
from netlab.scenario.experiments.kernel import TCP_INFO_RTT, THREAD_PROC_NET, read_counters, tcp_info
from netlab.scenario.target import not_on_target

TRANSPORTS = ("tcp4", "udp")
TCP_HEADER_WITH_TIMESTAMPS = 52  # IPv4 20 + TCP 20 + timestamp option 12
UDP_PAYLOAD = 200
ETHERNET_HEADER = 14
UDP_OVERHEAD = ETHERNET_HEADER + 20 + 8
UDP_RATE_PAYLOAD = 1400
SEQUENCE = struct.Struct("!I")
PING_INTERVAL = 0.2
_PING_SUMMARY = re.compile(r"= ([0-9.]+)/([0-9.]+)/([0-9.]+)")
_PING_RECEIVED = re.compile(r"(\d+) received")
NOT_ON_TARGET_COUNTERS = not_on_target("the server's counters are in the target's kernel")
NOT_ON_TARGET_UDP = not_on_target("it needs a plain UDP socket netlab opens on the server host")


@dataclass
class LinkRow:
    """One thing measured about the path, beside what the link was set to."""

    transport: str = field(metadata={"key": True})
    measure: str = field(metadata={"key": True})
    unit: str = ""
    configured: float | None = None
    measured: float | None = None
    verdict: str = field(default="", metadata={"heading": "vs configured"})
    note: str = ""


def run(parameters: Mapping[str, Any], context: RunContext) -> list[LinkRow]:
    """Measure round trips, bulk goodput, segments, retransmissions and UDP loss over ``context.network``."""
    transport = parameters["transport"]
    require_transport(transport, context.network)
    placement = context.network
    to_server, to_client = placement.link.get("to_server", {}), placement.link.get("to_client", {})
    rows: list[LinkRow] = []

    tolerance = parameters["tolerance"] / 100

    def row(measure: str, unit: str, configured: float | None, measured: float | None, note: str = "",
            judged: bool = True) -> None:
        verdict = compare(configured, measured, tolerance) if judged else ""
        rows.append(LinkRow(transport, measure, unit, configured, measured, verdict, note))

    remote = context.target is not None
    with served(context, service_url(transport, context)) as endpoint:
        with client_for(context, endpoint, read_timeout=max(10.0, context.remaining())) as client:
            times: list[float] = []
            smoothed: list[float] = []
            for _ in range(parameters["round_trips"]):
                context.check()
                reply = client.run(("echo", "ping"))
                times.append(reply.total)
                if transport == "tcp4":
                    smoothed += [value for value in (_kernel_rtt_ms(client.connection.fileno()),) if value]
            configured_rtt = _sum_ms(to_server.get("delay"), to_client.get("delay"))
            row("round trip p50", "ms", configured_rtt, milliseconds(percentile(times, 0.5)),
                f"{len(times)} netlab echo commands")
            row("round trip p99", "ms", configured_rtt, milliseconds(percentile(times, 0.99)),
                "not judged: the tail includes retransmissions", judged=False)
            if transport == "tcp4":
                median = percentile(smoothed, 0.5)
                row("kernel srtt", "ms", configured_rtt, round(median, 3) if median is not None else None,
                    f"TCP_INFO tcpi_rtt of the client socket: the median of {len(smoothed)} readings, one after "
                    f"each echo (last {smoothed[-1]:g} ms)" if smoothed else "TCP_INFO gave no reading")
            context.check()
            size = parameters["bulk_bytes"]
            with placement.server():
                before = read_counters(THREAD_PROC_NET)
            reply = client.run(("blob", str(size)), keep_output=False)
            with placement.server():
                after = read_counters(THREAD_PROC_NET)
            if reply.stdout_bytes != size:
                raise RuntimeError(f"blob sent {reply.stdout_bytes} bytes, not {size}")
            rate, mtu = to_client.get("rate"), to_client.get("mtu")
            payload_rate = rate * (mtu - TCP_HEADER_WITH_TIMESTAMPS) / (mtu + ETHERNET_HEADER) / 1e6 if rate else None
            row("bulk goodput", "Mbit/s", round(payload_rate, 3) if payload_rate else None,
                round(size * 8 / reply.total / 1e6, 3),
                f"{size:,} bytes server -> client in {reply.total:.2f} s"
                + ("; configured: the rate less Ethernet, IP and TCP headers" if payload_rate else ""))
            if transport == "tcp4" and remote:
                row("segment size", "B", None, None, NOT_ON_TARGET_COUNTERS)
                row("retransmissions", "segments", None, None, NOT_ON_TARGET_COUNTERS)
            elif transport == "tcp4":
                segments = after.get("Tcp.OutSegs", 0) - before.get("Tcp.OutSegs", 0)
                retransmitted = after.get("Tcp.RetransSegs", 0) - before.get("Tcp.RetransSegs", 0)
                row("segment size", "B", mtu - TCP_HEADER_WITH_TIMESTAMPS if mtu else None,
                    round(size / segments, 1) if segments else None,
                    f"{segments:,} segments sent by the server (Tcp.OutSegs)")
                row("retransmissions", "segments", None, retransmitted,
                    f"{retransmitted / segments * 100:.2f} % of segments (Tcp.RetransSegs)" if segments else "")
    if remote:
        row("udp rate", "Mbit/s", None, None, NOT_ON_TARGET_UDP)
        row("udp loss", "%", None, None, NOT_ON_TARGET_UDP)
        return rows
    context.check()
    if placement.namespaced and parameters["pings"]:
        ping_ms, ping_note = _ping(placement, parameters["pings"], context)
        row("ping rtt", "ms", _sum_ms(to_server.get("delay"), to_client.get("delay")), ping_ms, ping_note)
    sent, arrived, duplicates = _udp_loss(placement, parameters["datagrams"], to_server.get("rate"), context)
    context.check()
    arrived_bytes, seconds, datagrams = _udp_rate(placement, parameters["udp_seconds"], to_server.get("rate"),
                                                  context)
    rate = to_server.get("rate")
    row("udp rate", "Mbit/s", rate / 1e6 if rate else None,
        round(arrived_bytes * 8 / seconds / 1e6, 3) if seconds > 0 else None,
        f"{datagrams} datagrams of {UDP_RATE_PAYLOAD} B arrived over {seconds:.2f} s")
    loss = to_server.get("loss")
    spread = f"; spread of the share at this count: ±{math.sqrt(loss * (1 - loss) / sent) * 100:.3f} points" \
        if loss else ""
    row("udp loss", "%", loss * 100 if loss is not None else None, round((sent - arrived) / sent * 100, 3),
        f"{arrived} of {sent} datagrams arrived" + (f", {duplicates} duplicates" if duplicates else "") + spread)
    return rows


def compare(configured: float | None, measured: float | None, tolerance: float) -> str:
    """``agrees, +3.2 %`` when ``measured`` is within ``tolerance`` (a fraction) of ``configured``, else
    ``disagrees, ...``; '' when there is nothing to compare (no setting, or a setting of 0)."""
    if configured is None or measured is None or configured == 0:
        return ""
    difference = (measured - configured) / configured
    word = "agrees" if abs(difference) <= tolerance else "disagrees"
    return f"{word}, {difference * 100:+.1f} %"


def _ping(placement: Placement, count: int, context: RunContext) -> tuple[float | None, str]:
    """Average RTT of ``count`` pings from the client's namespace to the server; (None, why) when ping cannot run."""
    if shutil.which("ping") is None:
        return None, "ping is not installed (iputils-ping): no independent check of the round trip"
    timeout = count * PING_INTERVAL + 5
    command = ["ping", "-n", "-q", "-c", str(count), "-i", str(PING_INTERVAL), "-W", "2", placement.server_address]
    try:
        with placement.client():  # a child started from a thread inside a namespace is born there
            completed = subprocess.run(command, capture_output=True, text=True, timeout=min(timeout, max(
                1.0, context.remaining())), check=False)
    except subprocess.TimeoutExpired:
        return None, f"ping did not finish within {timeout:g} s"
    except OSError as exc:
        return None, f"ping could not run: {exc.strerror or exc}"
    summary = _PING_SUMMARY.search(completed.stdout)
    received = _PING_RECEIVED.search(completed.stdout)
    if summary is None:
        last = (completed.stderr or completed.stdout).strip().splitlines()
        return None, f"ping gave no round-trip summary: {last[-1] if last else 'no output'}"
    replies = f"{received.group(1)} of {count} replies" if received else f"{count} pings"
    return float(summary.group(2)), f"ping (iputils) from the client's namespace, {replies}, avg of min/avg/max"


def _sum_ms(*delays: float | None) -> float | None:
    if any(delay is None for delay in delays):
        return None
    return round(sum(delays) * 1000, 3)  # type: ignore[arg-type]


def _kernel_rtt_ms(fileno: int) -> float | None:
    with socket.socket(fileno=socket.dup(fileno)) as sock:
        values = tcp_info(sock, TCP_INFO_RTT)
    return values[0] / 1000 if values is not None else None


def _udp_pair(placement: Placement) -> tuple[socket.socket, socket.socket]:
    """A UDP receiver bound in the server's namespace (4 MiB buffer) and a sender in the client's."""
    with placement.server():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with placement.client():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    receiver.bind((placement.server_address, 0))
    return receiver, sender


def _udp_loss(placement: Placement, count: int, rate: int | None, context: RunContext) -> tuple[int, int, int]:
    """Send ``count`` numbered datagrams client -> server; return (sent, distinct arrived, duplicates)."""
    receiver, sender = _udp_pair(placement)
    with receiver, sender:
        gap = 2 * (UDP_PAYLOAD + UDP_OVERHEAD) * 8 / rate if rate else 0.0
        started = time.monotonic()
        payload = bytes(UDP_PAYLOAD - SEQUENCE.size)
        seen: set[int] = set()
        duplicates = 0
        receiver.setblocking(False)
        for number in range(count):
            pause = started + number * gap - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sender.sendto(SEQUENCE.pack(number) + payload, receiver.getsockname())
            duplicates += _drain(receiver, seen)
        quiet = time.monotonic()
        while len(seen) < count and time.monotonic() - quiet < 1.0:
            context.check()
            receiver.settimeout(0.1)
            try:
                data = receiver.recv(65_536)
            except TimeoutError:
                continue
            number = SEQUENCE.unpack_from(data)[0]
            duplicates += number in seen
            seen.add(number)
            quiet = time.monotonic()
        return count, len(seen), duplicates


def _udp_rate(placement: Placement, seconds: float, rate: int | None,
              context: RunContext) -> tuple[int, float, int]:
    """Send for ``seconds`` at 1.25 x ``rate``; return (bytes arrived with headers, arrival span, datagrams)."""
    receiver, sender = _udp_pair(placement)
    with receiver, sender:
        receiver.setblocking(False)
        sender.setblocking(False)
        frame = UDP_RATE_PAYLOAD + UDP_OVERHEAD
        gap = frame * 8 / (rate * 1.25) if rate else 0.0
        payload = bytes(UDP_RATE_PAYLOAD)
        arrivals: list[float] = []
        started = time.monotonic()
        number = 0
        while time.monotonic() - started < seconds:
            pause = started + number * gap - time.monotonic()
            if pause > 0:
                time.sleep(min(pause, 0.001))
                _count_arrivals(receiver, arrivals)
                continue
            try:
                sender.sendto(payload, receiver.getsockname())
            except BlockingIOError:
                pass  # the sender's own queue is full (loopback): not sent, not counted
            number += 1
            if number % 16 == 0:
                _count_arrivals(receiver, arrivals)
        quiet = time.monotonic()
        while time.monotonic() - quiet < 0.3:
            context.check()
            if _count_arrivals(receiver, arrivals):
                quiet = time.monotonic()
            else:
                time.sleep(0.005)
    if len(arrivals) < 2:
        return 0, 0.0, len(arrivals)
    return (len(arrivals) - 1) * frame, arrivals[-1] - arrivals[0], len(arrivals)


def _count_arrivals(receiver: socket.socket, arrivals: list[float]) -> int:
    count = 0
    while True:
        try:
            receiver.recv(65_536)
        except BlockingIOError:
            return count
        arrivals.append(time.monotonic())
        count += 1


def _drain(receiver: socket.socket, seen: set[int]) -> int:
    duplicates = 0
    while True:
        try:
            data = receiver.recv(65_536)
        except BlockingIOError:
            return duplicates
        number = SEQUENCE.unpack_from(data)[0]
        duplicates += number in seen
        seen.add(number)


EXPERIMENT = Experiment(
    name="link",
    summary="the path between client and server: round trips, goodput, segments, retransmissions, loss",
    parameters=(
        Parameter("transport", str, "tcp4", "netlab transport for the echo and bulk parts", choices=TRANSPORTS),
        Parameter("round_trips", int, 50, "echo commands one after another", minimum=1, maximum=100_000),
        Parameter("bulk_bytes", int, 4 * 1024 * 1024, "bytes of blob from server to client", minimum=1,
                  maximum=2**34, unit="bytes"),
        Parameter("datagrams", int, 1000, "UDP datagrams for the loss probe", minimum=10, maximum=1_000_000),
        Parameter("udp_seconds", float, 1.0, "how long the UDP rate probe sends", minimum=0.1, maximum=60, unit="s"),
        Parameter("pings", int, 20, "pings from the client's namespace (over namespaces; 0: none)", minimum=0,
                  maximum=10_000),
        Parameter("tolerance", float, 10.0, "a measurement agrees with its setting within this, %", minimum=0,
                  maximum=100, unit="%"),
    ),
    row_type=LinkRow,
    run=run,
    method=__doc__ or "",
    charts=(
        Chart("configured-vs-measured", "What the link was set to, and what was measured over it", BARS,
              x=("measure",), y=("configured", "measured"), series=("transport",), log_y=True,
              y_label="value in the row's unit"),
    ),
    local_only="",
)
