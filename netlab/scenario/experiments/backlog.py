"""Experiment ``backlog``: what the kernel's accept queue really holds, and what a client sees when it is full.

How this works, for TCP and UNIX: a raw netlab Listener is opened with the
given backlog and never accepts while the clients arrive (an iterative server
busy with someone else). ``backlog + 1 + extra_clients`` clients then connect
one after another. Each connected client writes one byte. The kernel's own
view is read while they wait: the listener's Recv-Q/Send-Q from ``ss``, and the
TcpExt ListenOverflows/ListenDrops counters before and after. Then the server
accepts everything queued and reads each client's byte: those are "queued,
then served". The connect times (p50, max) are those of the clients that
connected; a client that timed out or was refused is counted in its own
column, not mixed into the median.

ListenOverflows (and Udp RcvbufErrors) count for every socket of the network
namespace: on loopback that is the whole machine, so their growth during the
run includes any other listener here. The note flags a run where the growth
exceeds what this run's clients lost.

TCP clients connect with a short timeout (``connect_timeout``, 0.4 s by
default) because a SYN that meets a full queue is dropped without an answer and
the client's kernel would resend it about a second later and then on the
schedule its tcp_syn_retries and tcp_syn_linear_timeouts give (the note and
the Environment section spell it out): a full TCP queue looks like a timeout.
UNIX clients make one non-blocking attempt (timeout 0),
which shows the kernel's immediate answer to a full queue: EAGAIN.

For UDP (``transport: udp``): there is no accept queue. A socket with a small
SO_RCVBUF that is not reading is sent ``datagrams`` datagrams; those that fit
in the receive buffer arrive, the rest are dropped silently, which the Udp
RcvbufErrors counter confirms. Plain kernel UDP sockets are used here, not
netlab's sequenced UDP, because the subject is the kernel's queue.

Over ``network: namespaces`` the listener (or the UDP receiver) is in the
server's namespace and the clients in the client's, across the link: each
connect then costs a round trip of the link (the SYN out, the SYN-ACK back),
which the connect-time columns show (the lab enters each host's link-layer
address in the other's neighbour table, so the first connect waits for no ARP
or neighbour discovery); ``ss`` runs inside the server's
namespace (a child started from a thread inside a namespace is born there)
and the counters are that namespace's own, so no other traffic adds to them.
A SYN the link itself loses also looks like a timeout (the wire's counters in
the result say how many frames it dropped, not which), so keep the link's
loss at 0 to count the queue alone. UNIX sockets are files: they reach across
namespaces unchanged and never cross the link. UDP datagrams cross the link:
the receiver waits for the link's delay and the time the shaper needs to
pass them before it counts, and the datagrams the link lost are those
missing beyond the RcvbufErrors count.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import ConnectionRefused, ConnectTimeout, ReadTimeout, TransportError
from netlab.scenario.charts import LINE, Chart
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext
from netlab.scenario.experiments.common import (
    ALL_TRANSPORTS,
    milliseconds,
    on_client,
    percentile,
    require_transport,
    service_url,
)
from netlab.scenario.experiments.kernel import (
    THREAD_PROC_NET,
    counter_changes,
    listen_queue,
    missing_queue_note,
    read_counters,
)
from netlab.transport import connect, listen
from netlab.transport.base import Connection
from netlab.transport.sysctl import syn_resend_times

TCP_COUNTERS = ("TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPReqQFullDoCookies")
UDP_COUNTERS = ("Udp.RcvbufErrors",)
SERVE_READ_TIMEOUT = 1.0
UDP_FRAME_OVERHEAD = 14 + 20 + 8  # Ethernet, IPv4 and UDP headers, as the shaper counts a datagram
LINK_SETTLE = 0.2  # seconds beyond the link's delay and shaping time before the receiver counts
ACCEPT_POLL = 0.05


@dataclass
class BacklogRow:
    """One transport and backlog: the clients' view beside the kernel's.

    For UDP the columns mean: clients = datagrams sent, connected = datagrams
    queued in the receive buffer, dropped = datagrams the full buffer dropped,
    overflows = the Udp RcvbufErrors counter's growth (for TCP: TcpExt
    ListenOverflows); both counters count for the whole network namespace: the
    machine's on loopback, the server's own over namespaces.
    """

    transport: str = field(metadata={"key": True})
    backlog: int | None = field(default=None, metadata={"key": True})
    attempts: int = field(default=0, metadata={"heading": "clients"})
    connected: int = field(default=0, metadata={"heading": "connected at once"})
    served: int = field(default=0, metadata={"heading": "served"})
    timed_out: int = field(default=0, metadata={"heading": "timed out"})
    refused: int | None = field(default=0, metadata={"heading": "refused/EAGAIN"})
    dropped: int | None = field(default=None, metadata={"heading": "datagrams dropped"})
    wait_p50_ms: float | None = field(default=None, metadata={"heading": "connected p50 ms"})
    wait_max_ms: float | None = field(default=None, metadata={"heading": "connected max ms"})
    kernel_queued: int | None = field(default=None, metadata={"heading": "Recv-Q (ss)"})
    kernel_backlog: int | None = field(default=None, metadata={"heading": "Send-Q (ss)"})
    overflows: int | None = field(default=None, metadata={"heading": "overflows + (all sockets)"})
    note: str = ""


def run(parameters: Mapping[str, Any], context: RunContext) -> list[BacklogRow]:
    """Measure one transport at one backlog (or UDP's receive buffer)."""
    transport = parameters["transport"]
    if transport == "udp":
        return [_run_udp(parameters, context)]  # plain kernel UDP: needs no netlab transport
    require_transport(transport, context.network)
    return [_run_stream(parameters, context)]


def _run_stream(parameters: Mapping[str, Any], context: RunContext) -> BacklogRow:
    transport, backlog = parameters["transport"], parameters["backlog"]
    attempts = backlog + 1 + parameters["extra_clients"]
    is_tcp = transport.startswith("tcp")
    connect_timeout = parameters["connect_timeout"] if is_tcp else 0.0
    clients: list[Connection] = []
    waits: list[float] = []
    timed_out = refused = 0
    errors: set[str] = set()
    placement = context.network
    with placement.server():
        listener = listen(service_url(transport, context), backlog)
    with listener:
        before = _server_counters(context)
        try:
            for number in range(attempts):
                context.check()
                started = time.monotonic()
                try:
                    client = on_client(context, lambda: connect(listener.address, timeout=connect_timeout))
                except ConnectTimeout:
                    timed_out += 1
                    errors.add("ConnectTimeout")
                except ConnectionRefused as exc:
                    refused += 1
                    cause = exc.__cause__
                    errors.add("EAGAIN" if isinstance(cause, OSError) and cause.errno == errno.EAGAIN else "refused")
                else:
                    waits.append(time.monotonic() - started)
                    client.send(bytes([number % 256]), timeout=1.0)
                    clients.append(client)
            with placement.server():
                queue = listen_queue(listener.address)
            changes = counter_changes(before, _server_counters(context), TCP_COUNTERS) if is_tcp else {}
            served = _serve_queued(listener, len(clients), context)
        finally:
            for client in clients:
                client.close()
    overflows = changes.get("TcpExt.ListenOverflows")
    note = _stream_note(backlog, len(clients), timed_out, refused, errors, connect_timeout, changes)
    if placement.namespaced and is_tcp:
        note += _link_note(context, waits)
    if overflows is not None and overflows > timed_out and not placement.namespaced:
        note += (f"; ListenOverflows grew by {overflows}, more than the {timed_out} SYN(s) this run's clients lost: "
                 "another listener on this machine overflowed too")
    if queue is None:
        note += "; " + missing_queue_note()
    return BacklogRow(
        transport=transport,
        backlog=backlog,
        attempts=attempts,
        connected=len(clients),
        served=served,
        timed_out=timed_out,
        refused=refused,
        wait_p50_ms=milliseconds(percentile(waits, 0.5)),
        wait_max_ms=milliseconds(max(waits, default=None)),
        kernel_queued=queue.queued if queue else None,
        kernel_backlog=queue.backlog if queue else None,
        overflows=overflows,
        note=note,
    )


def _server_counters(context: RunContext) -> dict[str, int]:
    """The counters of the server's network namespace (the machine's own on loopback)."""
    if not context.network.namespaced:
        return read_counters()
    with context.network.server():
        return read_counters(THREAD_PROC_NET)


def _link_note(context: RunContext, waits: list[float]) -> str:
    """Over namespaces: a connect is a round trip of the link; say so beside the configured one."""
    link = context.network.link
    delays = [link.get(direction, {}).get("delay") for direction in ("to_server", "to_client")]
    configured = sum(delay for delay in delays if delay) * 1000
    p50 = percentile(waits, 0.5)
    measured = f"connect p50 {p50 * 1000:.1f} ms" if p50 is not None else "no connect completed"
    return (f"; across the link ({measured}; the SYN and SYN-ACK cross it: configured round trip "
            f"{configured:g} ms); counters are the server namespace's own")


def _serve_queued(listener: Any, expected: int, context: RunContext) -> int:
    """Accept what is queued and read each client's byte; return how many were served."""
    served = 0
    for _ in range(expected):
        context.check()
        try:
            connection = listener.accept(timeout=ACCEPT_POLL if served else SERVE_READ_TIMEOUT)
        except ReadTimeout:
            break
        with connection:
            try:
                if connection.receive(1, timeout=SERVE_READ_TIMEOUT):
                    served += 1
            except TransportError:
                continue
    return served


def _stream_note(backlog: int, connected: int, timed_out: int, refused: int, errors: set[str], connect_timeout: float,
                 changes: dict[str, int | None]) -> str:
    parts = [f"backlog {backlog} admitted {connected} (backlog+{connected - backlog})"]
    if timed_out:
        parts.append(f"{timed_out} SYN(s) got no answer within {connect_timeout:g} s (dropped silently; "
                     f"the kernel would resend at {syn_resend_times()})")
    if refused:
        parts.append(f"{refused} refused at once ({'/'.join(sorted(errors - {'ConnectTimeout'}))})")
    cookies = changes.get("TcpExt.TCPReqQFullDoCookies")
    if cookies:
        parts.append(f"SYN queue 'full' -> {cookies} SYN cookie(s) sent")
    return "; ".join(parts)


def _run_udp(parameters: Mapping[str, Any], context: RunContext) -> BacklogRow:
    count, size, rcvbuf = parameters["datagrams"], parameters["datagram_size"], parameters["rcvbuf"]
    payload = bytes(size)
    placement = context.network
    with placement.server():
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = on_client(context, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with receiver, sender:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        effective = receiver.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        receiver.bind((placement.server_address, 0))
        destination = receiver.getsockname()
        before = _server_counters(context)
        for _ in range(count):
            sender.sendto(payload, destination)
        _wait_for_link(context, count * (size + UDP_FRAME_OVERHEAD))
        context.check()
        changes = counter_changes(before, _server_counters(context), UDP_COUNTERS)
        receiver.setblocking(False)
        arrived = 0
        for _ in range(count):
            try:
                receiver.recv(size)
            except BlockingIOError:
                break
            arrived += 1
    dropped = count - arrived
    overflows = changes["Udp.RcvbufErrors"]
    note = (f"no backlog: the receive buffer is the queue (asked SO_RCVBUF {rcvbuf} B, kernel set {effective} B); "
            f"{arrived} of {count} {size}-byte datagrams fit, {dropped} dropped silently, sender saw no error")
    if placement.namespaced and overflows is not None:
        note += (f"; across the link: {max(0, dropped - overflows)} lost on the link, {overflows} dropped by the "
                 "full buffer (the server namespace's own RcvbufErrors)")
    elif overflows is not None and overflows > dropped:
        note += (f"; RcvbufErrors grew by {overflows}, more than the {dropped} this run dropped: another socket on "
                 "this machine overflowed too")
    return BacklogRow(
        transport="udp",
        backlog=None,
        attempts=count,
        connected=arrived,
        served=arrived,
        timed_out=0,
        refused=None,
        dropped=dropped,
        overflows=overflows,
        note=note,
    )


def _wait_for_link(context: RunContext, frame_bytes: int) -> None:
    """Over namespaces: wait until what was sent has crossed the link (delay, shaper), bounded by the run."""
    if not context.network.namespaced:
        return
    link = context.network.link.get("to_server", {})
    rate = link.get("rate")
    settle = (link.get("delay") or 0) + (link.get("jitter") or 0) + (frame_bytes * 8 / rate if rate else 0)
    time.sleep(min(settle + LINK_SETTLE, context.remaining()))


def _check_cell(parameters: Mapping[str, Any]) -> str | None:
    if parameters["transport"] != "udp" and parameters["backlog"] is None:
        return f"backlog must be set for {parameters['transport']} (null is only for udp)"
    return None


EXPERIMENT = Experiment(
    name="backlog",
    summary="the accept queue: backlog N admits N+1; full TCP drops SYNs, full UNIX says EAGAIN, UDP drops datagrams",
    local_only="it fills the server's accept queue and reads it with ss, which needs the server's own kernel",
    parameters=(
        Parameter("transport", str, "tcp4", "which transport", choices=ALL_TRANSPORTS),
        Parameter("backlog", int, 3, "listen() backlog (null for udp)", minimum=0, maximum=4096, nullable=True),
        Parameter("extra_clients", int, 2, "clients beyond backlog+1", minimum=0, maximum=64),
        Parameter("connect_timeout", float, 0.4, "TCP client connect timeout, s", minimum=0.05, maximum=10, unit="s"),
        Parameter("datagrams", int, 64, "UDP: datagrams sent to the idle socket", minimum=1, maximum=100_000),
        Parameter("datagram_size", int, 512, "UDP: bytes per datagram", minimum=1, maximum=65507, unit="bytes"),
        Parameter("rcvbuf", int, 4096, "UDP: SO_RCVBUF asked for, bytes", minimum=1, maximum=1 << 30, unit="bytes"),
    ),
    row_type=BacklogRow,
    run=run,
    method=__doc__ or "",
    charts=(
        Chart("admitted", "Connections the kernel admits vs listen() backlog", LINE, x=("backlog",),
              y=("connected",), series=("transport",), y_label="connected at once (backlog+1 expected)"),
    ),
    check_cell=_check_cell,
)
