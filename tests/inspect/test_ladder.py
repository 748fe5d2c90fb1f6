"""Ladder diagrams and time-sequence graphs: from rows, from a real capture, through the CLI."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from netlab.errors import UsageError
from netlab.inspect.analyze import PacketRow
from netlab.inspect.ladder import ladder_steps, ladder_svg, ladder_text
from netlab.inspect.timeseq import time_sequence
from netlab.testing.capture import needs_capture
from netlab.testing.packets import CLIENT, EXCHANGE, SERVER, tcp_row
from netlab.testing.servers import run_netlab_text

SVG = "{http://www.w3.org/2000/svg}"


def netlab(*arguments: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_netlab_text(*arguments, timeout=120, environment={"COLUMNS": "100", **(environment or {})})


def test_steps_label_flags_relative_numbers_length_and_the_message() -> None:
    endpoints, steps = ladder_steps(EXCHANGE)
    assert endpoints == [CLIENT, SERVER]
    assert steps[0].label == "SYN seq=0 len=0"
    assert steps[1].label == "SYN,ACK seq=0 ack=1 len=0"
    assert steps[3].label == 'PSH,ACK seq=1 ack=1 len=60 EXEC id=1 "echo hello"'
    assert steps[4].label == "PSH,ACK seq=1 ack=61 len=89 STDOUT 6 B; EXIT 0"
    assert steps[5].marked and "[RETRANSMIT]" in steps[5].label


def test_text_ladder_has_one_column_per_endpoint_and_arrows_that_point_the_right_way() -> None:
    text = ladder_text(EXCHANGE, 100)
    lines = text.splitlines()
    assert CLIENT in lines[0] and SERVER in lines[0] and lines[0].index(CLIENT) < lines[0].index(SERVER)
    assert all(len(line) <= 100 for line in lines)
    syn = next(line for line in lines if " SYN seq=0 len=0 " in line)
    assert syn.rstrip().endswith(">|")
    syn_ack = next(line for line in lines if "SYN,ACK" in line)
    assert "|<" in syn_ack
    assert 'EXEC id=1 "echo hello"' in text and "STDOUT 6 B; EXIT 0" in text


def test_a_label_too_long_for_its_arrow_goes_on_its_own_line() -> None:
    long_command = "x" * 150
    row = tcp_row(1, 0.5, CLIENT, SERVER, "PSH,ACK", 1, 1, 160, [f'EXEC id=1 "{long_command}"'])
    lines = ladder_text([row], 100).splitlines()
    assert long_command in lines[2] and lines[3].rstrip().endswith("->|") and "0.500000" in lines[3]


def test_svg_ladder_is_valid_svg_with_an_arrow_per_packet_and_retransmissions_in_red() -> None:
    root = ElementTree.fromstring(ladder_svg(EXCHANGE, "an exchange"))
    arrows = [line for line in root.iter(f"{SVG}line") if line.get("marker-end")]
    assert len(arrows) == len(EXCHANGE)
    assert [arrow.get("stroke") for arrow in arrows].count("#c00") == 1
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert CLIENT in texts and SERVER in texts and "an exchange" in texts
    assert 'PSH,ACK seq=1 ack=1 len=60 EXEC id=1 "echo hello"' in texts


def test_time_sequence_follows_the_busiest_direction_with_acks_and_retransmissions() -> None:
    rows = [*EXCHANGE, tcp_row(7, 0.002, CLIENT, SERVER, "ACK", 61, 90)]
    graph = time_sequence(rows)
    assert (graph.sender, graph.receiver, graph.unit) == (SERVER, CLIENT, "bytes")
    assert graph.data == [(0.0018, 1, 90), (0.0019, 1, 90)]
    assert graph.retransmits == [(0.0019, 1)]
    assert graph.acks[-1] == (0.002, 90)


def test_time_sequence_of_sequenced_udp_counts_datagrams_and_reads_sack_ranges() -> None:
    def udp(number: int, source: str, destination: str, text: str, notes: list[str] | None = None) -> PacketRow:
        return PacketRow(number, number / 1000, source, destination, "UDP", length=1200, content=[text],
                         notes=notes or [])

    rows = [udp(1, SERVER, CLIENT, "UDP DATA seq=0 ack=1 win=256 1164 B"),
            udp(2, SERVER, CLIENT, "UDP DATA seq=2 ack=1 win=256 1164 B"),
            udp(3, CLIENT, SERVER, "UDP ACK seq=1 ack=1 sack=+1..+2 win=256"),
            udp(4, SERVER, CLIENT, "UDP DATA seq=1 ack=1 win=256 1164 B", ["RETRANSMIT"])]
    graph = time_sequence(rows)
    assert graph.unit == "datagrams" and graph.data[0] == (0.001, 0, 1)
    assert graph.sacks == [(0.003, 2, 3)] and graph.retransmits == [(0.004, 1)]


def test_time_sequence_without_data_says_what_it_needs() -> None:
    with pytest.raises(UsageError, match="no packet in this capture carried data"):
        time_sequence(EXCHANGE[:3])


@needs_capture
def test_capture_read_draws_the_ladder_and_both_pictures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from netlab.testing.capture import capture_exchange

    pcap = tmp_path / "exchange.pcap"
    port = capture_exchange("tcp4", "length", pcap)
    svg, graph = tmp_path / "ladder.svg", tmp_path / "tsg.png"
    shown = netlab("capture", "--read", str(pcap), "--port", str(port), "--ladder", "--ladder-svg", str(svg),
                   "--time-sequence", str(graph))
    assert shown.returncode == 0, shown.stderr
    assert 'EXEC id=1 "echo hello dissector"' in shown.stdout and "|<" in shown.stdout
    assert ElementTree.parse(svg).getroot().tag == f"{SVG}svg"
    assert graph.read_bytes().startswith(b"\x89PNG")


def test_capture_refuses_a_picture_name_it_cannot_write_before_reading(tmp_path: Path) -> None:
    wrong = netlab("capture", "--read", str(tmp_path / "absent.pcap"), "--time-sequence", str(tmp_path / "graph.gif"))
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "name the image .png or .svg" in wrong.stderr
    missing = netlab("capture", "--read", str(tmp_path / "absent.pcap"), "--ladder-svg",
                     str(tmp_path / "no" / "such" / "dir" / "l.svg"))
    assert missing.returncode == 2 and "directory is missing or not writable" in missing.stderr
    assert os.listdir(tmp_path) == []


@needs_capture
def test_walkthrough_ladder_has_two_ends_and_writes_svg_beside_the_pcap(tmp_path: Path) -> None:
    shown = netlab("walkthrough", "tcp-handshake", "--ladder", "--pcap", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    ladder = shown.stdout[shown.stdout.index("-- ladder:"):]
    header = ladder.splitlines()[1]
    assert "127.0.0.2:" in header and "127.0.0.1:" in header  # the client connects from 127.0.0.2
    assert (tmp_path / "tcp-handshake-ladder.svg").exists()


def test_a_walkthrough_without_packets_leaves_no_empty_temporary_directory(tmp_path: Path) -> None:
    shown = netlab("walkthrough", "sticky-packets", environment={"TMPDIR": str(tmp_path)})
    assert shown.returncode == 0, shown.stderr
    assert [entry for entry in tmp_path.iterdir() if entry.is_dir() and not any(entry.iterdir())] == []
