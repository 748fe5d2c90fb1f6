"""The capture file writer: pcapng with the kernel's counters, classic pcap, read back by scapy, tshark, capinfos."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from netlab.inspect.pcap import read_pcap, read_statistics, write_pcap
from netlab.inspect.sniffer import CapturedPacket, CaptureStatistics

STARTED = 1_764_547_200.25


def _packets(count: int = 5) -> list[CapturedPacket]:
    frames = [bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=5000, dport=6969) / (b"x" * size))
              for size in range(1, count + 1)]  # odd lengths: the blocks are padded
    return [CapturedPacket(STARTED + index * 0.001234, frame) for index, frame in enumerate(frames)]


def _statistics(drops: int) -> CaptureStatistics:
    return CaptureStatistics(interface="lo", method="ring", buffer_size=1 << 20, kernel_packets=5 + drops,
                             kernel_drops=drops, started=STARTED - 1, ended=STARTED + 1)


@pytest.mark.parametrize("file_format", ["pcapng", "pcap"])
def test_the_frames_and_their_times_read_back_the_same(tmp_path, file_format: str) -> None:
    packets = _packets()
    path = str(tmp_path / f"x.{file_format}")
    assert write_pcap(path, packets, file_format=file_format, statistics=_statistics(3)) == len(packets)
    read_back = read_pcap(path)
    assert [bytes(packet) for packet in read_back] == [packet.data for packet in packets]
    assert [float(packet.time) for packet in read_back] == pytest.approx([p.time for p in packets], abs=1e-6)
    assert [packet[UDP].dport for packet in read_back] == [6969] * len(packets)


def test_pcapng_keeps_the_kernels_counters_and_classic_pcap_has_none(tmp_path) -> None:
    path, classic = str(tmp_path / "x.pcapng"), str(tmp_path / "x.pcap")
    write_pcap(path, _packets(), file_format="pcapng", statistics=_statistics(7))
    write_pcap(classic, _packets(), file_format="pcap", statistics=_statistics(7))
    [statistics] = read_statistics(path)
    assert (statistics.received, statistics.dropped, statistics.os_dropped) == (12, 7, 7)
    assert statistics.comment is not None and "the kernel DROPPED 7 of 12 frames" in statistics.comment
    assert read_statistics(classic) == []
    write_pcap(path, _packets(), file_format="pcapng")  # no statistics given: no block
    assert read_statistics(path) == []


@pytest.mark.skipif(not shutil.which("tshark") or not shutil.which("capinfos"), reason="tshark/capinfos not installed")
def test_tshark_and_capinfos_read_the_pcapng_and_show_the_drops(tmp_path) -> None:
    path = str(tmp_path / "x.pcapng")
    write_pcap(path, _packets(), file_format="pcapng", statistics=_statistics(7))
    fields = subprocess.run(["tshark", "-n", "-r", path, "-T", "fields", "-e", "udp.dstport", "-e", "frame.len"],
                            capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
    assert [line.split("\t") for line in fields if line] == [["6969", str(42 + size)] for size in range(1, 6)]
    shown = subprocess.run(["capinfos", path], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "File type:           Wireshark/... - pcapng" in shown
    assert "Number of packets:   5" in shown
    assert "the kernel DROPPED 7 of 12 frames" in shown  # the capture comment
    assert "Number of stat entries = 1" in shown  # the statistics block, parsed


def test_a_file_that_cannot_be_written_leaves_nothing_behind(tmp_path) -> None:
    from netlab.errors import UsageError

    directory = tmp_path / "read-only"
    directory.mkdir()
    target = directory / "x.pcapng"
    target.write_bytes(b"before")

    class Broken:
        def __iter__(self):
            raise OSError(28, "No space left on device")

        def __len__(self) -> int:
            return 1

    with pytest.raises(UsageError, match="No space left on device"):
        write_pcap(str(target), Broken(), file_format="pcap")  # type: ignore[arg-type]
    assert target.read_bytes() == b"before" and [entry.name for entry in directory.iterdir()] == ["x.pcapng"]
