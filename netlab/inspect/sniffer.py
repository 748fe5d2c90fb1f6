"""Live capture through a packet socket: a TPACKET_V3 ring, or plain ``recvmsg`` where there is none.

How this works: a :class:`Capture` opens ``socket(AF_PACKET, SOCK_RAW)`` on an
interface (``lo`` by default; no libpcap, no tcpdump) and reads it on a thread
until it is stopped, its packet count is reached or its duration is over;
however it ends, the packets the kernel queued until then are taken too (the
ring's last, partial block is handed over within its retire time). A
classic BPF program (:mod:`netlab.inspect.bpf`) attached before the socket is
bound keeps only the TCP/UDP packets of the ports asked for, so the kernel
queues nothing else. By default (``method="auto"``) the socket gets a
TPACKET_V3 receive ring (:mod:`netlab.inspect.ring`): the kernel writes frames
and their timestamps into shared memory and the thread only copies them out;
where the kernel refuses a ring, or with ``method="recv"``, each frame is read
with ``recvmsg`` into a receive buffer of the same size, timestamped by the
kernel (``SO_TIMESTAMPNS``). On loopback every packet is seen twice, once
leaving (``PACKET_OUTGOING``) and once arriving: the filter keeps the arriving
copy only (on any other interface, such as a lab host's veth, each packet passes
once and both directions are kept). Nothing is parsed on the reading thread;
scapy dissects a packet only when asked. The kernel's counters for the socket
(PACKET_STATISTICS: frames queued, frames dropped because the ring or buffer was
full) are summed in :class:`CaptureStatistics`. Opening the socket needs root or
CAP_NET_RAW; without it :class:`~netlab.errors.PrivilegeError` says how to get it.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from scapy.layers.l2 import Ether

from netlab.errors import PrivilegeError, TransportError, UsageError
from netlab.inspect.bpf import attach_filter, port_filter_program
from netlab.inspect.ring import PacketRing

ETH_P_ALL = 0x0003
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
IPPROTO_TCP = 6
IPPROTO_UDP = 17
#: Linux SO_TIMESTAMPNS (Python does not export it): struct timespec per packet.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_TIMESPEC = struct.Struct("@qq")
#: Linux SOL_PACKET / PACKET_STATISTICS: struct tpacket_stats {unsigned tp_packets, tp_drops}, reset by each read;
#: tp_packets counts the dropped frames too.
SOL_PACKET = getattr(socket, "SOL_PACKET", 263)
PACKET_STATISTICS = 6
_TPACKET_STATS = struct.Struct("@II")
SNAPSHOT_LENGTH = 262144
#: The ring's size (or the receive buffer's, without a ring): 32 MiB rides out a 256 MiB loopback transfer's bursts.
DEFAULT_BUFFER_SIZE = 32 * 1024 * 1024
POLL_INTERVAL = 0.05
#: How long an ended capture (stopped, or its duration over) keeps taking what the kernel still hands over
#: (the ring's last, partial block).
DRAIN_LIMIT = 1.0
#: How long :meth:`Capture.stop` waits for the reading thread to drain and end (seconds).
STOP_TIMEOUT = 5.0 + DRAIN_LIMIT
#: A capture never holds more packets than this, whatever its count.
MAX_PACKETS = 200_000
DEFAULT_DURATION = 10.0
#: How a capture reads the socket: a TPACKET_V3 ring, recvmsg, or the ring where the kernel gives one.
METHODS = ("auto", "ring", "recv")
FIX_PRIVILEGE = (
    "capturing packets needs root or CAP_NET_RAW: run as root, or grant it with "
    "'setcap cap_net_raw+ep $(readlink -f $(which python3))'"
)


class CapturedPacket(NamedTuple):
    """One frame as the kernel delivered it: its timestamp (epoch seconds) and bytes."""

    time: float
    data: bytes

    @property
    def tcp_flags(self) -> int | None:
        """The TCP flag bits (0x01 FIN, 0x02 SYN, 0x04 RST, 0x10 ACK), None if not TCP."""
        offset = _transport_offset(self.data, IPPROTO_TCP)
        if offset is None or len(self.data) < offset + 14:
            return None
        return self.data[offset + 13]

    @property
    def udp_payload_offset(self) -> int | None:
        """Where the UDP payload starts in the frame, None if not UDP."""
        offset = _transport_offset(self.data, IPPROTO_UDP)
        return None if offset is None else offset + 8

    def dissect(self) -> Ether:
        """The frame dissected by scapy, with ``.time`` set to the capture time."""
        packet = Ether(self.data)
        packet.time = self.time
        return packet


@dataclass(frozen=True)
class PacketFilter:
    """Which packets to keep: IP protocols and ports (either end); empty means any."""

    protocols: frozenset[int] = frozenset({IPPROTO_TCP, IPPROTO_UDP})
    ports: frozenset[int] = frozenset()

    @classmethod
    def for_ports(cls, tcp_ports: Iterable[int] = (), udp_ports: Iterable[int] = ()) -> PacketFilter:
        """A filter for TCP and/or UDP traffic on the given ports."""
        tcp, udp = frozenset(tcp_ports), frozenset(udp_ports)
        protocols = frozenset(({IPPROTO_TCP} if tcp else set()) | ({IPPROTO_UDP} if udp else set()))
        return cls(protocols=protocols or frozenset({IPPROTO_TCP, IPPROTO_UDP}), ports=tcp | udp)

    def attach(self, packet_socket: socket.socket, *, skip_outgoing: bool) -> None:
        """Make the kernel keep only these packets on ``packet_socket`` (a classic BPF program).

        Args:
            packet_socket: an AF_PACKET socket, best not bound yet.
            skip_outgoing: also refuse the frames the interface sends (loopback shows each packet twice).
        """
        attach_filter(packet_socket, port_filter_program(self.protocols, self.ports, SNAPSHOT_LENGTH,
                                                         skip_outgoing=skip_outgoing))


def _locate_transport(frame: bytes) -> tuple[int, int] | None:
    """(IP protocol, offset of the TCP/UDP header) of an Ethernet frame, or None if not IP."""
    if len(frame) < 14:
        return None
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype == ETHERTYPE_IPV4 and len(frame) >= 34:
        return frame[23], 14 + (frame[14] & 0x0F) * 4
    if ethertype == ETHERTYPE_IPV6 and len(frame) >= 54:
        return frame[20], 54  # the next header; netlab sends no extension headers
    return None


def _transport_offset(frame: bytes, protocol: int) -> int | None:
    located = _locate_transport(frame)
    return located[1] if located is not None and located[0] == protocol else None


@dataclass
class CaptureStatistics:
    """What a capture's socket went through: how it was read and the kernel's counters (PACKET_STATISTICS).

    ``kernel_packets`` counts the frames that passed the filter (both directions on interfaces other than
    loopback), the dropped ones included; ``kernel_drops`` those the kernel dropped because the ring or the
    receive buffer was full. ``started`` and ``ended`` are epoch seconds.
    """

    interface: str
    method: str = "recv"
    buffer_size: int = 0
    fallback_reason: str | None = None
    kernel_packets: int = 0
    kernel_drops: int = 0
    started: float = 0.0
    ended: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """The statistics as JSON-ready data."""
        return {"interface": self.interface, "method": self.method, "buffer_bytes": self.buffer_size,
                "fallback_reason": self.fallback_reason, "kernel_packets": self.kernel_packets,
                "kernel_drops": self.kernel_drops, "started": self.started, "ended": self.ended}

    def drop_summary(self) -> str:
        """One line: what the kernel queued for the capture's socket and what it dropped."""
        if self.kernel_drops:
            return (f"the kernel DROPPED {self.kernel_drops:,} of {self.kernel_packets:,} frames for the capture "
                    f"socket (its {'ring' if self.method == 'ring' else 'receive buffer'} was full): the capture "
                    "is missing packets")
        return f"the kernel dropped none of the {self.kernel_packets:,} frames it queued for the capture socket"


class Capture:
    """A sniffer thread on loopback: start it before an experiment, read packets after.

    Use it as a context manager::

        with Capture(PacketFilter.for_ports(tcp_ports=[port])) as capture:
            ...run the experiment...
            capture.wait_for(lambda packet: ..., timeout=2)
        packets = capture.packets()
    """

    def __init__(
        self,
        packet_filter: PacketFilter | None = None,
        *,
        interface: str = "lo",
        count: int | None = None,
        duration: float | None = None,
        method: str = "auto",
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        """Prepare a capture; nothing is opened until :meth:`open` or :meth:`start`.

        Args:
            packet_filter: which packets to keep (default: all TCP and UDP).
            interface: the interface to read (loopback by default).
            count: stop after this many packets (None: up to MAX_PACKETS).
            duration: stop after this many seconds (None: when stopped).
            method: "ring" (TPACKET_V3), "recv" (recvmsg) or "auto" (the ring where the kernel gives one).
            buffer_size: bytes of ring, or of receive buffer for "recv".
        """
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if duration is not None and duration <= 0:
            raise ValueError(f"duration must be positive, got {duration}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.packet_filter = packet_filter or PacketFilter()
        self.interface = interface
        self.count = min(count, MAX_PACKETS) if count is not None else MAX_PACKETS
        self.duration = duration
        self.requested_method = method
        self.statistics = CaptureStatistics(interface=interface, buffer_size=buffer_size)
        self._packets: list[CapturedPacket] = []
        self._condition = threading.Condition()
        self._stop = threading.Event()
        #: set when the reading thread has closed the socket and summed the counters (a Ctrl-C that lands in
        #: Thread.join leaves the thread looking finished while it still runs, so this is what is waited on)
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._ring: PacketRing | None = None
        self.error: BaseException | None = None

    @property
    def kernel_packets(self) -> int:
        """Frames the kernel queued for the socket so far (PACKET_STATISTICS, dropped ones included)."""
        return self.statistics.kernel_packets

    @property
    def kernel_drops(self) -> int:
        """Frames the kernel dropped so far because the ring or receive buffer was full."""
        return self.statistics.kernel_drops

    def drop_summary(self) -> str:
        """One line: what the kernel queued for the capture's socket and what it dropped (PACKET_STATISTICS)."""
        return self.statistics.drop_summary()

    def open(self) -> Capture:
        """Open the packet socket: from now on the kernel queues the packets (read them with :meth:`start`).

        Raises:
            PrivilegeError: not root and no CAP_NET_RAW.
            UsageError: no interface of that name.
            TransportError: the interface cannot be read, or "ring" was asked for and the kernel gives none.
        """
        if self._socket is None:
            self._socket, self._ring = open_packet_socket(self.interface, self.packet_filter,
                                                          self.requested_method, self.statistics)
            self.statistics.started = time.time()
        return self

    def start(self) -> Capture:
        """Open the packet socket (unless :meth:`open` did) and start reading it on a thread.

        Raises:
            PrivilegeError: not root and no CAP_NET_RAW.
            UsageError: no interface of that name.
            TransportError: the interface cannot be read.
        """
        self.open()
        self._thread = threading.Thread(target=self._run, name="netlab-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[CapturedPacket]:
        """Stop reading (after taking what the kernel already queued) and return the packets.

        A reading thread that has not ended within :data:`STOP_TIMEOUT` leaves
        :attr:`error` set: the packets it still held and the kernel's counters
        are missing, and the capture says so rather than look whole.
        """
        self._stop.set()
        if self._thread is not None and not self._finished.wait(STOP_TIMEOUT) and self.error is None:
            self.error = TimeoutError(f"the reading thread did not end within {STOP_TIMEOUT:g} s of the stop; "
                                      "what it still held and the kernel's counters are missing")
        return self.packets()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the capture ends by itself (count or duration); True if it did."""
        if self._thread is None:
            return True
        return self._finished.wait(timeout)

    def packets(self) -> list[CapturedPacket]:
        """The packets captured so far, in arrival order."""
        with self._condition:
            return list(self._packets)

    def wait_for(self, predicate: Callable[[list[CapturedPacket]], bool], timeout: float) -> bool:
        """Wait until ``predicate(packets so far)`` is true, at most ``timeout`` seconds.

        Returns:
            True when the predicate held, False on timeout or when the capture ended.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate(self._packets):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or self._finished.is_set():
                    return predicate(self._packets)
                self._condition.wait(min(remaining, POLL_INTERVAL))
            return True

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._socket is not None
        packet_socket = self._socket
        deadline = None if self.duration is None else time.monotonic() + self.duration
        try:
            if self._ring is not None:
                self._read_ring(self._ring, deadline)
            else:
                self._read_socket(packet_socket, deadline)
        except OSError as exc:
            self.error = exc
        finally:
            self.statistics.ended = time.time()
            self._read_statistics(packet_socket)
            if self._ring is not None:
                self._ring.close()
            packet_socket.close()
            self._finished.set()
            with self._condition:
                self._condition.notify_all()

    def _read_ring(self, ring: PacketRing, deadline: float | None) -> None:
        """Hand over block after block until the count, the deadline or a stop (then drain what is left)."""
        batch: list[tuple[float, bytes]] = []
        draining_until = None
        while len(self._packets) < self.count:
            now = time.monotonic()
            if draining_until is None and (self._stop.is_set() or (deadline is not None and now >= deadline)):
                # what arrived before the end sits in blocks the kernel hands over within retire_ms: take them
                draining_until = now + DRAIN_LIMIT
            wait = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, max(0.0, deadline - now))
            if draining_until is not None:
                wait = 2 * ring.retire_ms / 1000
            if not ring.wait(wait):
                if draining_until is not None:
                    break
                continue
            ring.take(batch, self.count - len(self._packets))
            self._publish(batch)
            batch.clear()
            if draining_until is not None and time.monotonic() >= draining_until:
                break

    def _read_socket(self, packet_socket: socket.socket, deadline: float | None) -> None:
        while len(self._packets) < self.count:
            if self._stop.is_set():
                self._drain(packet_socket)
                break
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._drain(packet_socket)  # what the kernel queued before the deadline is captured too
                    break
                packet_socket.settimeout(min(remaining, POLL_INTERVAL))
            else:
                packet_socket.settimeout(POLL_INTERVAL)
            try:
                self._publish([self._receive_one(packet_socket)])
            except TimeoutError:
                continue

    def _publish(self, frames: list[tuple[float, bytes]]) -> None:
        with self._condition:
            self._packets.extend(CapturedPacket(stamp, data) for stamp, data in frames)
            self._condition.notify_all()

    def _read_statistics(self, packet_socket: socket.socket) -> None:
        """Add the kernel's PACKET_STATISTICS for the socket (the read resets them) to our totals."""
        try:
            packets, drops = _TPACKET_STATS.unpack(
                packet_socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size))
        except OSError:
            return
        self.statistics.kernel_packets += packets
        self.statistics.kernel_drops += drops

    def _drain(self, packet_socket: socket.socket) -> None:
        packet_socket.setblocking(False)
        while len(self._packets) < self.count:
            try:
                self._publish([self._receive_one(packet_socket)])
            except (BlockingIOError, InterruptedError):
                return

    @staticmethod
    def _receive_one(packet_socket: socket.socket) -> tuple[float, bytes]:
        data, ancillary, _, _ = packet_socket.recvmsg(SNAPSHOT_LENGTH, 64)
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                return seconds + nanoseconds / 1e9, data
        return time.time(), data


def open_packet_socket(
    interface: str, packet_filter: PacketFilter, method: str, statistics: CaptureStatistics
) -> tuple[socket.socket, PacketRing | None]:
    """A raw AF_PACKET socket bound to ``interface`` with ``packet_filter`` attached, and its ring if any.

    The socket is made with protocol 0 (it receives nothing), given its filter and its ring or receive
    buffer, and only then bound: no frame is queued before the filter applies. ``statistics`` is told
    which method was used, the buffer size, and why there is no ring when "auto" fell back.

    Raises:
        PrivilegeError: not root and no CAP_NET_RAW.
        UsageError: no interface of that name.
        TransportError: the interface cannot be bound, or "ring" was asked for and the kernel gives none.
    """
    packet_socket = _new_packet_socket(interface, packet_filter)
    ring = None
    if method != "recv":
        try:
            ring = PacketRing(packet_socket, statistics.buffer_size)
        except OSError as exc:
            packet_socket.close()
            if method == "ring":
                raise TransportError(f"the kernel gives no TPACKET_V3 ring ({exc.strerror}): capture with "
                                     "--method recv") from None
            statistics.fallback_reason = f"no TPACKET_V3 ring: {exc.strerror}"
            packet_socket = _new_packet_socket(interface, packet_filter)
    try:
        if ring is None:
            _set_receive_buffer(packet_socket, statistics.buffer_size)
            packet_socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        packet_socket.bind((interface, ETH_P_ALL))
    except OSError as exc:
        if ring is not None:
            ring.close()
        packet_socket.close()
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise UsageError(f"no interface named {interface!r} here: `ip -br link` lists them (lo is always "
                                 "there)") from None
        raise TransportError(f"cannot bind the packet socket to {interface}: {exc.strerror}") from None
    statistics.method = "ring" if ring is not None else "recv"
    statistics.buffer_size = ring.size if ring is not None else packet_socket.getsockopt(socket.SOL_SOCKET,
                                                                                          socket.SO_RCVBUF)
    return packet_socket, ring


def _new_packet_socket(interface: str, packet_filter: PacketFilter) -> socket.socket:
    try:
        packet_socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise PrivilegeError(FIX_PRIVILEGE) from None
    except OSError as exc:
        raise TransportError(f"cannot open a packet socket: {exc.strerror}; netlab capture needs Linux") from None
    try:
        packet_filter.attach(packet_socket, skip_outgoing=interface == "lo")
    except OSError as exc:
        packet_socket.close()
        raise TransportError(f"the kernel refused the capture filter: {exc.strerror}") from None
    return packet_socket


def _set_receive_buffer(packet_socket: socket.socket, size: int) -> None:
    """A receive buffer of ``size`` bytes, as much memory as a ring of that size.

    The kernel doubles the value set (for its bookkeeping), so half is asked for. SO_RCVBUFFORCE goes past
    net.core.rmem_max (it needs CAP_NET_ADMIN); without it SO_RCVBUF is capped there (the statistics say what
    the kernel gave).
    """
    try:
        packet_socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size // 2)
    except OSError:
        packet_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size // 2)


def has_capture_privilege() -> bool:
    """True when this process may open a packet socket (root or CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except OSError:
        return False
    return True
