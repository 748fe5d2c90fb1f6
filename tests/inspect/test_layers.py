"""Build-and-dissect tests for netlab's scapy layers: exact bytes both ways."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from netlab.inspect.layers import (
    NetlabArgument,
    NetlabAuthenticate,
    NetlabAuthOk,
    NetlabChallenge,
    NetlabError,
    NetlabExit,
    NetlabFrame,
    NetlabInput,
    NetlabOutput,
    NetlabRequest,
    NetlabSackBlock,
    NetlabSequencing,
    NetlabSignal,
    NetlabStream,
    bind_netlab_ports,
)
from netlab.proto import codec
from netlab.proto.framing import LengthFramer, Role
from netlab.proto.messages import (
    STDERR,
    STDOUT,
    Authenticate,
    AuthOk,
    Challenge,
    Error,
    ErrorCode,
    Exit,
    Input,
    Output,
    Request,
    Signal,
)
from netlab.proto.seq import wire as seq_wire

SHA = bytes(range(32))

# (scapy layer as built, the same message through netlab's own codec)
CASES = [
    (NetlabFrame(type="REQUEST") / NetlabRequest(request_id=3, timeout_ms=1500,
                                                 argv=[NetlabArgument(value=b"ls"), NetlabArgument(value=b"-l")],
                                                 line=b"ls -l"),
     Request(3, ("ls", "-l"), "ls -l", 1.5)),
    (NetlabFrame(type="STDOUT") / NetlabOutput(request_id=3, data=b"total 0\n"), Output(3, STDOUT, b"total 0\n")),
    (NetlabFrame(type="STDERR") / NetlabOutput(request_id=4, data=b"oops"), Output(4, STDERR, b"oops")),
    (NetlabFrame(type="EXIT") / NetlabExit(request_id=3, code=0, duration_us=4100, stdout_bytes=312,
                                           stdout_sha256=SHA),
     Exit(3, exit_status=0, duration=0.0041, stdout_bytes=312, stdout_sha256=SHA)),
    (NetlabFrame(type="EXIT") / NetlabExit(request_id=5, flags="SIGNALED+TIMED_OUT", code=15,
                                           command_timeout_ms=30000),
     Exit(5, exit_status=None, signal=15, timed_out=True, command_timeout=30.0)),
    (NetlabFrame(type="EXIT") / NetlabExit(request_id=6, flags="TRUNCATED", code=0, stdout_bytes=1000,
                                           output_cap=1000),
     Exit(6, exit_status=0, stdout_bytes=1000, truncated=True, output_cap=1000)),
    (NetlabFrame(type="REQUEST") / NetlabRequest(request_id=8, flags="STDIN", argv=[NetlabArgument(value=b"cat")],
                                                 line=b"cat"),
     Request(8, ("cat",), "cat", stdin=True)),
    (NetlabFrame(type="INPUT") / NetlabInput(request_id=8, data=b"data\n"), Input(8, b"data\n")),
    (NetlabFrame(type="INPUT") / NetlabInput(request_id=8, data=b""), Input(8, b"")),
    (NetlabFrame(type="SIGNAL") / NetlabSignal(request_id=8, name=b"INT"), Signal(8, "INT")),
    (NetlabFrame(type="ERROR") / NetlabError(request_id=7, code="COMMAND_REFUSED", message=b"no rm"),
     Error(7, ErrorCode.COMMAND_REFUSED, "no rm")),
    (NetlabFrame(type="CHALLENGE") / NetlabChallenge(nonce=SHA), Challenge(SHA)),
    (NetlabFrame(type="AUTHENTICATE") / NetlabAuthenticate(mac=SHA[::-1]), Authenticate(SHA[::-1])),
    (NetlabFrame(type="AUTH_OK") / NetlabAuthOk(), AuthOk()),
]


@pytest.mark.parametrize(("layer", "message"), CASES, ids=lambda value: type(value).__name__)
def test_built_layer_matches_the_length_framing_byte_for_byte(layer, message) -> None:
    assert bytes(layer) == LengthFramer(Role.CLIENT).encode(message)


@pytest.mark.parametrize(("layer", "message"), CASES, ids=lambda value: type(value).__name__)
def test_codec_bytes_dissect_into_the_right_fields(layer, message) -> None:
    wire = LengthFramer(Role.CLIENT).encode(message)
    frame = NetlabFrame(wire)
    assert frame.length == len(wire) - 4
    assert frame.type == wire[4]
    assert bytes(frame) == wire
    if not bytes(layer.payload):
        return  # AUTH_OK has no body: scapy leaves the frame without a payload layer
    body = frame.payload
    assert type(body) is type(layer.payload)
    assert bytes(body) == bytes(layer.payload)
    scalar_fields = [f.name for f in body.fields_desc if f.name not in ("argv", "argc")]
    for name in scalar_fields:
        assert body.getfieldval(name) == layer.payload.getfieldval(name), name


def test_request_fields_dissect() -> None:
    wire = bytes.fromhex("0000001d0100000003000005dc010002000000026c73000000022d6c6c73202d6c")
    request = NetlabFrame(wire)[NetlabRequest]
    assert (request.request_id, request.timeout_ms, request.flags, request.argc) == (3, 1500, 1, 2)
    assert request.flags.DIGEST
    assert [argument.value for argument in request.argv] == [b"ls", b"-l"]
    assert request.line == b"ls -l"
    assert codec.decode_message(wire[4:]) == Request(3, ("ls", "-l"), "ls -l", 1.5, digest=True)


def test_one_stream_payload_holds_several_frames_and_a_cut_tail() -> None:
    exit_frame = LengthFramer(Role.SERVER).encode(Exit(1, exit_status=2))
    output_frame = LengthFramer(Role.SERVER).encode(Output(1, STDOUT, b"hi\n"))
    stream = NetlabStream(output_frame + exit_frame + exit_frame[:10])
    assert [frame.type for frame in stream.frames[:2]] == [codec.TYPE_STDOUT, codec.TYPE_EXIT]
    assert stream.frames[0][NetlabOutput].data == b"hi\n"
    assert stream.frames[1][NetlabExit].code == 2
    assert len(stream.frames) == 3  # the third frame is cut: dissected as far as its bytes go


def test_sequencing_header_matches_seq_wire() -> None:
    header, payload = seq_wire.encode(seq_wire.DatagramType.DATA, seq_wire.FLAG_MESSAGE_END, 0xABC, 17, 9, 64,
                                      b"hello", seq_wire.pack_sack_blocks([(11, 13), (15, 16)], 9))
    built = NetlabSequencing(type="DATA", flags="MESSAGE_END", connection_id=0xABC, sequence=17,
                             acknowledgement=9, window=64,
                             sack_blocks=[NetlabSackBlock(offset=2, length=2), NetlabSackBlock(offset=6, length=1)]
                             ) / b"hello"
    assert bytes(built) == header + payload
    dissected = NetlabSequencing(header + payload)
    assert dissected.sack_count == 2
    assert [(block.offset, block.length) for block in dissected.sack_blocks] == [(2, 2), (6, 1)]
    assert dissected.checksum_ok()
    assert bytes(dissected.payload) == b"hello"
    assert seq_wire.decode_header(memoryview(bytes(built))).sequence == 17


def test_a_damaged_datagram_fails_the_checksum() -> None:
    header, payload = seq_wire.encode(seq_wire.DatagramType.ACK, 0, 1, 2, 3, 4)
    damaged = bytearray(header + payload)
    damaged[13] ^= 0x01
    assert not NetlabSequencing(bytes(damaged)).checksum_ok()


def test_bound_ports_make_scapy_dissect_netlab_by_itself() -> None:
    bind_netlab_ports(tcp_ports=[40001], udp_ports=[40002])
    frame = LengthFramer(Role.CLIENT).encode(Request(9, ("echo", "hi"), "echo hi"))
    tcp_packet = Ether(bytes(Ether() / IP(dst="127.0.0.1") / TCP(sport=50000, dport=40001) / frame))
    assert tcp_packet[NetlabStream].frames[0][NetlabRequest].request_id == 9
    reply = Ether(bytes(Ether() / IP() / TCP(sport=40001, dport=50000) / frame))
    assert NetlabStream in reply
    header, payload = seq_wire.encode(seq_wire.DatagramType.PING, 0, 5, 1, 1, 8)
    udp_packet = Ether(bytes(Ether() / IP() / UDP(sport=50000, dport=40002) / (header + payload)))
    assert udp_packet[NetlabSequencing].type == seq_wire.DatagramType.PING
    other = Ether(bytes(Ether() / IP() / TCP(sport=50000, dport=40003) / frame))
    assert NetlabStream not in other
