"""The generated Wireshark dissector: it declares every scapy field, and tshark decodes a real capture with it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.fields import PacketListField
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from netlab.cli.main import main
from netlab.inspect.dissector import generate_dissector
from netlab.inspect.layers import BODY_LAYERS, NetlabArgument, NetlabFrame, NetlabSackBlock, NetlabSequencing
from netlab.proto.framing import FRAMING_NAMES
from netlab.proto.seq import wire as seq_wire
from netlab.testing.capture import capture_exchange, needs_capture

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")
LAYERS = [NetlabFrame, NetlabArgument, *dict.fromkeys(BODY_LAYERS.values()), NetlabSackBlock, NetlabSequencing]


def test_every_scapy_field_is_a_wireshark_field() -> None:
    text = generate_dissector(6969, 6969)
    declared = set(re.findall(r'ProtoField\.\w+\("(netlab\.[\w.]+)"', text))
    for layer in LAYERS:
        prefix = layer.__name__.removeprefix("Netlab").lower()
        for field in layer.fields_desc:
            if isinstance(field, PacketListField):
                assert f"dissect_{field.cls.__name__}(" in text
                continue
            assert f"netlab.{prefix}.{field.name}" in declared, f"{layer.__name__}.{field.name} is missing"
            for name in getattr(field, "names", None) or []:
                assert f"netlab.{prefix}.{field.name}.{name.lower()}" in declared


def test_generation_follows_the_options() -> None:
    text = generate_dissector(4242, 4343, "line")
    assert "local DEFAULT_TCP_PORT = 4242" in text and "local DEFAULT_UDP_PORT = 4343" in text
    assert 'local DEFAULT_FRAMING = "line"' in text


def test_cli_prints_the_dissector_and_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dissector", "--port", "7000", "--framing", "ack"]) == 0
    assert "local DEFAULT_TCP_PORT = 7000" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["dissector", "--port", "70000"])
    assert exit_info.value.code == 2
    assert "expected a port 1-65535" in capsys.readouterr().err


def test_install_writes_the_plugin_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["dissector", "--install"]) == 0
    plugin = tmp_path / ".local" / "lib" / "wireshark" / "plugins" / "netlab.lua"
    assert plugin.read_text().startswith("-- netlab dissector")
    assert str(plugin) in capsys.readouterr().err
    assert os.listdir(plugin.parent) == ["netlab.lua"]


def test_install_says_what_to_do_when_the_folder_cannot_be_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the home folder should be")
    monkeypatch.setenv("HOME", str(blocker))
    assert main(["dissector", "--install"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "cannot write" in error and "netlab dissector > FILE" in error


def captured_with_dissector(tmp_path: Path, scheme: str, framing: str,
                            dissector_framing: str | None = None) -> tuple[Path, Path]:
    """Capture an exchange and generate the dissector for its port; return (lua, pcap)."""
    pcap = tmp_path / "exchange.pcap"
    port = capture_exchange(scheme, framing, pcap)
    lua = tmp_path / "netlab.lua"
    lua.write_text(generate_dissector(port, port, dissector_framing or framing))
    return lua, pcap


def tshark_fields(lua: Path, pcap: Path, *fields: str, options: tuple[str, ...] = ()) -> list[list[str]]:
    assert TSHARK is not None
    command = [TSHARK, "-n", "-X", f"lua_script:{lua}", *options, "-r", str(pcap), "-T", "fields"]
    for field in fields:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                            env={**os.environ, "HOME": str(lua.parent)})
    assert result.returncode == 0, result.stderr
    assert "Lua: Error" not in result.stderr and "lua_script" not in result.stderr, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


@needs_tshark
@needs_capture
@pytest.mark.parametrize("framing", FRAMING_NAMES)
def test_tshark_decodes_exec_and_exit_in_a_real_tcp_capture(framing: str, tmp_path: Path) -> None:
    lua, pcap = captured_with_dissector(tmp_path, "tcp4", framing)
    summaries = [item for row in tshark_fields(lua, pcap, "netlab.summary") for cell in row
                 for item in cell.split(",") if item]
    assert any(item.startswith("EXEC") and "echo hello dissector" in item for item in summaries), summaries
    if framing in ("line", "length"):  # the framings that carry an exit status
        assert "EXIT 0" in summaries, summaries
    else:
        assert "OUTPUT 16 B" in summaries, summaries


@needs_tshark
@needs_capture
def test_tshark_reads_the_length_fields_as_scapy_wrote_them(tmp_path: Path) -> None:
    lua, pcap = captured_with_dissector(tmp_path, "tcp4", "length")
    rows = tshark_fields(lua, pcap, "netlab.frame.type", "netlab.request.request_id", "netlab.argument.value",
                         "netlab.exit.code", "netlab.exit.stdout_bytes")
    requests = [row for row in rows if row[1]]
    assert requests and requests[0][1] == "1" and requests[0][2] == "echo,hello,dissector"
    exits = [row for row in rows if row[3]]
    assert exits and exits[0][3] == "0" and exits[0][4] == "16"


@needs_tshark
@needs_capture
def test_tshark_decodes_the_sequenced_udp_header_and_the_messages_inside(tmp_path: Path) -> None:
    lua, pcap = captured_with_dissector(tmp_path, "udp", "length")
    rows = tshark_fields(lua, pcap, "netlab.sequencing.type", "netlab.sequencing.connection_id", "netlab.summary")
    assert rows and all(row[0] for row in rows), "every datagram has the sequencing header"
    assert len({row[1] for row in rows}) == 1, "one connection id throughout"
    summaries = " ".join(row[2] for row in rows)
    assert "UDP INITIAL" in summaries and 'EXEC id=1 "echo hello dissector"' in summaries and "EXIT 0" in summaries


@needs_tshark
@needs_capture
def test_the_framing_preference_changes_the_decoding(tmp_path: Path) -> None:
    # a line capture, the dissector generated for length: the preference corrects it
    lua, pcap = captured_with_dissector(tmp_path, "tcp4", "line", "length")
    number = FRAMING_NAMES.index("line") + 1
    rows = tshark_fields(lua, pcap, "netlab.summary", options=("-o", f"netlab.framing:{number}"))
    assert any('EXEC "echo hello dissector"' in row[0] for row in rows)


@needs_tshark
def test_tshark_shows_each_datagram_of_a_segmented_udp_send(tmp_path: Path) -> None:
    """A loopback capture of a GSO send is one UDP packet of several datagrams: the dissector shows each."""
    datagrams = [b"".join(seq_wire.encode(seq_wire.DatagramType.DATA, 0, 9, 50 + index, 3, 256, bytes(1164)))
                 for index in range(3)]
    datagrams.append(b"".join(seq_wire.encode(seq_wire.DatagramType.DATA, seq_wire.FLAG_MESSAGE_END, 9, 53, 3, 256,
                                              b"last")))
    single = b"".join(seq_wire.encode(seq_wire.DatagramType.ACK, 0, 9, 0, 53, 256, b""))
    frames = [Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=4343, dport=5555) / Raw(payload)
              for payload in (b"".join(datagrams), single)]
    pcap = tmp_path / "segmented.pcap"
    wrpcap(str(pcap), frames)
    lua = tmp_path / "netlab.lua"
    lua.write_text(generate_dissector(4242, 4343))
    rows = tshark_fields(lua, pcap, "netlab.sequencing.sequence", "netlab.summary")
    assert rows[0][0] == "50,51,52,53"  # four datagrams in the first packet, each with its own header
    assert [item for item in rows[0][1].split(",") if item.startswith("UDP")] == [
        f"UDP DATA seq={sequence} ack=3" for sequence in (50, 51, 52, 53)]
    assert rows[1][0] == "0" and rows[1][1] == "UDP ACK seq=0 ack=53"  # a lone datagram is one, as before
