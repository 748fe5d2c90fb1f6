"""Read what the kernel itself says: listen queues (as ``ss`` shows them) and protocol counters.

How this works: ``ss -ltnH`` / ``ss -lxH`` print every listening socket with
Recv-Q (connections waiting in the accept queue) and Send-Q (the backlog the
kernel applied, after the somaxconn cap); we parse their text and pick our
listener by its address. Without ``ss``, the accept queue length of a TCP
listener is read from ``/proc/net/tcp(6)`` (its rx_queue column; the backlog
is not there). Counters such as TcpExt ListenOverflows or Udp RcvbufErrors
come from ``/proc/net/netstat`` and ``/proc/net/snmp``; they count for the
whole network namespace, so other traffic at the same moment adds to them.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass

from netlab.transport.address import TCP_SCHEMES, Address

SS_TIMEOUT = 5.0
COUNTER_FILES = ("netstat", "snmp")
#: The calling thread's own network namespace (``/proc/net`` follows the process's main thread).
THREAD_PROC_NET = "/proc/thread-self/net"
#: struct tcp_info: 8 bytes of one-byte fields, then u32s; the offsets of the ones the experiments read.
TCP_INFO_SIZE = 104
TCP_INFO_SND_MSS = 16
TCP_INFO_RTT = 68  # microseconds
TCP_INFO_SND_CWND = 80  # segments
TCP_INFO_TOTAL_RETRANS = 100


def tcp_info(sock: socket.socket, *offsets: int) -> tuple[int, ...] | None:
    """The u32 fields of a TCP socket's ``TCP_INFO`` at ``offsets``; None once it is closed or on a short answer."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < max(offsets) + 4:
        return None
    return tuple(struct.unpack_from("I", info, offset)[0] for offset in offsets)


@dataclass(frozen=True)
class ListenQueue:
    """A listener's queue as the kernel reports it.

    Attributes:
        queued: connections waiting to be accepted (ss Recv-Q).
        backlog: the accept queue limit in force (ss Send-Q); None when unknown.
        source: where the figures came from (``ss`` or ``/proc/net/tcp``).
    """

    queued: int
    backlog: int | None
    source: str


def read_counters(directory: str = "/proc/net") -> dict[str, int]:
    """Every counter in /proc/net/netstat and /proc/net/snmp, named ``TcpExt.ListenOverflows`` etc.

    Args:
        directory: where the files are; :data:`THREAD_PROC_NET` reads the
            namespace the calling thread is in.
    """
    counters: dict[str, int] = {}
    for name in COUNTER_FILES:
        path = f"{directory}/{name}"
        try:
            with open(path, encoding="ascii") as stream:
                lines = stream.read().splitlines()
        except OSError:
            continue
        for header, values in zip(lines[::2], lines[1::2]):
            group, _, names = header.partition(":")
            for name, value in zip(names.split(), values.partition(":")[2].split()):
                try:
                    counters[f"{group}.{name}"] = int(value)
                except ValueError:
                    continue
    return counters


def counter_changes(before: dict[str, int], after: dict[str, int], names: tuple[str, ...]) -> dict[str, int | None]:
    """How much each named counter grew between two readings (None if this kernel lacks it)."""
    return {name: after[name] - before[name] if name in before and name in after else None for name in names}


def listen_queue(address: Address) -> ListenQueue | None:
    """The accept queue of our listener at ``address`` (TCP or UNIX), or None if it cannot be read."""
    if shutil.which("ss") is not None:
        queue = _listen_queue_from_ss(address)
        if queue is not None:
            return queue
    if address.scheme in TCP_SCHEMES and address.port is not None:
        return _listen_queue_from_proc(address)
    return None


def missing_queue_note() -> str:
    """Why the Recv-Q/Send-Q columns are empty: no ``ss`` (iproute2 fills them), or ``ss`` did not list us."""
    if shutil.which("ss") is None:
        return "Recv-Q/Send-Q empty: ss (iproute2) is not installed; install iproute2 to see the accept queue"
    return "Recv-Q/Send-Q empty: ss did not list this listener"


def _listen_queue_from_ss(address: Address) -> ListenQueue | None:
    unix = address.is_unix
    try:
        completed = subprocess.run(
            ["ss", "-lxH" if unix else "-ltnH"], capture_output=True, text=True, timeout=SS_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    host = f"[{address.host}]" if ":" in address.host else address.host
    wanted_local = address.path if unix else f"{host}:{address.port}"
    for line in completed.stdout.splitlines():
        fields = line.split()
        if unix:
            # u_str LISTEN <Recv-Q> <Send-Q> <path> <inode> * 0
            if len(fields) >= 5 and fields[1] == "LISTEN" and fields[4] == wanted_local:
                return ListenQueue(int(fields[2]), int(fields[3]), "ss -lx")
        elif len(fields) >= 4 and fields[0] == "LISTEN" and fields[3] == wanted_local:
            return ListenQueue(int(fields[1]), int(fields[2]), "ss -lt")
    return None


def _listen_queue_from_proc(address: Address) -> ListenQueue | None:
    path = "/proc/net/tcp6" if address.scheme == "tcp6" else "/proc/net/tcp"
    port_hex = f"{address.port:04X}"
    try:
        with open(path, encoding="ascii") as stream:
            next(stream)
            for line in stream:
                fields = line.split()
                # sl local_address rem_address st tx_queue:rx_queue ...; st 0A = LISTEN
                if fields[1].endswith(":" + port_hex) and fields[3] == "0A":
                    return ListenQueue(int(fields[4].split(":")[1], 16), None, path)
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return None


#: The most sends :func:`sends_until_full` tries before it gives up counting.
MAX_PROBE_SENDS = 100_000


def sends_until_full(kind: int, size: int) -> int | None:
    """How many ``size``-byte sends an AF_UNIX socket of ``kind`` takes before EAGAIN, its peer never reading.

    Measured on a fresh socket pair with the default buffers: the send buffer is
    what fills (each small write is charged as a whole buffer, not by its bytes).
    Returns None when the limit is above MAX_PROBE_SENDS.
    """
    import socket

    first, second = socket.socketpair(socket.AF_UNIX, kind)
    with first, second:
        first.setblocking(False)
        payload = bytes(size)
        for count in range(MAX_PROBE_SENDS):
            try:
                first.send(payload)
            except BlockingIOError:
                return count
    return None
