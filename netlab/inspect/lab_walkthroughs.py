"""Walkthroughs captured on a veth between network namespaces (root only): what an MTU does to TCP.

How this works: ``mtu-and-segmentation`` sends one 64 KiB reply three times
and captures it where the client receives it: on loopback (MTU 65,536), then
between two namespaces joined by veths with a 1,500-byte MTU, first with the
veths' offloads as the kernel sets them (TSO/GSO hands the veth "super-packets"
that are cut up later, if ever), then with them off as netlab's lab keeps
them. The server runs in the server's namespace and the capture and client in
the client's (see :mod:`netlab.lab.placement`); the namespaces are removed
before the walkthrough returns.
"""

from __future__ import annotations

from contextlib import ExitStack

from netlab.inspect.experiment import running_server
from netlab.inspect.sniffer import Capture, PacketFilter
from netlab.inspect.walkthrough_parts import WAIT, Section, Walkthrough, closed_both_ways, packet_section, pcap_file
from netlab.lab.namespace import require_namespaces
from netlab.lab.placement import LOOPBACK, Placement
from netlab.lab.spec import parse_network
from netlab.lab.topology import Topology
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



