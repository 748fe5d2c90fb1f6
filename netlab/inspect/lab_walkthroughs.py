"""Walkthroughs captured on a veth between network namespaces (root only): an MTU, a delayed and lossy link.

How this works: ``mtu-and-segmentation`` sends one 64 KiB reply three times
and captures it where the client receives it: on loopback (MTU 65,536), then
between two namespaces joined by veths with a 1,500-byte MTU, first with the
veths' offloads as the kernel sets them (TSO/GSO hands the veth "super-packets"
that are cut up later, if ever), then with them off as netlab's lab keeps
them. The server runs in the server's namespace and the capture and client in
the client's (see :mod:`netlab.lab.placement`); the namespaces are removed
before the walkthrough returns.

``delay-and-loss`` joins the namespaces by a link with 20 ms of delay each
way that loses a share of the frames toward the client (netlab's wire or
netem, seeded), and fetches the same reply over TCP and over sequenced UDP,
capturing at the server's veth: the sender's own view, where a segment the
link lost appears twice (sent, then sent again). For TCP the server
namespace's own TcpExt counters, read before and after, say which of the
kernel's mechanisms resent it (fast retransmit after duplicate ACKs/SACK,
a tail-loss probe, or a retransmission timeout).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

from netlab.inspect.analyze import PacketRow
from netlab.inspect.experiment import running_server
from netlab.inspect.sniffer import Capture, PacketFilter
from netlab.inspect.walkthrough_parts import (
    WAIT,
    Section,
    Walkthrough,
    closed_both_ways,
    packet_section,
    pcap_file,
    udp_closed_both_ways,
)
from netlab.lab.namespace import require_namespaces
from netlab.lab.placement import LOOPBACK, Placement
from netlab.lab.spec import parse_network
from netlab.lab.topology import Topology
from netlab.scenario.experiments.kernel import THREAD_PROC_NET, read_counters
from netlab.service.client import Client

REPLY_SIZE = 65_536
MTU = 1500


def mtu_and_segmentation(pcap_dir: str | None) -> Walkthrough:
    """A 64 KiB reply on loopback, then over a 1,500-byte MTU with offloads on and off."""
    require_namespaces()
    walkthrough = Walkthrough(
        "mtu-and-segmentation",
        "A 64 KiB reply over loopback and over a 1,500-byte MTU",
        "TCP cuts a write into segments no larger than the MSS, which each end derives from its MTU and "
        "announces in its SYN. Loopback's MTU is 65,536, so a 64 KiB reply leaves in a few huge segments; "
        "a veth with the Ethernet MTU of 1,500 gives an MSS of 1,460 (1,448 with timestamps). With "
        "segmentation offload on, the kernel hands the veth 'super-packets' and a capture shows segments "
        "far above the MTU; netlab's lab turns offloads off so the capture shows what a wire would carry.",
    )
    cases: list[tuple[str, str, bool | None]] = [
        ("loopback: MTU 65,536", "lo", None),
        ("veth, offloads on: MTU 1,500", "veth", True),
        ("veth, offloads off (as netlab's lab keeps them): MTU 1,500", "veth", False),
    ]
    for heading, kind, offloads in cases:
        name = f"mtu-and-segmentation-{'loopback' if kind == 'lo' else 'offloads-on' if offloads else 'offloads-off'}"
        if offloads is None:
            section = _reply_section(heading, LOOPBACK, "lo", pcap_dir, name)
        else:
            topology = Topology.up(parse_network({"kind": "namespaces", "link": {"mtu": MTU}}, "mtu-and-segmentation"),
                                   offloads=offloads)
            try:
                placement = topology.placement()
                section = _reply_section(heading, placement, topology.interfaces["c"], pcap_dir, name)
            finally:
                topology.down()
        walkthrough.sections.append(section)
        walkthrough.findings.append(_finding(heading, section))
    return walkthrough


def _reply_section(heading: str, placement: Placement, interface: str, pcap_dir: str | None, name: str) -> Section:
    """Run ``blob 65536`` from the client's host against a server in the server's, capturing at the client."""
    with ExitStack() as stack:
        with placement.server():
            server = stack.enter_context(running_server(f"tcp4://{placement.server_address}:0"))
        address = server.listener.address
        capture = Capture(PacketFilter.for_ports(tcp_ports=[address.port or 0]), interface=interface)
        with placement.client():
            stack.enter_context(capture)  # the packet socket is opened in the client's namespace
            client = Client(address, read_timeout=WAIT)
        with client:
            reply = client.run(("blob", str(REPLY_SIZE)), keep_output=False)
        capture.wait_for(closed_both_ways(1), WAIT)
    text = (f"A server listens on {address}; the client asks for `blob {REPLY_SIZE}` ({reply.stdout_bytes:,} "
            f"bytes of output) and closes. Captured at the client's interface ({interface}).")
    return packet_section(heading, text, capture, pcap_file(pcap_dir, name), [address.port or 0])


def _finding(heading: str, section: Section) -> str:
    server_port = section.packets[0].destination.rsplit(":", 1)[1] if section.packets else "?"
    from_server = [row for row in section.packets if row.source.endswith(f":{server_port}") and row.length]
    mss = next((item[4:] for row in section.packets[:1] for item in row.content if item.startswith("MSS=")), "?")
    largest = max((row.length for row in from_server), default=0)
    return (f"{heading.split(':')[0]}: the client's SYN announced MSS {mss}; the server's data came in "
            f"{len(from_server)} segments, the largest {largest:,} bytes of payload")


# -- delay-and-loss ---------------------------------------------------------------

#: The link of delay-and-loss: 20 ms each way; the wire (or netem) drops this share of frames toward the client.
LOSSY_DELAY = "20ms"
LOSSY_LOSS = "10%"
#: Seeds the link's choices: the same frames in the same order meet the same fate on every run.
LOSSY_SEED = 1
LOSSY_REPLY = 40_000
LOSSY_WAIT = 15.0
#: The server namespace's counters that say how TCP recovered (TcpExt, /proc/net/netstat).
RECOVERY_COUNTERS = {
    "TcpExt.TCPFastRetrans": "fast retransmits (after duplicate ACKs or SACK)",
    "TcpExt.TCPLossProbes": "tail-loss probes (a timer of about two round trips)",
    "TcpExt.TCPTimeouts": "retransmission timeouts (RTO)",
    "TcpExt.TCPSackRecovery": "SACK recovery episodes",
    "Tcp.RetransSegs": "segments sent again in all",
}


@dataclass(frozen=True)
class Resend:
    """A segment or datagram the capture shows twice: which, and when each copy left."""

    label: str
    first: float
    again: float


def delay_and_loss(pcap_dir: str | None) -> Walkthrough:
    """TCP and sequenced UDP over a delayed link that loses frames: who resends what, and when."""
    require_namespaces()
    network = parse_network({"kind": "namespaces", "impairment": "auto",
                             "to_client": {"delay": LOSSY_DELAY, "loss": LOSSY_LOSS},
                             "to_server": {"delay": LOSSY_DELAY}}, "delay-and-loss")
    walkthrough = Walkthrough(
        "delay-and-loss",
        "TCP and sequenced UDP over a delayed, lossy link",
        "Between two network namespaces, a link delays every frame by 20 ms each way (a 40 ms round trip) and "
        f"drops {LOSSY_LOSS} of the frames toward the client (seeded, seed {LOSSY_SEED}: the same frames in the "
        f"same order meet the same fate). The client asks for `blob {LOSSY_REPLY}` over TCP, then over "
        "netlab's sequenced UDP. Both captures are taken at the server's veth, the sender's own view: a "
        "segment the link lost shows up twice, once when it was sent and once when it was sent again. TCP "
        "resends on its own: after three duplicate ACKs or a SACK showing a hole (fast retransmit, about a "
        "round trip after the loss), after a tail-loss probe timer (about two round trips) when the loss "
        "was at the end, or after its retransmission timeout (RTO: at least 200 ms on Linux, doubling each "
        "time). Sequenced UDP does the same in netlab's own code: SACK blocks in its ACKs, a resend after "
        "duplicate ACKs, or its own RTO.",
    )
    topology = Topology.up(network, seed=LOSSY_SEED)
    try:
        placement = topology.placement()
        mechanism = topology.mechanism
        tcp_section, tcp_counts = _lossy_tcp(placement, topology.interfaces["s"], pcap_dir)
        topology.reseed_wire(LOSSY_SEED)  # UDP meets the link's choices from the start again
        udp_section = _lossy_udp(placement, topology.interfaces["s"], pcap_dir)
    finally:
        topology.down()
    counters = topology.wire_counters() or {}
    dropped = (counters.get("to_client") or {}).get("dropped")
    walkthrough.sections += [tcp_section, udp_section]
    walkthrough.findings.append(
        f"the link: 20 ms each way, {LOSSY_LOSS} loss toward the client, applied by {mechanism}"
        + (f"; the wire dropped {dropped} frames toward the client over both exchanges" if dropped is not None
           else ""))
    for name, section in (("TCP", tcp_section), ("sequenced UDP", udp_section)):
        resends = resent(section.packets)
        if not resends:
            walkthrough.findings.append(f"{name}: nothing was sent twice (the link lost no data this time)")
        for resend in resends:
            walkthrough.findings.append(
                f"{name}: {resend.label} left at {resend.first * 1000:.1f} ms and again at "
                f"{resend.again * 1000:.1f} ms, {(resend.again - resend.first) * 1000:.0f} ms after the copy before")
    kernel = [f"{RECOVERY_COUNTERS[name]}: {value}" for name, value in tcp_counts.items() if value]
    walkthrough.findings.append("TCP, by the server namespace's own counters: "
                                + (", ".join(kernel) if kernel else "no retransmissions"))
    return walkthrough


def resent(rows: list[PacketRow]) -> list[Resend]:
    """Every packet the capture marks RETRANSMIT, with the time its previous copy left."""
    found = []
    for row in rows:
        if "RETRANSMIT" not in row.notes:
            continue
        label = _resend_label(row)
        previous = [earlier for earlier in rows if earlier.number < row.number and earlier.source == row.source
                    and _resend_label(earlier) == label]
        if previous:
            found.append(Resend(label, previous[-1].time, row.time))
    return found


def _resend_label(row: PacketRow) -> str:
    """``DATA seq=N`` for sequenced UDP; for TCP the SYN, the SYN-ACK or the segment at relative seq N."""
    if row.content and row.content[0].startswith("UDP DATA"):
        sequence = next((word for word in row.content[0].split() if word.startswith("seq=")), "seq=?")
        return f"DATA {sequence}"
    if "SYN" in row.flags.split(","):
        return "the SYN-ACK" if "ACK" in row.flags.split(",") else "the SYN"
    return f"the segment at seq={row.sequence} ({row.length} B)"


def _lossy_tcp(placement: Placement, interface: str, pcap_dir: str | None) -> tuple[Section, dict[str, int]]:
    """``blob`` over TCP across the lossy link, captured at the server's veth; the server's recovery counters."""
    with ExitStack() as stack:
        with placement.server():
            server = stack.enter_context(running_server(f"tcp4://{placement.server_address}:0"))
            capture = stack.enter_context(Capture(PacketFilter.for_ports(tcp_ports=[server.listener.address.port
                                                                                    or 0]), interface=interface))
            before = read_counters(THREAD_PROC_NET)
        address = server.listener.address
        with placement.client():
            client = Client(address, connect_timeout=LOSSY_WAIT, read_timeout=LOSSY_WAIT)
        with client:
            reply = client.run(("blob", str(LOSSY_REPLY)), keep_output=False, verify=True)
        capture.wait_for(closed_both_ways(1), LOSSY_WAIT)
        with placement.server():
            after = read_counters(THREAD_PROC_NET)
    counts = {name: after.get(name, 0) - before.get(name, 0) for name in RECOVERY_COUNTERS}
    text = (f"A server listens on {address} in the server's namespace; the client, in its own, runs "
            f"`blob {LOSSY_REPLY}` ({reply.stdout_bytes:,} bytes, SHA-256 "
            f"{'verified' if reply.verified else 'NOT verified'}) and closes. Captured at the server's veth "
            f"({interface}).")
    return packet_section("TCP: blob over the lossy link", text, capture, pcap_file(pcap_dir, "delay-and-loss-tcp"),
                          [address.port or 0]), counts


def _lossy_udp(placement: Placement, interface: str, pcap_dir: str | None) -> Section:
    """``blob`` over sequenced UDP across the same link, captured at the server's veth."""
    with ExitStack() as stack:
        with placement.server():
            server = stack.enter_context(running_server(f"udp://{placement.server_address}:0"))
            port = server.listener.address.port or 0
            capture = stack.enter_context(Capture(PacketFilter.for_ports(udp_ports=[port]), interface=interface))
        address = server.listener.address
        with placement.client():
            client = Client(address, connect_timeout=LOSSY_WAIT, read_timeout=LOSSY_WAIT)
        with client:
            reply = client.run(("blob", str(LOSSY_REPLY)), keep_output=False, verify=True)
        capture.wait_for(udp_closed_both_ways, LOSSY_WAIT)
    return packet_section("sequenced UDP: blob over the same link",
                          f"A server listens on {address}; the client runs `blob {LOSSY_REPLY}` "
                          f"({reply.stdout_bytes:,} bytes, SHA-256 {'verified' if reply.verified else 'NOT verified'}) "
                          f"over netlab's sequenced UDP and closes. Captured at the server's veth ({interface}).",
                          capture, pcap_file(pcap_dir, "delay-and-loss-udp"), [port], udp=True)
