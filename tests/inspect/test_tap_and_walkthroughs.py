"""The syscall tap's view of sticky packets, and every walkthrough run for real."""

from __future__ import annotations

import os

import pytest

from netlab.cli.main import main
from netlab.inspect.analyze import PacketRow
from netlab.inspect.explain import explain_calls
from netlab.inspect.render import tap_table
from netlab.inspect.walkthroughs import WALKTHROUGHS, ipv6_loopback_available, run_walkthrough
from netlab.testing.capture import needs_capture
from netlab.transport import connect, listen
from netlab.transport.tap import TappedConnection, TapRecorder


def test_tap_shows_three_raw_sends_merged_into_one_recv_over_unix(tmp_path) -> None:
    recorder = TapRecorder(preview_size=64)
    address = f"unix://{tmp_path}/tap.sock"
    with listen(address, 1) as listener:
        client = TappedConnection(connect(address, 5), recorder, "client")
        server = TappedConnection(listener.accept(5), recorder, "server")
        with client, server:
            for command in (b"echo one", b"echo two", b"echo three"):
                client.send(command, 5)
            merged = server.receive(1024, 5)
    assert merged == b"echo oneecho twoecho three"
    events = recorder.events()
    assert [(event.connection, event.direction, event.size) for event in events] == [
        ("client", "send", 8), ("client", "send", 8), ("client", "send", 10), ("server", "recv", 26)]
    explanations = explain_calls(events, {"client": "server", "server": "client"})
    assert explanations[-1] == "server's one recv() returns 26 B: 3 sends merged into one read"
    assert "'echo oneecho twoecho thr'..." in tap_table(events)


def test_sticky_packets_walkthrough_shows_merged_recvs_for_both_framings() -> None:
    walkthrough = run_walkthrough("sticky-packets", None)
    raw, length = walkthrough.sections
    assert any("sends merged into one read" in line for line in raw.explanations)
    assert any("finds 3 whole message(s)" in line for line in length.explanations)
    assert "raw: the client called send() 4 times" in walkthrough.findings[0]
    # the length half is decoded, not left as hex
    assert any('EXEC id=2 "echo one", EXEC id=3 "echo two", EXEC id=4 "echo three"' in line
               for line in length.explanations)
    assert any(line.endswith('send() once with 39 B: EXEC id=2 "echo one"') for line in length.explanations)


def test_ack_walkthrough_shows_the_fix_beside_the_sticky_raw_case() -> None:
    walkthrough = run_walkthrough("ack", None)
    raw, ack = walkthrough.sections
    assert any("sends merged into one read" in line for line in raw.explanations)
    assert "ack: " in walkthrough.findings[1] and "'one\\n', 'two\\n', 'three\\n'" in walkthrough.findings[1]
    for event, line in zip(ack.calls, ack.explanations):
        if "merged into one read" in line:  # only control lines may share a read, never two commands
            assert b"echo" not in event.preview


def test_udp_ack_explanations_name_every_missing_sequence_number() -> None:
    from netlab.inspect.explain import PacketExplainer

    row = PacketRow(number=1, time=0.0, source="a:1", destination="b:2", protocol="UDP", flags="", length=0,
                    content=["UDP ACK seq=1 ack=3 sack=+2..+3 win=256"], notes=[])
    assert PacketExplainer().explain(row) == "ACK: seq 3..4 still missing; SACK says it holds seq 5 past the hole"


CAPTURING = [name for name in WALKTHROUGHS if name not in ("sticky-packets", "ack")]


@needs_capture
@pytest.mark.parametrize("name", CAPTURING)
def test_each_capturing_walkthrough_runs_and_prints_its_steps(name, tmp_path, capsys) -> None:
    if name == "tcp6-vs-tcp4" and not ipv6_loopback_available():
        pytest.skip("IPv6 is not available on loopback (cannot bind ::1)")
    assert main(["walkthrough", name, "--pcap", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "       -> " in out  # every row is followed by its explanation
    assert "What this run measured:" in out
    pcaps = [entry for entry in os.listdir(tmp_path) if entry.endswith(".pcap")]
    assert pcaps and all(name.split("-vs-")[0] in entry or name in entry for entry in pcaps)
    assert f"pcap: {tmp_path}" in out


@needs_capture
def test_backlog_walkthrough_sees_the_dropped_syn_retried() -> None:
    walkthrough = run_walkthrough("backlog-overflow", None)
    tcp, unix = walkthrough.sections
    assert any("sends its SYN again" in line for line in tcp.explanations)
    assert "when a slot has freed" not in walkthrough.lesson and "SYN retransmission timer" in walkthrough.lesson
    assert any("the SYN timer decided, not the free slot" in finding for finding in walkthrough.findings)
    assert [call.result for call in unix.other_calls if call.call.startswith("connect")] == [
        "connected", "EAGAIN (ConnectionRefused)", "connected"]


@needs_capture
def test_markdown_lessons_are_written_without_machine_paths(tmp_path, capsys) -> None:
    assert main(["walkthrough", "tcp-handshake", "--markdown", str(tmp_path), "--pcap", str(tmp_path)]) == 0
    text = (tmp_path / "tcp-handshake.md").read_text()
    assert text.startswith("# ")
    assert "```text" in text and "SYN,ACK" in text
    assert "four more to close" not in text
    closing = text.split("after the reply, ")[1].split(" more to close")[0]
    fins = text.count("FIN")  # the close the lesson counts is the one the capture shows
    assert closing in ("three", "four") and fins >= 2
    assert str(tmp_path) not in text
