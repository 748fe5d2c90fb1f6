"""The capture's two read paths (TPACKET_V3 ring, recvmsg), its kernel filter, and drops said everywhere (root)."""

from __future__ import annotations

import errno
import functools
import json
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from netlab.cli import capture as capture_cli
from netlab.cli.main import main
from netlab.inspect import sniffer
from netlab.inspect.experiment import running_server
from netlab.inspect.pcap import read_pcap, read_statistics
from netlab.inspect.ring import PacketRing
from netlab.inspect.sniffer import Capture, PacketFilter
from netlab.inspect.walkthrough_parts import closed_both_ways
from netlab.service.client import Client
from netlab.testing.capture import needs_capture

BURST = 400
DATAGRAM = b"d" * 1000
TINY = 8192  # two one-page ring blocks, or an 8 KiB receive buffer: a few datagrams


@contextmanager
def _receiver() -> Iterator[socket.socket]:
    """A UDP socket on a loopback port of its own, held (bound) for as long as the test needs the port.

    A port probed free and bound again later can be taken in between by any other socket on the machine,
    or become the source port of someone's datagrams while a capture filters on it; a held port cannot.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.setsockopt(socket.SOL_SOCKET, sniffer.SO_RCVBUFFORCE, 4 * 1024 * 1024)
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        yield receiver


def _port(receiver: socket.socket) -> int:
    return int(receiver.getsockname()[1])


def _burst(receiver: socket.socket, count: int = BURST) -> int:
    """Send ``count`` datagrams to ``receiver`` on loopback and receive them: once received, every capture saw them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(DATAGRAM, ("127.0.0.1", _port(receiver)))
    received = 0
    try:
        while received < count:
            receiver.recv(2048)
            received += 1
    except TimeoutError:
        pass
    return received


@needs_capture
def test_the_ring_and_recvmsg_capture_the_same_packets_of_an_exchange() -> None:
    with running_server("tcp4://127.0.0.1:0") as server:
        wanted = PacketFilter.for_ports(tcp_ports=[server.listener.address.port])
        with Capture(wanted, duration=10, method="ring") as ring, Capture(wanted, duration=10, method="recv") as plain:
            with Client(server.listener.address, read_timeout=5) as client:
                assert client.run("blob 300KiB").stdout[:3] == b"\x00\x01\x02"
            assert ring.wait_for(closed_both_ways(1), 5) and plain.wait_for(closed_both_ways(1), 5)
    assert (ring.statistics.method, plain.statistics.method) == ("ring", "recv")
    assert [packet.data for packet in ring.packets()] == [packet.data for packet in plain.packets()]
    assert [packet.time for packet in ring.packets()] == pytest.approx([p.time for p in plain.packets()], abs=1e-3)
    assert ring.kernel_drops == plain.kernel_drops == 0
    assert ring.kernel_packets == len(ring.packets()) and plain.kernel_packets == len(plain.packets())


@needs_capture
@pytest.mark.parametrize("method", ["ring", "recv"])
def test_the_kernel_filter_keeps_only_the_ports_asked_for(method: str) -> None:
    with _receiver() as wanted, _receiver() as other:
        port = _port(wanted)
        with Capture(PacketFilter.for_ports(udp_ports=[port]), duration=10, method=method) as capture:
            assert _burst(other, 20) == 20
            assert _burst(wanted, 5) == 5
            assert capture.wait_for(lambda packets: len(packets) >= 5, 5)
    packets = capture.packets()
    assert len(packets) == 5 == capture.kernel_packets  # loopback's outgoing copies are refused too
    assert all(packet.dissect().dport == port for packet in packets)


@needs_capture
@pytest.mark.parametrize("method", ["ring", "recv"])
def test_a_full_ring_or_buffer_is_counted_as_drops_and_the_rest_is_captured(method: str) -> None:
    with _receiver() as receiver:
        capture = Capture(PacketFilter.for_ports(udp_ports=[_port(receiver)]), method=method, buffer_size=TINY).open()
        assert _burst(receiver) == BURST  # nobody reads the capture socket yet: it overflows
        capture.start()
        packets = capture.stop()
    assert capture.statistics.method == method
    assert capture.kernel_packets == BURST
    assert 0 < capture.kernel_drops < BURST
    assert len(packets) == BURST - capture.kernel_drops
    assert "the kernel DROPPED" in capture.drop_summary()


@needs_capture
@pytest.mark.parametrize("method", ["ring", "recv"])
def test_a_capture_ended_by_its_duration_keeps_what_the_kernel_queued_before(monkeypatch, method: str) -> None:
    """The ring hands a block over when it is full or retire_ms after its first frame, so frames that arrived
    before the duration ran out can still be in the kernel's block then: they are taken all the same."""
    monkeypatch.setattr(sniffer, "PacketRing", functools.partial(PacketRing, retire_ms=3000))  # outlives 1 s
    with _receiver() as receiver:
        capture = Capture(PacketFilter.for_ports(udp_ports=[_port(receiver)]), duration=1.0, method=method).start()
        assert _burst(receiver, 3) == 3
        assert capture.wait(15), "the capture did not end after its duration"
    assert capture.kernel_packets == 3, "the datagrams were sent after the capture's 1 s were over"
    assert capture.statistics.method == method and capture.kernel_drops == 0
    assert len(capture.packets()) == 3


def _overflowing_start(monkeypatch, receiver: socket.socket) -> None:
    """Make the CLI's capture open its socket, take a burst nobody reads, then start reading."""
    real_start = Capture.start

    def start(self: Capture) -> Capture:
        self.open()
        assert _burst(receiver) == BURST
        return real_start(self)

    monkeypatch.setattr(capture_cli.Capture, "start", start)


@needs_capture
def test_drops_reach_the_summary_the_json_and_the_pcapng_and_exit_1(monkeypatch, tmp_path, capsys) -> None:
    with _receiver() as receiver:
        port = _port(receiver)
        _overflowing_start(monkeypatch, receiver)
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

    output = tmp_path / "capture.json"
    with _receiver() as receiver, open(output, "wb") as sink:
        process = subprocess.Popen(netlab_argv("capture", "--port", str(_port(receiver)), "--duration", "60",
                                               "--format", "json"),
                                   stdout=sink, stderr=subprocess.PIPE, env=child_environment())
        try:
            assert process.stderr is not None
            assert "capturing on" in process.stderr.readline().decode()
            assert _burst(receiver, 30) == 30
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


@needs_capture
def test_a_reader_that_does_not_end_makes_the_capture_incomplete_not_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reading thread stuck past the duration: the command still ends, warns, and exits 1."""
    release = threading.Event()

    def stuck(self: Capture, packet_socket: socket.socket, deadline: float | None) -> None:
        release.wait(10.0)

    monkeypatch.setattr(Capture, "_read_socket", stuck)
    monkeypatch.setattr(sniffer, "STOP_TIMEOUT", 0.2)
    monkeypatch.setattr(capture_cli, "STOP_TIMEOUT", 0.2)
    try:
        status = main(["capture", "--port", "9", "--duration", "0.2", "--method", "recv", "--format", "json"])
    finally:
        release.set()
    err = capsys.readouterr().err
    assert status == 1
    assert "WARNING: the capture is incomplete" in err and "the reading thread did not end within 0.2 s" in err
    assert "Traceback" not in err
