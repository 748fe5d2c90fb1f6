"""Packet capture in tests: the pytest mark for tests that need it (root or CAP_NET_RAW), and a captured exchange."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.inspect.experiment import running_server
from netlab.inspect.pcap import write_pcap
from netlab.inspect.sniffer import Capture, PacketFilter, has_capture_privilege
from netlab.inspect.walkthrough_parts import closed_both_ways, udp_closed_both_ways
from netlab.service.client import Client

needs_capture = pytest.mark.skipif(
    not has_capture_privilege(), reason="packet capture needs root or CAP_NET_RAW (AF_PACKET socket)"
)


def capture_exchange(scheme: str, framing: str, pcap: Path) -> int:
    """Capture ``echo hello dissector`` over ``scheme`` with ``framing`` into ``pcap``; return the server port."""
    with running_server(f"{scheme}://127.0.0.1:0", framing=framing) as server:
        port = server.listener.address.port or 0
        ports = {"tcp_ports": [port]} if scheme == "tcp4" else {"udp_ports": [port]}
        with Capture(PacketFilter.for_ports(**ports), duration=10) as capture:
            with Client(server.listener.address, framing=framing, read_timeout=5) as client:
                reply = client.run("echo hello dissector")
            # the whole exchange, its close included (the server closes when it sees the client's)
            assert capture.wait_for(closed_both_ways(1) if scheme == "tcp4" else udp_closed_both_ways, 10), \
                "the capture did not see both ends close"
    assert reply.stdout == b"hello dissector\n"
    write_pcap(str(pcap), capture.packets())
    return port
