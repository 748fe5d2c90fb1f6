"""netlab's wire formats as scapy layers, so scapy dissects netlab traffic by itself.

How this works: each format is declared as data (``fields_desc``), byte for
byte as :mod:`netlab.proto.codec` (the ``length`` framing) and
:mod:`netlab.proto.seq.wire` (the sequenced UDP header) write it. Computed
fields default to ``None`` and are filled in ``post_build``: a frame's length,
the UDP header's SACK count and CRC32. A TCP payload is a :class:`NetlabStream`
(a list of frames, since one segment may hold several); each
:class:`NetlabFrame` is the 4-byte length and the type byte, and its payload is
the body layer the type names. :func:`bind_netlab_ports` wires them to the
ports in use. A frame cut by a segment boundary dissects as far as its bytes go;
whole messages come from reassembling the stream (see ``stream.py``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import Any, ClassVar

from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    FieldLenField,
    FlagsField,
    IntField,
    LongField,
    PacketListField,
    ShortEnumField,
    StrField,
    StrLenField,
    XIntField,
    XLongField,
    XStrFixedLenField,
)
from scapy.layers.inet import TCP, UDP
from scapy.packet import Packet, bind_layers

from netlab.proto import codec
from netlab.proto.messages import ErrorCode
from netlab.proto.seq import wire as seq_wire
from netlab.transport.address import DEFAULT_PORT

#: Type byte -> name, as the codec names them.
MESSAGE_TYPES = codec.TYPE_NAMES
EXIT_FLAG_NAMES = ["SIGNALED", "TRUNCATED", "TIMED_OUT", "NO_STATUS"]
REQUEST_FLAG_NAMES = ["DIGEST", "STDIN"]
DATAGRAM_TYPES = {member.value: member.name for member in seq_wire.DatagramType}
DATAGRAM_FLAG_NAMES = ["MESSAGE_END", "FIN", "ACK_NOW"]
ERROR_CODES = {code.value: code.name for code in ErrorCode}


class NetlabArgument(Packet):
    """One argv element of a REQUEST: 4-byte length, then UTF-8."""

    name = "netlab argument"
    fields_desc = [
        FieldLenField("length", None, length_of="value", fmt="!I"),
        StrLenField("value", b"", length_from=lambda packet: packet.length),
    ]

    def extract_padding(self, data: bytes) -> tuple[bytes, bytes]:
        return b"", data


class NetlabRequest(Packet):
    """REQUEST body: id, timeout (ms), flags, argc, argv, then the typed line to the end."""

    name = "netlab REQUEST"
    fields_desc = [
        IntField("request_id", 1),
        IntField("timeout_ms", 0),
        FlagsField("flags", 0, 8, REQUEST_FLAG_NAMES),
        FieldLenField("argc", None, count_of="argv", fmt="!H"),
        PacketListField("argv", [], NetlabArgument, count_from=lambda packet: packet.argc),
        StrField("line", b""),
    ]


class NetlabOutput(Packet):
    """STDOUT or STDERR body: the request id, then output bytes to the end."""

    name = "netlab OUTPUT"
    fields_desc = [IntField("request_id", 1), StrField("data", b"")]


def _stopped_by_a_limit(packet: Packet) -> bool:
    """An EXIT with the TRUNCATED or TIMED_OUT flag carries the limits that stopped the command."""
    return bool(int(packet.flags) & (codec.EXIT_FLAG_TRUNCATED | codec.EXIT_FLAG_TIMED_OUT))


class NetlabExit(Packet):
    """EXIT body: 62 bytes after the type byte, 74 with the limits (TRUNCATED or TIMED_OUT)."""

    name = "netlab EXIT"
    fields_desc = [
        IntField("request_id", 1),
        FlagsField("flags", 0, 8, EXIT_FLAG_NAMES),
        ByteField("code", 0),
        LongField("duration_us", 0),
        LongField("stdout_bytes", 0),
        LongField("stderr_bytes", 0),
        XStrFixedLenField("stdout_sha256", codec.NO_SHA256, length=codec.SHA256_SIZE),
        ConditionalField(IntField("command_timeout_ms", 0), _stopped_by_a_limit),
        ConditionalField(LongField("output_cap", 0), _stopped_by_a_limit),
    ]


class NetlabInput(Packet):
    """INPUT body: the request id, then bytes for the command's stdin to the end (none: end of input)."""

    name = "netlab INPUT"
    fields_desc = [IntField("request_id", 1), StrField("data", b"")]


class NetlabSignal(Packet):
    """SIGNAL body: the request id, then the signal's name without SIG (ASCII, e.g. INT) to the end."""

    name = "netlab SIGNAL"
    fields_desc = [IntField("request_id", 1), StrField("name", b"INT")]


class NetlabError(Packet):
    """ERROR body: request id (0 = the connection), code, UTF-8 message to the end."""

    name = "netlab ERROR"
    fields_desc = [
        IntField("request_id", 0),
        ShortEnumField("code", int(ErrorCode.INTERNAL), ERROR_CODES),
        StrField("message", b""),
    ]


class NetlabChallenge(Packet):
    """CHALLENGE body: the server's 32-byte nonce."""

    name = "netlab CHALLENGE"
    fields_desc = [XStrFixedLenField("nonce", bytes(codec.NONCE_SIZE), length=codec.NONCE_SIZE)]


class NetlabAuthenticate(Packet):
    """AUTHENTICATE body: the client's 32-byte HMAC."""

    name = "netlab AUTHENTICATE"
    fields_desc = [XStrFixedLenField("mac", bytes(codec.MAC_SIZE), length=codec.MAC_SIZE)]


class NetlabAuthOk(Packet):
    """AUTH_OK: the type byte alone."""

    name = "netlab AUTH_OK"
    fields_desc: ClassVar[list[Any]] = []


BODY_LAYERS: dict[int, type[Packet]] = {
    codec.TYPE_REQUEST: NetlabRequest,
    codec.TYPE_STDOUT: NetlabOutput,
    codec.TYPE_STDERR: NetlabOutput,
    codec.TYPE_EXIT: NetlabExit,
    codec.TYPE_ERROR: NetlabError,
    codec.TYPE_INPUT: NetlabInput,
    codec.TYPE_SIGNAL: NetlabSignal,
    codec.TYPE_CHALLENGE: NetlabChallenge,
    codec.TYPE_AUTHENTICATE: NetlabAuthenticate,
    codec.TYPE_AUTH_OK: NetlabAuthOk,
}


class NetlabFrame(Packet):
    """One ``length``-framed message: 4-byte big-endian length (type + body), type byte."""

    name = "netlab frame"
    fields_desc = [
        IntField("length", None),
        ByteEnumField("type", codec.TYPE_REQUEST, MESSAGE_TYPES),
    ]

    def post_build(self, packet: bytes, payload: bytes) -> bytes:
        if self.length is None:
            packet = struct.pack("!I", len(packet) - 4 + len(payload)) + packet[4:]
        return packet + payload

    def extract_padding(self, data: bytes) -> tuple[bytes, bytes]:
        body_size = max(self.length - 1, 0)
        return data[:body_size], data[body_size:]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return BODY_LAYERS.get(self.type, Packet.guess_payload_class(self, payload))


class NetlabStream(Packet):
    """A TCP payload on a netlab port: the ``length`` frames it holds, in order."""

    name = "netlab stream"
    fields_desc = [PacketListField("frames", [], NetlabFrame)]


class NetlabSackBlock(Packet):
    """One SACK block: the peer holds [acknowledgement + offset, ... + length)."""

    name = "netlab SACK block"
    fields_desc = [IntField("offset", 0), IntField("length", 1)]

    def extract_padding(self, data: bytes) -> tuple[bytes, bytes]:
        return b"", data


class NetlabSequencing(Packet):
    """The sequenced-UDP header (36 bytes + 8 per SACK block); the payload follows."""

    name = "netlab sequencing"
    fields_desc = [
        ByteEnumField("type", seq_wire.DatagramType.DATA, DATAGRAM_TYPES),
        FlagsField("flags", 0, 8, DATAGRAM_FLAG_NAMES),
        FieldLenField("sack_count", None, count_of="sack_blocks", fmt="B"),
        ByteField("version", seq_wire.VERSION),
        XLongField("connection_id", 0),
        LongField("sequence", 0),
        LongField("acknowledgement", 0),
        IntField("window", 0),
        XIntField("checksum", None),
        PacketListField("sack_blocks", [], NetlabSackBlock, count_from=lambda packet: packet.sack_count),
    ]

    def post_build(self, packet: bytes, payload: bytes) -> bytes:
        if self.checksum is None:
            offset = seq_wire.CHECKSUM_OFFSET
            checksum = zlib.crc32(packet[offset + 4 :], zlib.crc32(packet[:offset], zlib.crc32(payload)))
            packet = packet[:offset] + checksum.to_bytes(4, "big") + packet[offset + 4 :]
        return packet + payload

    def checksum_ok(self) -> bool:
        """True when the CRC32 matches the header and payload as received."""
        try:
            seq_wire.decode_header(memoryview(bytes(self)))
        except seq_wire.MalformedDatagram:
            return False
        return True


def bind_netlab_ports(tcp_ports: Iterable[int] = (DEFAULT_PORT,), udp_ports: Iterable[int] = (DEFAULT_PORT,)) -> None:
    """Make scapy dissect netlab traffic on these ports (either direction).

    Args:
        tcp_ports: ports whose TCP payload is ``length``-framed netlab messages.
        udp_ports: ports whose UDP payload starts with the sequencing header.
    """
    for lower, layer, ports in ((TCP, NetlabStream, tcp_ports), (UDP, NetlabSequencing, udp_ports)):
        for port in ports:
            if (lower, port) in _bound:
                continue
            bind_layers(lower, layer, dport=port)
            bind_layers(lower, layer, sport=port)
            _bound.add((lower, port))


_bound: set[tuple[type[Packet], int]] = set()
