"""The capture's two read paths (TPACKET_V3 ring, recvmsg), its kernel filter, and drops said everywhere (root)."""

from __future__ import annotations

import errno
import json
import shutil
import signal
import socket
import subprocess

import pytest

from netlab.cli import capture as capture_cli
from netlab.cli.main import main
from netlab.inspect import sniffer
from netlab.inspect.experiment import running_server
from netlab.inspect.pcap import read_pcap, read_statistics
from netlab.inspect.sniffer import Capture, PacketFilter
from netlab.service.client import Client
from netlab.testing.capture import needs_capture

FIN = 0x01
BURST = 400
DATAGRAM = b"d" * 1000
TINY = 8192  # two one-page ring blocks, or an 8 KiB receive buffer: a few datagrams


def _two_fins_and_an_ack(packets) -> bool:
    fins = [index for index, packet in enumerate(packets) if (packet.tcp_flags or 0) & FIN]
    return len(fins) >= 2 and len(packets) > fins[-1] + 1


def _burst(port: int, count: int = BURST) -> int:
    """Send ``count`` datagrams to ``port`` on loopback and receive them: once received, every capture saw them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.setsockopt(socket.SOL_SOCKET, sniffer.SO_RCVBUFFORCE, 4 * 1024 * 1024)
        receiver.bind(("127.0.0.1", port))
        receiver.settimeout(5)
        for _ in range(count):
            sender.sendto(DATAGRAM, ("127.0.0.1", port))
        received = 0
        try:
            while received < count:
                receiver.recv(2048)
                received += 1
        except TimeoutError:
            pass
    return received


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@needs_capture
def test_the_ring_and_recvmsg_capture_the_same_packets_of_an_exchange() -> None:
    with running_server("tcp4://127.0.0.1:0") as server:
        wanted = PacketFilter.for_ports(tcp_ports=[server.listener.address.port])
        with Capture(wanted, duration=10, method="ring") as ring, Capture(wanted, duration=10, method="recv") as plain:
            with Client(server.listener.address, read_timeout=5) as client:
                assert client.run("blob 300KiB").stdout[:3] == b"\x00\x01\x02"
            assert ring.wait_for(_two_fins_and_an_ack, 5) and plain.wait_for(_two_fins_and_an_ack, 5)
    assert (ring.statistics.method, plain.statistics.method) == ("ring", "recv")
    assert [packet.data for packet in ring.packets()] == [packet.data for packet in plain.packets()]
    assert [packet.time for packet in ring.packets()] == pytest.approx([p.time for p in plain.packets()], abs=1e-3)
    assert ring.kernel_drops == plain.kernel_drops == 0
    assert ring.kernel_packets == len(ring.packets()) and plain.kernel_packets == len(plain.packets())


@needs_capture
@pytest.mark.parametrize("method", ["ring", "recv"])
def test_the_kernel_filter_keeps_only_the_ports_asked_for(method: str) -> None:
    wanted, other = _free_udp_port(), _free_udp_port()
    with Capture(PacketFilter.for_ports(udp_ports=[wanted]), duration=10, method=method) as capture:
        _burst(other, 20)
        _burst(wanted, 5)
        assert capture.wait_for(lambda packets: len(packets) >= 5, 5)
    packets = capture.packets()
    assert len(packets) == 5 == capture.kernel_packets  # loopback's outgoing copies are refused too
    assert all(packet.dissect().dport == wanted for packet in packets)


@needs_capture
@pytest.mark.parametrize("method", ["ring", "recv"])
def test_a_full_ring_or_buffer_is_counted_as_drops_and_the_rest_is_captured(method: str) -> None:
    port = _free_udp_port()
    capture = Capture(PacketFilter.for_ports(udp_ports=[port]), method=method, buffer_size=TINY).open()
    assert _burst(port) == BURST  # nobody reads the capture socket yet: it overflows
    capture.start()
    packets = capture.stop()
    assert capture.statistics.method == method
    assert capture.kernel_packets == BURST
    assert 0 < capture.kernel_drops < BURST
    assert len(packets) == BURST - capture.kernel_drops
    assert "the kernel DROPPED" in capture.drop_summary()


def _overflowing_start(monkeypatch, port: int) -> None:
    """Make the CLI's capture open its socket, take a burst nobody reads, then start reading."""
    real_start = Capture.start

    def start(self: Capture) -> Capture:
        self.open()
        _burst(port)
        return real_start(self)

    monkeypatch.setattr(capture_cli.Capture, "start", start)


@needs_capture
def test_drops_reach_the_summary_the_json_and_the_pcapng_and_exit_1(monkeypatch, tmp_path, capsys) -> None:
    port = _free_udp_port()
    _overflowing_start(monkeypatch, port)
    path = tmp_path / "dropped.pcapng"
    assert main(["capture", "--address", f"udp://127.0.0.1:{port}", "--buffer-size", str(TINY), "--duration",
                 "0.5", "--format", "json", "--pcap", str(path)]) == 1
    out, err = capsys.readouterr()
    document = json.loads(out)
    counters = document["capture"]
    assert counters["kernel_packets"] == BURST and 0 < counters["kernel_drops"] < BURST
    assert counters["method"] == "ring" and counters["captured"] == BURST - counters["kernel_drops"]
    assert f"the kernel DROPPED {counters['kernel_drops']:,} of {BURST:,} frames" in err
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "--buffer-size" in warnings[0]
    [statistics] = read_statistics(str(path))
    assert (statistics.received, statistics.dropped) == (BURST, counters["kernel_drops"])
    assert len(read_pcap(str(path))) == counters["captured"]
    assert main(["capture", "--read", str(path), "--port", str(port), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["capture"]["kernel_drops"] == counters["kernel_drops"]
    assert f"DROPPED {counters['kernel_drops']:,} of {BURST:,}" in err
    if shutil.which("capinfos"):
        shown = subprocess.run(["capinfos", str(path)], capture_output=True, text=True, timeout=60).stdout
        assert f"Number of packets:   {counters['captured']}" in shown
        assert f"DROPPED {counters['kernel_drops']:,} of {BURST:,}" in shown  # the capture comment
        assert "Number of stat entries = 1" in shown


@needs_capture
def test_auto_falls_back_to_recvmsg_when_the_kernel_refuses_a_ring(monkeypatch, capsys) -> None:
    def refuse(*args, **kwargs):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(sniffer, "PacketRing", refuse)
    assert main(["capture", "--port", "9", "--count", "1", "--duration", "0.2", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "through recvmsg with a 32 MiB receive buffer (no TPACKET_V3 ring: Cannot allocate memory)" in err
    assert json.loads(out)["capture"]["method"] == "recv"
    assert main(["capture", "--port", "9", "--count", "1", "--duration", "0.2", "--method", "ring"]) == 255
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "no TPACKET_V3 ring" in line and "--method recv" in line


@needs_capture
def test_ctrl_c_still_reports_the_kernels_counters(tmp_path) -> None:
    """A Ctrl-C landing while the CLI waits on the reading thread must not cut the counters (or the drain) short."""
    from netlab.service.launch import child_environment, netlab_argv

    port = _free_udp_port()
    output = tmp_path / "capture.json"
    with open(output, "wb") as sink:
        process = subprocess.Popen(netlab_argv("capture", "--port", str(port), "--duration", "60", "--format", "json"),
                                   stdout=sink, stderr=subprocess.PIPE, env=child_environment())
    try:
        assert process.stderr is not None
        assert "capturing on" in process.stderr.readline().decode()
        assert _burst(port, 30) == 30
        process.send_signal(signal.SIGINT)
        err = process.communicate(timeout=30)[1].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, err
    counters = json.loads(output.read_text())["capture"]
    assert counters["kernel_packets"] == counters["captured"] == 30 and counters["ended"] >= counters["started"] > 0
    assert "capture interrupted" in err and "dropped none of the 30 frames" in err


@needs_capture
def test_an_interface_that_does_not_exist_is_one_line_and_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["capture", "--interface", "nosuch0", "--duration", "1"])
    err = capsys.readouterr().err
    assert status == 2  # a usage error, as for an unknown --netns
    assert "no interface named 'nosuch0' here: `ip -br link` lists them" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
