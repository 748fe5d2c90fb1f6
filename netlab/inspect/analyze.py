"""Captured packets -> one row per packet, as a person reads a capture.

How this works: :func:`analyze` walks scapy packets in capture order and keeps
state per TCP flow direction: the initial sequence number (so seq/ack are shown
relative, as Wireshark does), a :class:`StreamReassembler` and a
:class:`FrameSplitter`. Each row says which netlab messages its segment
completed (``EXEC id=3 "ls -l"``, ``STDOUT 312 B``, ``EXIT 0``), whether it was
a retransmission or out of order, and for a SYN the MSS it offered. A flow whose
bytes are not ``length`` framing (raw, line) shows its data instead. UDP
datagrams with the sequencing header show its fields, with sequence numbers
relative to the first one seen in each direction and repeated DATA marked as a
retransmission.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from netlab.inspect.layers import DATAGRAM_TYPES, NetlabSequencing
from netlab.inspect.stream import FrameSplitter, SegmentKind, StreamReassembler
from netlab.proto import codec
from netlab.proto.messages import Error, Exit, Input, Message, Output, Request, Signal
from netlab.proto.seq import wire as seq_wire

SEQUENCE_SPACE = 1 << 32
PREVIEW_SIZE = 24
#: TCP flag bits in the order a reader expects them.
TCP_FLAG_NAMES = (("S", "SYN"), ("F", "FIN"), ("R", "RST"), ("P", "PSH"), ("A", "ACK"), ("U", "URG"))

FlowKey = tuple[str, int, str, int]


@dataclass
class PacketRow:
    """One captured packet, decoded.

    Attributes:
        number: 1-based position in the capture.
        time: seconds since the first packet of the capture.
        source, destination: ``host:port`` (IPv6 hosts in brackets).
        protocol: ``TCP`` or ``UDP``.
        flags: TCP flags, e.g. ``SYN,ACK``; empty for UDP.
        sequence, acknowledgement: relative TCP numbers (None where they do not apply).
        length: transport payload bytes.
        content: what the payload meant, one entry per decoded message or item.
        notes: RETRANSMIT, OUT-OF-ORDER and similar remarks.
    """

    number: int
    time: float
    source: str
    destination: str
    protocol: str
    flags: str = ""
    sequence: int | None = None
    acknowledgement: int | None = None
    length: int = 0
    content: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The row as plain data (for JSON)."""
        return asdict(self)


@dataclass
class _TcpDirection:
    initial_sequence: int
    reassembler: StreamReassembler
    splitter: FrameSplitter = field(default_factory=FrameSplitter)
    saw_syn: bool = False


@dataclass
class _UdpDirection:
    first_sequence: int | None = None
    data_sequences: set[int] = field(default_factory=set)


#: Datagram types whose sequence field is the sender's initial sequence number, or data.
_NUMBERING_TYPES = frozenset({seq_wire.DatagramType.INITIAL, seq_wire.DatagramType.COOKIE_ECHO,
                              seq_wire.DatagramType.ACCEPT, seq_wire.DatagramType.DATA})


def analyze(packets: Iterable[Packet]) -> list[PacketRow]:
    """Decode captured packets (scapy Ethernet frames with ``.time``) into rows.

    Args:
        packets: the capture, in order; non-IP and non-TCP/UDP packets are skipped.
    Returns:
        One :class:`PacketRow` per TCP or UDP packet, and one per datagram of a
        segmented UDP send (see :func:`datagrams_of`).
    """
    analyzer = PacketAnalyzer()
    rows = (analyzer.row_for(datagram) for packet in packets for datagram in datagrams_of(packet))
    return [row for row in rows if row is not None]


def datagrams_of(packet: Packet) -> list[Packet]:
    """``packet``, or one packet per datagram when it holds a segmented send of sequenced UDP.

    With UDP segmentation offload (GSO) netlab hands the kernel up to 64
    datagrams in one send; on loopback a capture sees them as one UDP packet
    of up to 64 KiB. Each datagram in it is whole, so it is cut where the
    sequencing header says (:func:`~netlab.proto.seq.wire.split_segments`) and
    given its own IP and UDP headers (lengths and checksums recomputed), with
    the packet's capture time.
    """
    if NetlabSequencing not in packet:
        return [packet]
    udp = packet[UDP]
    segments = seq_wire.split_segments(bytes(udp.payload))
    if len(segments) == 1:
        return [packet]
    return [_with_udp_payload(packet, segment) for segment in segments]


def _with_udp_payload(packet: Packet, payload: bytes) -> Packet:
    """A copy of ``packet`` carrying ``payload`` in its UDP layer, lengths and checksums recomputed."""
    copy: Packet = packet.copy()
    if IP in copy:
        del copy[IP].len
        del copy[IP].chksum
    else:
        del copy[IPv6].plen
    udp = copy[UDP]
    del udp.len
    del udp.chksum
    udp.remove_payload()
    udp.add_payload(Raw(payload))
    rebuilt = type(packet)(bytes(copy))
    rebuilt.time = packet.time
    return rebuilt


def describe_message(message: Message) -> str:
    """A short line for one netlab message, e.g. ``EXEC id=3 "ls -l"``.

    The name is the codec's (:data:`~netlab.proto.codec.TYPE_NAMES`), a
    request's shown as ``EXEC``; the messages that carry more add it.
    """
    kind = codec.message_type(message)
    detail = _DETAILS.get(kind)
    return detail(message) if detail is not None else codec.TYPE_NAMES[kind]


def _describe_request(request: Request) -> str:
    timeout = f" timeout={request.timeout:g}s" if request.timeout else ""
    stdin = " stdin" if request.stdin else ""
    # netlab's client ends the line with a newline (see docs/protocol.md): not part of the command
    line = request.line.rstrip("\n")
    return f'EXEC id={request.request_id} "{line}"{timeout}{stdin}'


def _describe_output(output: Output) -> str:
    return f"{codec.TYPE_NAMES[codec.message_type(output)]} {len(output.data)} B"


def _describe_exit(exit_message: Exit) -> str:
    if exit_message.signal is not None:
        text = f"EXIT signal {exit_message.signal}"
    elif exit_message.exit_status is not None:
        text = f"EXIT {exit_message.exit_status}"
    else:
        text = "EXIT (no status)"
    if exit_message.timed_out:
        text += f" timed out after {exit_message.command_timeout:g} s"
    if exit_message.truncated:
        text += f" truncated at the {exit_message.output_cap} B cap"
    return text


def _describe_input(message: Input) -> str:
    return f"INPUT {len(message.data)} B" if message.data else "INPUT end"


def _describe_signal(message: Signal) -> str:
    return f"SIGNAL {message.name}"


def _describe_error(message: Error) -> str:
    return f"ERROR {message.code.label}: {message.message}"


#: What a message adds to its name, by type byte (the others are their name alone).
_DETAILS: dict[int, Callable[[Any], str]] = {
    codec.TYPE_REQUEST: _describe_request,
    codec.TYPE_STDOUT: _describe_output,
    codec.TYPE_STDERR: _describe_output,
    codec.TYPE_EXIT: _describe_exit,
    codec.TYPE_INPUT: _describe_input,
    codec.TYPE_SIGNAL: _describe_signal,
    codec.TYPE_ERROR: _describe_error,
}


def describe_data(data: bytes) -> str:
    """A short line for bytes that are not ``length`` frames: size and a preview."""
    preview = data[:PREVIEW_SIZE].decode("utf-8", "backslashreplace")
    more = "..." if len(data) > PREVIEW_SIZE else ""
    return f"DATA {len(data)} B {preview!r}{more}"


def endpoint(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _relative(number: int, base: int | None) -> str:
    """A 64-bit sequence number relative to ``base``; raw (with ``#``) while no base is known."""
    return f"#{number}" if base is None else str((number - base) & seq_wire.MASK_64)


class PacketAnalyzer:
    """Incremental form of :func:`analyze`: feed packets one at a time (for live output)."""

    def __init__(self) -> None:
        self.number = 0
        self.first_time: float | None = None
        self.tcp: dict[FlowKey, _TcpDirection] = {}
        self.udp: dict[FlowKey, _UdpDirection] = {}

    def row_for(self, packet: Packet) -> PacketRow | None:
        """The row for the next packet of the capture; None for packets that are not TCP or UDP."""
        if IP in packet:
            network = packet[IP]
            payload_size = network.len - network.ihl * 4
        elif IPv6 in packet:
            network = packet[IPv6]
            payload_size = network.plen
        else:
            return None
        if TCP not in packet and UDP not in packet:
            return None
        stamp = float(packet.time)
        if self.first_time is None:
            self.first_time = stamp
        self.number += 1
        transport = packet[TCP] if TCP in packet else packet[UDP]
        row = PacketRow(
            number=self.number,
            time=stamp - self.first_time,
            source=endpoint(network.src, transport.sport),
            destination=endpoint(network.dst, transport.dport),
            protocol="TCP" if TCP in packet else "UDP",
        )
        key: FlowKey = (network.src, transport.sport, network.dst, transport.dport)
        if row.protocol == "TCP":
            self._tcp_row(row, key, packet[TCP], payload_size)
        else:
            self._udp_row(row, key, packet[UDP])
        return row

    def _tcp_row(self, row: PacketRow, key: FlowKey, segment: TCP, segment_size: int) -> None:
        flags = str(segment.flags)
        row.flags = ",".join(name for letter, name in TCP_FLAG_NAMES if letter in flags)
        payload = bytes(segment)[segment.dataofs * 4 : segment_size]
        row.length = len(payload)
        direction = self.tcp.get(key)
        if "S" in flags:
            if direction is not None and direction.saw_syn and direction.initial_sequence == segment.seq:
                row.notes.append(SegmentKind.RETRANSMIT.value)
            else:
                direction = _TcpDirection(segment.seq, StreamReassembler(segment.seq + 1), saw_syn=True)
                self.tcp[key] = direction
            mss = dict((name, value) for name, value in segment.options if isinstance(name, str)).get("MSS")
            if mss is not None:
                row.content.append(f"MSS={mss}")
        elif direction is None:
            # The capture began mid-connection: number from this segment on.
            direction = _TcpDirection((segment.seq - 1) % SEQUENCE_SPACE, StreamReassembler(segment.seq))
            self.tcp[key] = direction
        row.sequence = (segment.seq - direction.initial_sequence) % SEQUENCE_SPACE
        if "A" in flags:
            peer = self.tcp.get((key[2], key[3], key[0], key[1]))
            base = peer.initial_sequence if peer is not None else 0
            row.acknowledgement = (segment.ack - base) % SEQUENCE_SPACE
        if payload:
            self._tcp_payload(row, direction, segment.seq, payload)

    @staticmethod
    def _tcp_payload(row: PacketRow, direction: _TcpDirection, sequence: int, payload: bytes) -> None:
        delivery = direction.reassembler.add(sequence, payload)
        if delivery.kind is not SegmentKind.IN_ORDER:
            row.notes.append(delivery.kind.value)
        if not delivery.data:
            return
        splitter = direction.splitter
        row.content.extend(describe_message(message) for message in splitter.feed(delivery.data))
        if splitter.failure is not None:
            row.content.append(describe_data(delivery.data))
            return
        pending = splitter.pending
        if pending is not None:
            held, frame_size = pending
            if frame_size:
                row.content.append(f"(frame continues: {held} of {frame_size} B)")
            elif not row.content:
                row.content.append(describe_data(delivery.data))

    def _udp_row(self, row: PacketRow, key: FlowKey, datagram: UDP) -> None:
        row.length = datagram.len - 8 if datagram.len else len(bytes(datagram.payload))
        if NetlabSequencing not in datagram:
            row.content.append(describe_data(bytes(datagram.payload)))
            return
        header = datagram[NetlabSequencing]
        direction = self.udp.setdefault(key, _UdpDirection())
        if direction.first_sequence is None and header.type in _NUMBERING_TYPES:
            direction.first_sequence = header.sequence
        peer = self.udp.get((key[2], key[3], key[0], key[1]))
        parts = [f"UDP {DATAGRAM_TYPES.get(header.type, header.type)}",
                 f"seq={_relative(header.sequence, direction.first_sequence)}",
                 f"ack={_relative(header.acknowledgement, peer.first_sequence if peer else None)}"]
        if header.sack_blocks:
            parts.append("sack=" + ",".join(f"+{b.offset}..+{b.offset + b.length}" for b in header.sack_blocks))
        parts.append(f"win={header.window}")
        payload_size = len(bytes(header.payload))
        if payload_size:
            parts.append(f"{payload_size} B")
        if header.flags:
            parts.append(str(header.flags))
        if not header.checksum_ok():
            row.notes.append("BAD CHECKSUM")
        row.content.append(" ".join(parts))
        if header.type == seq_wire.DatagramType.DATA:
            if header.sequence in direction.data_sequences:
                row.notes.append(SegmentKind.RETRANSMIT.value)
            direction.data_sequences.add(header.sequence)
