"""TCP reassembly, frame splitting and packet rows, from synthetic segments (no root needed)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from netlab.inspect.analyze import analyze, describe_message
from netlab.inspect.stream import FrameSplitter, SegmentKind, StreamReassembler
from netlab.proto.framing import LengthFramer, Role
from netlab.proto.messages import STDERR, STDOUT, AuthOk, Challenge, Exit, Input, Output, Request

REQUEST = LengthFramer(Role.CLIENT).encode(Request(3, ("ls", "-l"), "ls -l"))
REPLY = LengthFramer(Role.SERVER).encode(Output(3, STDOUT, b"x" * 312)) + LengthFramer(Role.SERVER).encode(
    Exit(3, exit_status=0))


def test_in_order_segments_deliver_at_once() -> None:
    stream = StreamReassembler(1001)
    delivery = stream.add(1001, b"abc")
    assert (delivery.kind, delivery.data) == (SegmentKind.IN_ORDER, b"abc")
    assert stream.add(1004, b"def").data == b"def"


def test_a_retransmission_delivers_nothing_and_is_named() -> None:
    stream = StreamReassembler(1)
    stream.add(1, b"hello")
    delivery = stream.add(1, b"hello")
    assert (delivery.kind, delivery.data) == (SegmentKind.RETRANSMIT, b"")
    partial = stream.add(4, b"lo world")
    assert (partial.kind, partial.data) == (SegmentKind.PARTIAL_RETRANSMIT, b" world")


def test_out_of_order_segments_wait_for_the_gap() -> None:
    stream = StreamReassembler(100)
    assert stream.add(106, b"world").kind is SegmentKind.OUT_OF_ORDER
    assert stream.gap
    assert stream.add(103, b"lo ").kind is SegmentKind.OUT_OF_ORDER
    delivery = stream.add(100, b"hel")
    assert delivery.data == b"hello world"
    assert not stream.gap


def test_sequence_numbers_wrap_around_two_to_the_32() -> None:
    stream = StreamReassembler(2**32 - 2)
    assert stream.add(2**32 - 2, b"ab").data == b"ab"
    assert stream.add(0, b"cd").data == b"cd"
    assert stream.offset_of(2) == 4


def test_frame_splitter_joins_frames_across_pieces_and_splits_merged_ones() -> None:
    splitter = FrameSplitter()
    data = REQUEST + REPLY
    messages = []
    for index in range(0, len(data), 7):
        messages += splitter.feed(data[index : index + 7])
    assert messages == [Request(3, ("ls", "-l"), "ls -l"), Output(3, STDOUT, b"x" * 312), Exit(3, exit_status=0)]
    assert splitter.pending is None
    assert FrameSplitter().feed(REPLY) == messages[1:]


def test_frame_splitter_gives_up_on_bytes_that_are_not_length_framing() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"echo oneecho two") == []
    assert splitter.failure is not None
    assert splitter.feed(REQUEST) == []


def test_describe_message() -> None:
    assert describe_message(Request(3, ("ls", "-l"), "ls -l")) == 'EXEC id=3 "ls -l"'
    assert describe_message(Output(3, STDOUT, b"x" * 312)) == "STDOUT 312 B"
    assert describe_message(Exit(3, exit_status=0)) == "EXIT 0"
    assert describe_message(Exit(3, exit_status=None, signal=9)) == "EXIT signal 9"
    assert describe_message(Output(3, STDERR, b"e")) == "STDERR 1 B"
    assert describe_message(Input(3, b"")) == "INPUT end"
    assert describe_message(Challenge(bytes(32))) == "CHALLENGE"
    assert describe_message(AuthOk()) == "AUTH_OK"


def _segment(time: float, source: int, destination: int, flags: str, seq: int, ack: int, payload: bytes = b""):
    packet = Ether(bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") /
                         TCP(sport=source, dport=destination, flags=flags, seq=seq, ack=ack) / payload))
    packet.time = time
    return packet


def test_rows_are_relative_and_decode_messages_that_span_segments() -> None:
    client, server = 50000, 6969
    reply_cut = 100
    packets = [
        _segment(10.0, client, server, "S", 5000, 0),
        _segment(10.1, server, client, "SA", 9000, 5001),
        _segment(10.2, client, server, "A", 5001, 9001),
        _segment(10.3, client, server, "PA", 5001, 9001, REQUEST),
        _segment(10.4, server, client, "A", 9001, 5001 + len(REQUEST), REPLY[:reply_cut]),
        _segment(10.5, server, client, "PA", 9001 + reply_cut, 5001 + len(REQUEST), REPLY[reply_cut:]),
        _segment(10.6, server, client, "PA", 9001 + reply_cut, 5001 + len(REQUEST), REPLY[reply_cut:]),
    ]
    rows = analyze(packets)
    assert [row.flags for row in rows[:3]] == ["SYN", "SYN,ACK", "ACK"]
    assert [(row.sequence, row.acknowledgement) for row in rows[:4]] == [(0, None), (0, 1), (1, 1), (1, 1)]
    assert rows[3].content == ['EXEC id=3 "ls -l"']
    assert rows[3].length == len(REQUEST)
    assert rows[4].content == [f"(frame continues: {reply_cut} of {4 + 5 + 312} B)"]
    assert rows[5].content == ["STDOUT 312 B", "EXIT 0"]
    assert rows[5].sequence == 1 + reply_cut
    assert rows[6].notes == ["RETRANSMIT"]
    assert rows[6].content == []
    assert abs(rows[6].time - 0.6) < 1e-6


def test_a_retried_syn_is_marked() -> None:
    rows = analyze([_segment(1.0, 50001, 6969, "S", 77, 0), _segment(2.0, 50001, 6969, "S", 77, 0)])
    assert rows[0].notes == []
    assert rows[1].notes == ["RETRANSMIT"]


def test_raw_bytes_show_as_data() -> None:
    rows = analyze([
        _segment(1.0, 50002, 6969, "S", 1, 0),
        _segment(1.1, 50002, 6969, "PA", 2, 1, b"echo oneecho two"),
    ])
    assert rows[1].content == ["DATA 16 B 'echo oneecho two'"]
