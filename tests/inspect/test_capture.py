"""Live captures on loopback of real exchanges (root or CAP_NET_RAW), pcap round trip, the CLI."""

from __future__ import annotations

import io
import socket
import sys
import threading

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from netlab.cli.main import main
from netlab.inspect.analyze import analyze
from netlab.inspect.experiment import running_server
from netlab.inspect.layers import NetlabSequencing, NetlabStream, bind_netlab_ports
from netlab.inspect.pcap import read_pcap, write_pcap
from netlab.inspect.sniffer import Capture, PacketFilter
from netlab.inspect.walkthrough_parts import closed_both_ways
from netlab.proto.seq import FAST_FLOOR
from netlab.proto.seq import wire as seq_wire
from netlab.service.client import Client
from netlab.testing import serve_in_thread, wait_until
from netlab.testing.capture import needs_capture
from netlab.transport import connect
from netlab.transport.udp import UdpOptions


@pytest.fixture
def exchange():
    """Capture one `echo` command over TCP/IPv4; return (port, captured packets)."""
    with running_server("tcp4://127.0.0.1:0") as server:
        port = server.listener.address.port
        with Capture(PacketFilter.for_ports(tcp_ports=[port]), duration=10) as capture:
            with Client(server.listener.address, read_timeout=5) as client:
                reply = client.run("echo hello capture")
            assert capture.wait_for(closed_both_ways(1), 5)
    assert reply.stdout == b"hello capture\n"
    return port, capture.packets()


@needs_capture
def test_capture_shows_handshake_exec_and_exit(exchange) -> None:
    port, packets = exchange
    rows = analyze(packet.dissect() for packet in packets)
    assert [row.flags for row in rows[:3]] == ["SYN", "SYN,ACK", "ACK"]
    assert rows[0].destination == f"127.0.0.1:{port}"
    contents = [item for row in rows for item in row.content]
    assert 'EXEC id=1 "echo hello capture"' in contents
    assert "STDOUT 14 B" in contents
    assert "EXIT 0" in contents
    assert sum(1 for row in rows if "FIN" in row.flags) == 2
    assert all(not row.notes for row in rows), "loopback duplicates must be dropped, not shown as retransmits"


@needs_capture
def test_pcap_round_trip_gives_the_same_packets(exchange, tmp_path) -> None:
    port, packets = exchange
    path = str(tmp_path / "exchange.pcap")
    assert write_pcap(path, packets) == len(packets)
    bind_netlab_ports(tcp_ports=[port], udp_ports=())
    read_back = read_pcap(path)
    assert [bytes(packet) for packet in read_back] == [packet.data for packet in packets]
    assert [float(packet.time) for packet in read_back] == pytest.approx([packet.time for packet in packets], abs=1e-6)
    assert any(NetlabStream in packet for packet in read_back if TCP in packet)
    from_file = analyze(read_back)
    live = analyze(packet.dissect() for packet in packets)
    assert [row.time for row in from_file] == pytest.approx([row.time for row in live], abs=2e-6)  # pcap keeps us
    for row in from_file + live:
        row.time = 0.0
    assert from_file == live


@needs_capture
def test_udp_capture_shows_the_sequencing_fields() -> None:
    with running_server("udp://127.0.0.1:0") as server:
        port = server.listener.address.port
        with Capture(PacketFilter.for_ports(udp_ports=[port]), duration=10) as capture:
            with Client(server.listener.address, read_timeout=5) as client:
                client.run("echo over udp")
            assert capture.wait_for(lambda packets: len(packets) >= 8, 5)
    bind_netlab_ports(tcp_ports=(), udp_ports=[port])
    dissected = [packet.dissect() for packet in capture.packets()]
    headers = [packet[NetlabSequencing] for packet in dissected if NetlabSequencing in packet]
    assert len(headers) == len(dissected)
    assert all(header.checksum_ok() for header in headers)
    assert len({header.connection_id for header in headers}) == 1
    rows = analyze(dissected)
    kinds = [row.content[0].split()[1] for row in rows]
    assert kinds[0] == "INITIAL"
    assert "DATA" in kinds and "ACK" in kinds
    assert any(item.startswith("UDP DATA seq=0 ack=") for row in rows for item in row.content)


@needs_capture
def test_a_segmented_udp_bulk_send_is_shown_as_one_row_per_datagram(tmp_path) -> None:
    """With UDP GSO a loopback capture sees one packet of up to 64 KiB per send; each datagram gets its row."""
    options = UdpOptions(rto_floor=FAST_FLOOR, initial_rto=0.2)
    with serve_in_thread("udp://127.0.0.1:0", quiet=True, listen_options={"options": options}) as running:
        port = int(running.address.rsplit(":", 1)[1])
        with Capture(PacketFilter.for_ports(udp_ports=[port]), duration=10) as capture:
            with Client(running.address, connection=connect(running.address, 5.0, options=options)) as client:
                assert client.run(("blob", "200000"), keep_output=False).stdout_bytes == 200_000
            assert capture.wait_for(lambda packets: len(packets) >= 6, 5)
    packets = capture.stop()
    bind_netlab_ports(tcp_ports=(), udp_ports=[port])
    assert capture.statistics.kernel_drops == 0
    rows = analyze(packet.dissect() for packet in packets)
    data = [row for row in rows if row.content[0].startswith("UDP DATA")]
    # 200,000 bytes of output and the Exit in 1,200-byte datagrams: at least 172 of them, each whole and once
    assert len(data) >= 172 and len(data) > len(packets)
    assert all(row.length <= 1200 and not row.notes for row in data)
    assert not any("BAD CHECKSUM" in row.notes for row in rows)
    path = str(tmp_path / "gso.pcap")
    write_pcap(path, packets)
    again = analyze(read_pcap(path))
    assert [row.content for row in again] == [row.content for row in rows]


def test_a_frame_holding_several_datagrams_is_analyzed_as_several() -> None:
    bind_netlab_ports(tcp_ports=(), udp_ports=[40000])
    datagrams = [b"".join(seq_wire.encode(seq_wire.DatagramType.DATA, 0, 9, 50 + index, 3, 256, bytes(1164)))
                 for index in range(3)]
    datagrams.append(b"".join(seq_wire.encode(seq_wire.DatagramType.DATA, seq_wire.FLAG_MESSAGE_END, 9, 53, 3, 256,
                                              b"last")))
    for network in (IP(src="127.0.0.1", dst="127.0.0.1"), IPv6(src="::1", dst="::1")):
        frame = Ether(bytes(Ether() / network / UDP(sport=40000, dport=5555) / Raw(b"".join(datagrams))))
        frame.time = 12.5
        rows = analyze([frame])
        assert [row.length for row in rows] == [1200, 1200, 1200, 40]
        assert [row.content[0].split()[2] for row in rows] == ["seq=0", "seq=1", "seq=2", "seq=3"]
        assert all(not row.notes for row in rows)
        assert [row.time for row in rows] == [0.0] * 4


def test_capture_without_privilege_says_how_to_fix_it(monkeypatch, capsys) -> None:
    real_socket = socket.socket

    def refuse(family=-1, *args, **kwargs):
        if family == socket.AF_PACKET:
            raise PermissionError(1, "Operation not permitted")
        return real_socket(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", refuse)
    assert main(["capture", "--port", "6969", "--duration", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "CAP_NET_RAW" in error[0] and "setcap cap_net_raw+ep" in error[0]


@needs_capture
def test_capture_cli_prints_rows_and_writes_a_pcap(tmp_path, capsys) -> None:
    path = tmp_path / "cli.pcap"
    assert main(["capture", "--port", "9", "--count", "1", "--duration", "0.3", "--pcap", str(path)]) == 0
    captured = capsys.readouterr()
    assert "source -> destination" in captured.out
    assert path.exists()
    assert "the kernel dropped none of the " in captured.err and "(PACKET_STATISTICS)" in captured.err


@needs_capture
def test_a_capture_on_a_terminal_shows_its_progress_and_erases_it(monkeypatch, capsys) -> None:
    class TerminalError(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = TerminalError()
    monkeypatch.setattr(sys, "stderr", terminal)
    # A port held by this test: no other program's packets can reach the capture. The capture ends by its count,
    # with datagrams sent once the progress line has shown 0 packets, so no timing decides what it shows.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]

        def send_after_the_first_progress_line() -> None:
            wait_until(lambda: "elapsed: 0 of at most 5 packets" in terminal.getvalue(), 30, "the progress line")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for _ in range(5):
                    sender.sendto(b"x", ("127.0.0.1", port))

        sending = threading.Thread(target=send_after_the_first_progress_line, daemon=True)
        sending.start()
        assert main(["capture", "--port", str(port), "--count", "5", "--duration", "30"]) == 0
        sending.join(30)
    shown = terminal.getvalue()
    assert "elapsed: 0 of at most 5 packets; the capture ends within" in shown
    assert "\r\033[K" in shown.split("packets captured")[0]  # erased before the summary
    assert "netlab: 5 packets captured" in shown


def test_capture_refuses_unix_addresses(capsys) -> None:
    assert main(["capture", "--address", "unix:///tmp/x.sock"]) == 2
    assert "sticky-packets" in capsys.readouterr().err


def test_capture_refuses_an_unwritable_pcap_path_before_capturing(tmp_path, capsys) -> None:
    # Checked before the capture starts (so without root too), not after the packets were taken.
    path = tmp_path / "no-such-directory" / "x.pcap"
    assert main(["capture", "--port", "9", "--count", "1", "--duration", "0.3", "--pcap", str(path)]) == 2
    captured = capsys.readouterr()
    assert "cannot write the pcap file" in captured.err and "capturing" not in captured.err


@pytest.mark.parametrize("content", [b"", b"# netlab\n\nnot a capture\n", b"\xd4\xc3\xb2\xa1"],
                         ids=["empty", "text", "truncated-header"])
def test_read_of_a_file_that_is_not_a_pcap_is_one_line_and_exit_2(tmp_path, capsys, content: bytes) -> None:
    path = tmp_path / "not.pcap"
    path.write_bytes(content)
    assert main(["capture", "--read", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith("netlab: ") and str(path) in line and "pcap" in line
