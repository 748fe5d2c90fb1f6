"""Live capture on the loopback interface through a raw packet socket, filtered in Python.

How this works: a :class:`Capture` opens ``socket(AF_PACKET, SOCK_RAW,
ETH_P_ALL)`` bound to ``lo`` (no libpcap, no tcpdump) and reads it on a thread
until it is stopped, its packet count is reached or its duration is over. The
kernel timestamps each packet (``SO_TIMESTAMPNS``). On loopback every packet is
seen twice, once leaving (``PACKET_OUTGOING``) and once arriving: the sniffer
keeps the arriving copy only (on any other interface, such as a lab host's
veth, each packet passes once and both directions are kept). A cheap header check (EtherType, IP protocol,
ports) keeps the packets of interest; scapy dissects them only when asked, so
the reading thread keeps up with bulk transfers. Opening the socket needs root
or CAP_NET_RAW; without it :class:`~netlab.errors.PrivilegeError` says how to
get it.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from scapy.layers.l2 import Ether

from netlab.errors import PrivilegeError, TransportError

ETH_P_ALL = 0x0003
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
IPPROTO_TCP = 6
IPPROTO_UDP = 17
#: Linux SO_TIMESTAMPNS (Python does not export it): struct timespec per packet.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
#: Linux SOL_PACKET / PACKET_STATISTICS: struct tpacket_stats {unsigned tp_packets, tp_drops}, reset by each read.
SOL_PACKET = getattr(socket, "SOL_PACKET", 263)
PACKET_STATISTICS = 6
_TPACKET_STATS = struct.Struct("@II")
SNAPSHOT_LENGTH = 262144
RECEIVE_BUFFER_SIZE = 8 * 1024 * 1024
POLL_INTERVAL = 0.05
#: A capture never holds more packets than this, whatever its count.
MAX_PACKETS = 200_000
DEFAULT_DURATION = 10.0
FIX_PRIVILEGE = (
    "capturing packets needs root or CAP_NET_RAW: run as root, or grant it with "
    "'setcap cap_net_raw+ep $(readlink -f $(which python3))'"
)


@dataclass(frozen=True)
class CapturedPacket:
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

    def matches(self, frame: bytes) -> bool:
        """True when an Ethernet frame carries a wanted protocol to or from a wanted port."""
        located = _locate_transport(frame)
        if located is None or located[0] not in self.protocols:
            return False
        if not self.ports:
            return True
        transport = located[1]
        if len(frame) < transport + 4:
            return False
        source, destination = struct.unpack_from("!HH", frame, transport)
        return source in self.ports or destination in self.ports


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
    ) -> None:
        """Prepare a capture; nothing is opened until :meth:`start`.

        Args:
            packet_filter: which packets to keep (default: all TCP and UDP).
            interface: the interface to read (loopback by default).
            count: stop after this many packets (None: up to MAX_PACKETS).
            duration: stop after this many seconds (None: when stopped).
        """
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if duration is not None and duration <= 0:
            raise ValueError(f"duration must be positive, got {duration}")
        self.packet_filter = packet_filter or PacketFilter()
        self.interface = interface
        self.count = min(count, MAX_PACKETS) if count is not None else MAX_PACKETS
        self.duration = duration
        self._packets: list[CapturedPacket] = []
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.error: BaseException | None = None
        #: the kernel's counters for this capture's socket (PACKET_STATISTICS), summed over its reads:
        #: frames it queued for us (both directions on loopback, before our filter) and frames it dropped
        #: because the socket's buffer was full
        self.kernel_packets = 0
        self.kernel_drops = 0

    def start(self) -> Capture:
        """Open the packet socket and start reading.

        Raises:
            PrivilegeError: not root and no CAP_NET_RAW.
            TransportError: the interface does not exist or cannot be read.
        """
        self._socket = open_packet_socket(self.interface)
        self._thread = threading.Thread(target=self._run, name="netlab-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[CapturedPacket]:
        """Stop reading (after taking what the kernel already queued) and return the packets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        return self.packets()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the capture ends by itself (count or duration); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

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
                if remaining <= 0 or self._thread is None or not self._thread.is_alive():
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
            while len(self._packets) < self.count:
                if self._stop.is_set():
                    self._drain(packet_socket)
                    break
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    packet_socket.settimeout(min(remaining, POLL_INTERVAL))
                else:
                    packet_socket.settimeout(POLL_INTERVAL)
                try:
                    self._receive_one(packet_socket)
                except TimeoutError:
                    continue
        except OSError as exc:
            self.error = exc
        finally:
            self._read_statistics(packet_socket)
            packet_socket.close()
            with self._condition:
                self._condition.notify_all()

    def _read_statistics(self, packet_socket: socket.socket) -> None:
        """Add the kernel's PACKET_STATISTICS for the socket (the read resets them) to our totals."""
        try:
            packets, drops = _TPACKET_STATS.unpack(
                packet_socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size))
        except OSError:
            return
        self.kernel_packets += packets
        self.kernel_drops += drops

    def drop_summary(self) -> str:
        """One line: what the kernel queued for the capture's socket and what it dropped (PACKET_STATISTICS)."""
        if self.kernel_drops:
            return (f"the kernel DROPPED {self.kernel_drops:,} of {self.kernel_packets:,} frames for the capture "
                    "socket (its buffer was full): the capture is missing packets")
        return f"the kernel dropped none of the {self.kernel_packets:,} frames it queued for the capture socket"

    def _drain(self, packet_socket: socket.socket) -> None:
        packet_socket.setblocking(False)
        while len(self._packets) < self.count:
            try:
                self._receive_one(packet_socket)
            except (BlockingIOError, InterruptedError):
                return

    def _receive_one(self, packet_socket: socket.socket) -> None:
        data, ancillary, _, address = packet_socket.recvmsg(SNAPSHOT_LENGTH, 64)
        if address[0] != self.interface or (address[2] == socket.PACKET_OUTGOING and self.interface == "lo"):
            return
        if not self.packet_filter.matches(data):
            return
        stamp = time.time()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                stamp = seconds + nanoseconds / 1e9
        with self._condition:
            self._packets.append(CapturedPacket(stamp, data))
            self._condition.notify_all()


def open_packet_socket(interface: str) -> socket.socket:
    """A raw AF_PACKET socket bound to ``interface``, with kernel timestamps.

    Raises:
        PrivilegeError: not root and no CAP_NET_RAW.
        TransportError: the interface cannot be bound.
    """
    try:
        packet_socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError:
        raise PrivilegeError(FIX_PRIVILEGE) from None
    except OSError as exc:
        raise TransportError(f"cannot open a packet socket: {exc.strerror}; netlab capture needs Linux") from None
    try:
        packet_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_SIZE)
        packet_socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        packet_socket.bind((interface, 0))
    except OSError as exc:
        packet_socket.close()
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise TransportError(f"no interface named {interface!r}: capture on 'lo'") from None
        raise TransportError(f"cannot bind the packet socket to {interface}: {exc.strerror}") from None
    return packet_socket


def has_capture_privilege() -> bool:
    """True when this process may open a packet socket (root or CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except OSError:
        return False
    return True
