"""Experiment ``bottleneck``: bulk flows through a shaped link with a queue, TCP against sequenced UDP.

How this works, one run (client and server placed by ``context.network``,
meant for a namespaced link with a rate, a queue and a delay):

- ``sender``: ``tcp`` (the kernel's TCP with its default congestion
  control, named from ``net.ipv4.tcp_congestion_control`` in the client's
  namespace), ``tcp-reno``/``tcp-cubic``/``tcp-bbr`` (the kernel's TCP with
  that algorithm set on the socket, TCP_CONGESTION), or sequenced UDP with
  the controller ``none``, ``reno`` or ``cubic``.
- ``flows`` bulk flows start together from the client; each sends for
  ``seconds`` as fast as its transport lets it. The server side counts the
  bytes that arrive inside that interval: ``goodput`` is their sum x 8 over
  ``seconds``; per flow in the note.
- ``idle RTT``: p50 of small UDP echoes (client -> server -> client) before
  the flows start; ``RTT under load``: p50 (and p90) of the same echoes sent
  every ``probe_interval`` while the flows run (after their first second), so
  the echoes wait in the same shaper queue as the data, as flent's RRUL
  measures latency beside its flows; ``queueing delay`` is the p50
  difference (bufferbloat). The flows' own RTT samples are not used. An echo
  that meets a full queue is dropped, so the surviving echoes under-sample
  the fullest moments: ``echo loss`` says how many never came back.
- ``queue``: the bottleneck's own occupancy, read with each echo from the
  shaper's queue discipline on the router (the kernel's backlog counter, as
  ``tc -s qdisc`` shows it) for the direction to the server: its median in
  KiB and the share of samples in which it held less than one full frame
  (empty). Only over namespaces.
- ``loss``: frames the client's interfaces sent that the server's never
  received (``/proc/net/dev`` of each namespace, loopback left out), over
  the transfer: what the shaper's queue (and any configured loss) dropped,
  echoes and both directions' ACKs included.
- ``retransmits``: TCP ``tcpi_total_retrans`` of the senders' sockets, or the
  sequenced senders' retransmitted datagrams (fast + timeout).
- ``fairness``: Jain's index (sum x)^2 / (n sum x^2) of the flows' goodputs
  (1 is a fair share; 1/n one flow takes all); empty for one flow.
- ``cwnd`` and ``congestion events``: the median congestion window of the
  senders over the transfer (TCP: ``tcpi_snd_cwnd`` x MSS sampled with the
  echoes) and the window reductions the sequenced senders counted.
- With ``trace: true`` each row keeps the senders' windows over time
  (``cwnd_trace``: ``[flow, time s, cwnd KiB, srtt ms, event]``; every loss
  and timeout, and the window at most every 50 ms between them) in the
  result's JSON; ``netlab results plot`` draws them as cwnd over time.

On loopback there is no bottleneck: every controller looks the same.
"""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from netlab.lab.placement import Placement
from netlab.proto.seq.congestion import CONTROLLERS, EVENT_ACK, UNLIMITED
from netlab.scenario.charts import BARS, LINE, Chart
from netlab.scenario.experiments.base import (
    Experiment,
    Parameter,
    RunContext,
    RunIncomplete,
    RunSkipped,
    did_not_complete,
)
from netlab.scenario.experiments.common import milliseconds, percentile
from netlab.scenario.experiments.kernel import (
    TCP_INFO_SND_CWND,
    TCP_INFO_SND_MSS,
    TCP_INFO_TOTAL_RETRANS,
    THREAD_PROC_NET,
    tcp_info,
)

TCP_SENDERS = ("tcp", "tcp-reno", "tcp-cubic", "tcp-bbr")
SENDERS = TCP_SENDERS + CONTROLLERS
TCP_CHUNK = 65_536
PROBE = struct.Struct("!Id")
TRACE_SPACING = 0.05
DRAIN_LIMIT = 10.0  # seconds the receivers keep reading after the interval (a queue and a window to drain)
CONGESTION_SYSCTL = "/proc/sys/net/ipv4/tcp_congestion_control"


@dataclass
class BottleneckRow:
    """One cell: the flows of one sender kind through the bottleneck together."""

    sender: str = field(metadata={"key": True})
    flows: int = field(metadata={"key": True})
    goodput_mbit: float | None = field(default=None, metadata={"heading": "goodput Mbit/s", "better": "higher"})
    idle_rtt_ms: float | None = field(default=None, metadata={"heading": "idle RTT ms"})
    loaded_rtt_ms: float | None = field(default=None, metadata={"heading": "RTT load ms", "better": "lower"})
    loaded_p90_ms: float | None = field(default=None, metadata={"heading": "p90 load ms", "better": "lower"})
    queueing_ms: float | None = field(default=None, metadata={"heading": "queueing ms", "better": "lower"})
    echo_loss_percent: float | None = field(default=None, metadata={"heading": "echo loss %"})
    queue_kb: float | None = field(default=None, metadata={"heading": "queue KiB"})
    queue_empty_percent: float | None = field(default=None, metadata={"heading": "queue empty %"})
    loss_percent: float | None = field(default=None, metadata={"heading": "loss %", "better": "lower"})
    retransmits: int | None = field(default=None, metadata={"better": "lower"})
    fairness: float | None = field(default=None, metadata={"heading": "Jain", "better": "higher"})
    cwnd_kb: float | None = field(default=None, metadata={"heading": "cwnd KiB"})
    congestion_events: int | None = field(default=None, metadata={"heading": "cong. events"})
    note: str = ""
    cwnd_trace: list[list[Any]] | None = field(default=None, metadata={"hidden": True})


@dataclass
class FlowResult:
    """What one flow's two ends measured."""

    received: int = 0  # bytes arrived within the interval
    retransmits: int = 0
    congestion_events: int | None = None
    cwnd_samples: list[float] = field(default_factory=list)
    trace: list[list[Any]] = field(default_factory=list)
    error: str = ""


def jain_index(values: list[float]) -> float | None:
    """Jain's fairness index of ``values``; None for fewer than two or all zero."""
    if len(values) < 2 or not any(values):
        return None
    return sum(values) ** 2 / (len(values) * sum(value * value for value in values))


def run(parameters: Mapping[str, Any], context: RunContext) -> list[BottleneckRow]:
    """Run ``flows`` bulk flows of ``sender`` through ``context.network`` for ``seconds``."""
    sender, flows, seconds = parameters["sender"], parameters["flows"], parameters["seconds"]
    placement = context.network
    note: list[str] = []
    if sender == "tcp":
        with placement.client():
            note.append(f"kernel TCP, default {_kernel_congestion_control()}")
    with ExitStack() as stack:
        echo_address = _start_echo(placement, stack)
        with placement.client():
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stack.callback(probe.close)
        idle, _ = _probe_rtts(probe, echo_address, parameters["probe_interval"], 20, None, context)
        results = [FlowResult() for _ in range(flows)]
        with placement.client():
            sent_before = _interface_packets(TRANSMITTED)
        with placement.server():
            arrived_before = _interface_packets(RECEIVED)
        start_flows = _tcp_flows if sender in TCP_SENDERS else _udp_flows
        started, threads, sample = start_flows(parameters, placement, results, context, stack)
        loaded_start = started + min(1.0, seconds / 4)
        queue = _QueueSampler.open(placement, stack)
        backlog: list[int] = []

        def sample_all() -> None:
            if sample is not None:
                sample()
            if queue is not None and time.monotonic() >= loaded_start:
                queue.read(backlog)

        loaded, echoes_sent = _probe_rtts(probe, echo_address, parameters["probe_interval"], None, started + seconds,
                                          context, record_from=loaded_start, sample=sample_all)
        for thread in threads:
            thread.join(max(0.1, min(DRAIN_LIMIT + 5, context.remaining())))
        with placement.client():
            sent = _interface_packets(TRANSMITTED) - sent_before
        with placement.server():
            arrived = _interface_packets(RECEIVED) - arrived_before
    goodputs = [result.received * 8 / seconds / 1e6 for result in results]
    idle_rtt, loaded_rtt = percentile(idle, 0.5), percentile(loaded, 0.5)
    frame = int(placement.link.get("to_server", {}).get("mtu", 1500)) + 14
    cwnds = [sample for result in results for sample in result.cwnd_samples]
    events = [result.congestion_events for result in results if result.congestion_events is not None]
    if flows > 1:
        note.append("flows " + " + ".join(f"{goodput:.2f}" for goodput in goodputs) + " Mbit/s")
    note.append(f"{len(loaded)} echoes under load")
    row = BottleneckRow(
        sender=sender,
        flows=flows,
        goodput_mbit=round(sum(goodputs), 3),
        idle_rtt_ms=milliseconds(idle_rtt),
        loaded_rtt_ms=milliseconds(loaded_rtt),
        loaded_p90_ms=milliseconds(percentile(loaded, 0.9)),
        queueing_ms=milliseconds(loaded_rtt - idle_rtt) if idle_rtt is not None and loaded_rtt is not None else None,
        echo_loss_percent=round((echoes_sent - len(loaded)) / echoes_sent * 100, 1) if echoes_sent else None,
        queue_kb=round(statistics.median(backlog) / 1024, 1) if backlog else None,
        queue_empty_percent=round(sum(size < frame for size in backlog) / len(backlog) * 100, 1) if backlog else None,
        # Off a namespaced link the counters would be the host's own interfaces (other traffic): no loss figure.
        loss_percent=round((sent - arrived) / sent * 100, 2) if sent > 0 and placement.namespaced else None,
        retransmits=sum(result.retransmits for result in results),
        fairness=round(index, 3) if (index := jain_index(goodputs)) is not None else None,
        cwnd_kb=round(statistics.median(cwnds) / 1024, 1) if cwnds else None,
        congestion_events=sum(events) if events else None,
        note="; ".join(note),
        cwnd_trace=[entry for result in results for entry in result.trace] if parameters["trace"] else None,
    )
    errors = [f"flow {index + 1}: {result.error}" for index, result in enumerate(results) if result.error]
    if errors:
        raise RunIncomplete(did_not_complete(flows - len(errors), flows, seconds, "; ".join(errors)), [row])
    return [row]


RECEIVED, TRANSMITTED = 1, 9  # packet columns of /proc/net/dev after the interface name


def _interface_packets(column: int) -> int:
    """Packets received or sent by every interface but loopback of the calling thread's namespace."""
    total = 0
    with open(f"{THREAD_PROC_NET}/dev", encoding="ascii") as stream:
        for line in stream.read().splitlines()[2:]:
            name, _, counters = line.partition(":")
            if name.strip() != "lo":
                total += int(counters.split()[column])
    return total


def _kernel_congestion_control() -> str:
    try:
        with open(CONGESTION_SYSCTL, encoding="ascii") as stream:
            return stream.read().strip()
    except OSError:
        return "(unknown)"


def _start_echo(placement: Placement, stack: ExitStack) -> tuple[str, int]:
    """A UDP echo socket in the server's namespace, answered by a thread until the run ends."""
    with placement.server():
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stack.callback(echo.close)
    echo.bind((placement.server_address, 0))
    echo.settimeout(0.2)
    stopping = threading.Event()

    def answer() -> None:
        while not stopping.is_set():
            try:
                data, peer = echo.recvfrom(2048)
                echo.sendto(data, peer)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=answer, name="netlab-bottleneck-echo", daemon=True)
    thread.start()
    stack.callback(thread.join, 1.0)
    stack.callback(stopping.set)
    return placement.server_address, echo.getsockname()[1]


def _probe_rtts(probe: socket.socket, address: tuple[str, int], interval: float, count: int | None,
                until: float | None, context: RunContext, *, record_from: float = 0.0,
                sample: Callable[[], None] | None = None) -> tuple[list[float], int]:
    """Send numbered echoes every ``interval`` (``count`` of them, or until ``until``).

    Returns:
        The RTTs of the echoes sent from ``record_from`` on that came back, and how many were sent then.
    """
    probe.setblocking(False)
    rtts: list[float] = []
    number = 0
    recorded = 0
    next_send = time.monotonic()
    while True:
        context.check()
        now = time.monotonic()
        if (count is not None and number >= count) or (until is not None and now >= until):
            break
        if now >= next_send:
            probe.sendto(PROBE.pack(number, now), address)
            number += 1
            recorded += now >= record_from
            next_send += interval
            if sample is not None:
                sample()
        _read_echoes(probe, rtts, record_from)
        time.sleep(min(0.002, max(0.0, next_send - time.monotonic())))
    quiet_end = time.monotonic() + 0.5
    while time.monotonic() < quiet_end:  # late answers still count (they are the point under load)
        _read_echoes(probe, rtts, record_from)
        time.sleep(0.005)
    return rtts, recorded


def _read_echoes(probe: socket.socket, rtts: list[float], record_from: float) -> None:
    while True:
        try:
            data = probe.recv(2048)
        except BlockingIOError:
            return
        _, sent_at = PROBE.unpack_from(data)
        if sent_at >= record_from:
            rtts.append(time.monotonic() - sent_at)


class _QueueSampler:
    """Reads the backlog of the shaper that carries data to the server, from the router's namespace."""

    def __init__(self, route: Any, index: int) -> None:
        self._route = route
        self._index = index

    @classmethod
    def open(cls, placement: Placement, stack: ExitStack) -> _QueueSampler | None:
        """A sampler for ``placement``'s bottleneck, or None when there is no router (loopback)."""
        interface = placement.shaper_interfaces.get("to_server")
        if placement.router_namespace is None or interface is None:
            return None
        from pyroute2 import IPRoute

        with placement.router():
            route = IPRoute()  # a netlink socket belongs to the namespace it was made in
        stack.callback(route.close)
        found = route.link_lookup(ifname=interface)
        return cls(route, found[0]) if found else None

    def read(self, into: list[int]) -> None:
        """Append the root queue discipline's backlog in bytes (what ``tc -s qdisc`` calls backlog)."""
        for message in self._route.get_qdiscs(index=self._index):
            if message["parent"] != ROOT_PARENT:
                continue
            stats = message.get_attr("TCA_STATS2")
            queue = stats.get_attr("TCA_STATS_QUEUE") if stats is not None else None
            if queue is not None:
                into.append(int(queue["backlog"]))
            return


ROOT_PARENT = 0xFFFFFFFF  # TC_H_ROOT: the queue discipline attached to the interface itself


# ------------------------------------------------------------------ TCP flows

FlowsStarted = tuple[float, list[threading.Thread], Callable[[], None] | None]


def _tcp_info(sock: socket.socket) -> tuple[int, ...] | None:
    """(snd_mss, snd_cwnd, total_retrans) of a TCP socket, or None once it is closed."""
    return tcp_info(sock, TCP_INFO_SND_MSS, TCP_INFO_SND_CWND, TCP_INFO_TOTAL_RETRANS)


def _tcp_flows(parameters: Mapping[str, Any], placement: Placement, results: list[FlowResult],
               context: RunContext, stack: ExitStack) -> FlowsStarted:
    seconds = parameters["seconds"]
    with placement.server():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stack.callback(listener.close)
    listener.bind((placement.server_address, 0))
    listener.listen(len(results))
    senders: list[socket.socket] = []
    receivers: list[socket.socket] = []
    for _ in results:
        with placement.client():
            sender = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stack.callback(sender.close)
        if parameters["sender"] != "tcp":
            algorithm = parameters["sender"].removeprefix("tcp-")
            try:
                sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm.encode())
            except OSError as exc:
                raise RunSkipped(f"the kernel refuses TCP congestion control {algorithm}: {exc.strerror} "
                                 "(see net.ipv4.tcp_available_congestion_control)") from None
        sender.settimeout(10.0)
        sender.connect(listener.getsockname())
        receiver, _ = listener.accept()
        stack.callback(receiver.close)
        senders.append(sender)
        receivers.append(receiver)

    def sample_windows() -> None:  # with each echo: the kernel's window of every sender
        for sock, result in zip(senders, results):
            info = _tcp_info(sock)
            if info is not None:
                result.cwnd_samples.append(info[1] * info[0])

    started = time.monotonic()
    end = started + seconds
    threads = []
    for sender, receiver, result in zip(senders, receivers, results):
        threads.append(threading.Thread(target=_tcp_send, args=(sender, end, result, context), daemon=True))
        threads.append(threading.Thread(target=_tcp_receive, args=(receiver, end, result), daemon=True))
    for thread in threads:
        thread.start()
    return started, threads, sample_windows


def _tcp_send(sock: socket.socket, end: float, result: FlowResult, context: RunContext) -> None:
    chunk = bytes(TCP_CHUNK)
    try:
        while time.monotonic() < end and not context.cancelled.is_set():
            sock.send(chunk)
        info = _tcp_info(sock)
        if info is not None:
            result.retransmits = info[2]
        sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        result.error = f"tcp send: {exc}"


def _tcp_receive(sock: socket.socket, end: float, result: FlowResult) -> None:
    sock.settimeout(1.0)
    stop = end + DRAIN_LIMIT
    try:
        while time.monotonic() < stop:
            try:
                data = sock.recv(TCP_CHUNK)
            except TimeoutError:
                continue
            if not data:
                return
            if time.monotonic() <= end:
                result.received += len(data)
    except OSError as exc:
        result.error = f"tcp receive: {exc}"


# ---------------------------------------------------------- sequenced UDP flows


def _udp_flows(parameters: Mapping[str, Any], placement: Placement, results: list[FlowResult],
               context: RunContext, stack: ExitStack) -> FlowsStarted:
    from netlab.transport.udp import UdpOptions, connect_udp, listen_udp

    options = UdpOptions.build(payload_size=parameters["datagram_size"], rto_floor=parameters["rto_floor"],
                               initial_rto=max(parameters["rto_floor"], 1.0), congestion=parameters["sender"],
                               congestion_trace=parameters["trace"], linger=1.0, window=parameters["window"])
    with placement.server():
        listener = listen_udp(f"udp://{placement.server_address}:0", len(results), options=options)
    stack.callback(listener.close)
    connections = []
    receivers = []
    for _ in results:
        with placement.client():
            connection = connect_udp(listener.address, 10.0, options=options)
        stack.callback(connection.abort)
        connections.append(connection)
        receiver = listener.accept(10.0)
        stack.callback(receiver.abort)
        receivers.append(receiver)
    started = time.monotonic()
    end = started + parameters["seconds"]
    threads = []
    fragment = connections[0].message_fragment_size or options.sequencing_config().fragment_size
    message = bytes(fragment * 4)  # four full datagrams a message
    for index, (connection, receiver, result) in enumerate(zip(connections, receivers, results)):
        threads.append(threading.Thread(target=_udp_send, args=(connection, message, started, end, index, result,
                                                                 context), daemon=True))
        threads.append(threading.Thread(target=_udp_receive, args=(receiver, end, result), daemon=True))
    for thread in threads:
        thread.start()
    return started, threads, None  # the senders sample their own windows


def _udp_send(connection: Any, message: bytes, started: float, end: float, index: int, result: FlowResult,
              context: RunContext) -> None:
    next_sample = started
    try:
        while time.monotonic() < end and not context.cancelled.is_set():
            connection.send(message, timeout=max(0.05, end - time.monotonic()))
            if time.monotonic() >= next_sample:
                window = connection.statistics().congestion_window
                if window is not None:
                    result.cwnd_samples.append(window)
                next_sample += 0.05
    except Exception as exc:  # noqa: BLE001 - a WriteTimeout at the interval's end is expected
        if time.monotonic() < end - 0.1:
            result.error = f"udp send: {type(exc).__name__}: {exc}"
    stats = connection.statistics()
    result.retransmits = stats.retransmits
    result.congestion_events = stats.congestion_events
    trace = connection.congestion_trace()
    if trace:
        last = -1.0
        for row in trace:
            if row.cwnd >= UNLIMITED or (row.event == EVENT_ACK and row.time - last < TRACE_SPACING):
                continue  # ``none`` has no window to draw
            last = row.time
            result.trace.append([f"flow {index + 1}", round(row.time - started, 4), round(row.cwnd / 1024, 1),
                                 None if row.srtt is None else round(row.srtt * 1000, 3), row.event])
    connection.close()


def _udp_receive(connection: Any, end: float, result: FlowResult) -> None:
    stop = end + DRAIN_LIMIT
    try:
        while time.monotonic() < stop:
            try:
                data = connection.receive(timeout=0.5)
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ == "ReadTimeout":
                    continue
                if time.monotonic() < end:
                    result.error = f"udp receive: {type(exc).__name__}: {exc}"
                return
            if not data:
                return
            if time.monotonic() <= end:
                result.received += len(data)
    finally:
        connection.close()


EXPERIMENT = Experiment(
    name="bottleneck",
    summary="bulk flows through a shaped link with a queue: TCP against sequenced UDP with each congestion control",
    local_only="it builds its own shaped link in network namespaces and reads the server's counters",
    parameters=(
        Parameter("sender", str, "reno", "tcp (the kernel's default), tcp-reno, tcp-cubic, tcp-bbr, or sequenced "
                  "UDP with none, reno or cubic", choices=SENDERS),
        Parameter("flows", int, 1, "bulk flows started together", minimum=1, maximum=8),
        Parameter("seconds", float, 10.0, "how long each flow sends", minimum=0.5, maximum=300, unit="s"),
        Parameter("probe_interval", float, 0.05, "seconds between RTT echoes", minimum=0.005, maximum=1, unit="s"),
        Parameter("datagram_size", int, 1472, "sequenced UDP datagram size (1472 fills a 1500-byte MTU)",
                  minimum=100, maximum=65507, unit="bytes"),
        Parameter("window", int, 256, "sequenced UDP receive window, datagrams", minimum=8, maximum=65536),
        Parameter("rto_floor", float, 0.2, "sequenced UDP RTO floor, s (Linux TCP: 0.2)", minimum=0.001, maximum=5,
                  unit="s"),
        Parameter("trace", bool, True, "keep the sequenced senders' cwnd over time in the result (JSON)"),
    ),
    row_type=BottleneckRow,
    run=run,
    method=__doc__ or "",
    charts=(
        Chart("goodput", "Goodput through the bottleneck", BARS, x=("sender",), y=("goodput_mbit",),
              series=("flows",)),
        Chart("queueing", "Queueing delay under load (RTT under load less idle RTT)", BARS, x=("sender",),
              y=("queueing_ms",), series=("flows",)),
        Chart("queue", "Bottleneck queue occupancy (median, direction to the server)", BARS, x=("sender",),
              y=("queue_kb",), series=("flows",)),
        Chart("loss", "Packets the bottleneck dropped", BARS, x=("sender",), y=("loss_percent",),
              series=("flows",)),
        Chart("cwnd", "Congestion window of the sequenced senders over time", LINE, x=("seconds since the start",),
              y=("cwnd KiB",), series=("sender", "flows"), points="cwnd_trace",
              spread="one line per flow; each point a loss, a timeout, or the window every 50 ms"),
    ),
)
