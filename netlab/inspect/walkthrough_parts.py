"""What every walkthrough is made of: its result types and the capture helpers they share.

How this works: a walkthrough (in :mod:`netlab.inspect.walkthroughs`, or in
:mod:`netlab.inspect.lab_walkthroughs` for those over network namespaces)
returns a :class:`Walkthrough` of :class:`Section` s; a packet section is built
from a finished :class:`Capture` by :func:`packet_section`. Both walkthrough
modules import these from here, so neither imports the other's internals.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from netlab.inspect.analyze import PacketRow, analyze
from netlab.inspect.explain import PacketExplainer
from netlab.inspect.layers import bind_netlab_ports
from netlab.inspect.pcap import write_pcap
from netlab.inspect.sniffer import Capture, CapturedPacket
from netlab.proto.seq import wire as seq_wire
from netlab.transport.tap import TapEvent

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_ACK = 0x10
WAIT = 3.0


@dataclass
class Call:
    """A call that is not a send or recv (e.g. a connect) and what it returned."""

    time: float
    call: str
    result: str
    explanation: str


@dataclass
class Section:
    """One part of a walkthrough: a short text, then packets or calls, each explained."""

    heading: str
    text: str
    packets: list[PacketRow] = field(default_factory=list)
    calls: list[TapEvent] = field(default_factory=list)
    other_calls: list[Call] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)
    pcap_path: str | None = None


@dataclass
class Walkthrough:
    """A finished guided capture."""

    name: str
    title: str
    lesson: str
    sections: list[Section] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


def closed_both_ways(connections: int) -> Callable[[list[CapturedPacket]], bool]:
    """A capture predicate: every connection sent FIN both ways and the last FIN was acknowledged."""

    def done(packets: list[CapturedPacket]) -> bool:
        fins = [index for index, packet in enumerate(packets) if (packet.tcp_flags or 0) & TCP_FIN]
        return len(fins) >= 2 * connections and len(packets) > fins[-1] + 1

    return done


def udp_closed_both_ways(packets: list[CapturedPacket]) -> bool:
    """A capture predicate for sequenced UDP: a DATA+FIN each way, the last answered (a datagram after it)."""
    fins = [index for index, packet in enumerate(packets) if udp_flags(packet) & seq_wire.FLAG_FIN]
    return len(fins) >= 2 and len(packets) > fins[-1] + 1


def udp_flags(packet: CapturedPacket) -> int:
    """The sequencing header's flags byte of a captured UDP datagram (0 when it has none)."""
    offset = packet.udp_payload_offset
    if offset is None or len(packet.data) < offset + seq_wire.HEADER_SIZE:
        return 0
    return packet.data[offset + 1]


def packet_section(heading: str, text: str, capture: Capture, pcap_path: str | None, ports: list[int], *,
                   udp: bool = False) -> Section:
    """A section of the packets ``capture`` holds, each explained; written to ``pcap_path`` unless None.

    ``ports`` are the server's TCP ports (its UDP ports when ``udp``), decoded as netlab's messages.
    """
    packets = capture.packets()
    bind_netlab_ports(tcp_ports=() if udp else ports, udp_ports=ports if udp else ())
    rows = analyze(packet.dissect() for packet in packets)
    explainer = PacketExplainer()
    section = Section(heading, text, packets=rows, explanations=[explainer.explain(row) for row in rows])
    if pcap_path is not None:
        write_pcap(pcap_path, packets)
        section.pcap_path = pcap_path
    return section


def pcap_file(directory: str | None, name: str) -> str | None:
    """Where the capture ``name`` is written in ``directory`` (None: nowhere)."""
    return os.path.join(directory, f"{name}.pcap") if directory is not None else None
