"""The text framings (raw, ack, line), every decoder under slicing and fuzzing,
and the worked examples of docs/protocol.md.

Tables of (messages sent, exact wire bytes, messages received) drive both the
encoders and the decoders. Property tests feed the same bytes whole, one byte
at a time, in random slices and with trailing data; raw is the exception that
proves the rule: its messages *are* the receive slices, and that is tested.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlab.errors import LocalProtocolError, RemoteProtocolError, UsageError
from netlab.proto.auth import answer_challenge
from netlab.proto.framing import (
    FRAMERS,
    FRAMING_NAMES,
    Framer,
    LengthFramer,
    Role,
    make_framer,
)
from netlab.proto.messages import (
    END_OF_STREAM,
    NEED_DATA,
    STDERR,
    STDOUT,
    Authenticate,
    AuthOk,
    Challenge,
    Error,
    ErrorCode,
    Exit,
    Input,
    Message,
    Output,
    Request,
    Signal,
)
from netlab.proto.session import Session
from netlab.testing.protocol import DuplexPipe, feed, split_at

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHA_OF_HI = hashlib.sha256(b"hi\n").digest()

Feed = Callable[..., list[Any]]


def client_after_request(framing: str, request_id: int = 1, **kwargs: int) -> Framer:
    """A client framer that has sent request ``request_id`` (its header acked, for ack)."""
    framer = make_framer(framing, Role.CLIENT, **kwargs)
    framer.encode(Request(request_id, ("x",), "x"))
    if framing == "ack":
        framer.receive_data(b"ok\n")
        framer.data_to_send()
    return framer


def all_messages(framer: Framer, data: bytes) -> list[Any]:
    framer.receive_data(data)
    events: list[Any] = []
    while (event := framer.next_message()) is not NEED_DATA and event is not END_OF_STREAM:
        events.append(event)
    return events


def test_make_framer_knows_the_four_framings() -> None:
    assert FRAMING_NAMES == ("raw", "ack", "line", "length")
    for name, framer_class in FRAMERS.items():
        framer = make_framer(name, Role.SERVER, max_frame=4096)
        assert type(framer) is framer_class and framer.max_frame == 4096 and framer.role is Role.SERVER
    with pytest.raises(UsageError, match="raw, ack, line, length"):
        make_framer("json", Role.CLIENT)


def test_receive_sizes_follow_the_framing() -> None:
    assert make_framer("raw", Role.CLIENT).receive_size == 1024  # the tutorial's recv(1024)
    assert make_framer("length", Role.CLIENT).receive_size == 65536
    assert Session(Role.CLIENT, make_framer("raw", Role.CLIENT)).receive_size == 1024


# -- line ---------------------------------------------------------------------------

# (sender, messages sent, exact wire bytes, messages the peer receives)
LINE_TABLE: dict[str, tuple[str, list[Message], bytes, list[Message]]] = {
    "request": ("C", [Request(1, ("echo", "hi"), "echo hi")], b"echo hi\n", [Request(1, (), "echo hi", digest=True)]),
    "stdout line": ("S", [Output(1, STDOUT, b"hi\n")], b"1 hi\n", [Output(1, STDOUT, b"hi\n")]),
    "stderr line": ("S", [Output(1, STDERR, b"oops\n")], b"2 oops\n", [Output(1, STDERR, b"oops\n")]),
    "two lines in one chunk": (
        "S",
        [Output(1, STDOUT, b"a\nb\n")],
        b"1 a\n1 b\n",
        [Output(1, STDOUT, b"a\n"), Output(1, STDOUT, b"b\n")],
    ),
    "partial last line": (
        "S",
        [Output(1, STDOUT, b"par"), Output(1, STDOUT, b"tial\nlast"), Exit(1, 0, duration=0.0015, stdout_bytes=13)],
        b"1 partial\n1-last\n= exit 0 stdout=13 stderr=0 ms=1.500 sha256=\n",
        [Output(1, STDOUT, b"partial\n"), Output(1, STDOUT, b"last"), Exit(1, 0, duration=0.0015, stdout_bytes=13)],
    ),
    "exit with digest": (
        "S",
        [Exit(1, 0, duration=0.021, stdout_bytes=3, stdout_sha256=SHA_OF_HI)],
        b"= exit 0 stdout=3 stderr=0 ms=21.000 sha256=" + SHA_OF_HI.hex().encode() + b"\n",
        [Exit(1, 0, duration=0.021, stdout_bytes=3, stdout_sha256=SHA_OF_HI)],
    ),
    "signal line": (
        "S",
        [Exit(1, None, signal=9, duration=1.0, stderr_bytes=4, truncated=True, timed_out=True, command_timeout=1.0,
              output_cap=4)],
        b"= signal 9 stdout=0 stderr=4 ms=1000.000 sha256= command_timeout_ms=1000 output_cap=4 truncated timeout\n",
        [Exit(1, None, signal=9, duration=1.0, stderr_bytes=4, truncated=True, timed_out=True, command_timeout=1.0,
              output_cap=4)],
    ),
    "partials of both streams flushed before the exit": (
        "S",
        [Output(1, STDOUT, b"out"), Output(1, STDERR, b"warn"), Exit(1, 1)],
        b"1-out\n2-warn\n= exit 1 stdout=0 stderr=0 ms=0.000 sha256=\n",
        [Output(1, STDOUT, b"out"), Output(1, STDERR, b"warn"), Exit(1, 1)],
    ),
    "error line": (
        "S",
        [Error(1, ErrorCode.COMMAND_REFUSED, "'rm' is not allowed")],
        b"! command-refused 'rm' is not allowed\n",
        [Error(1, ErrorCode.COMMAND_REFUSED, "'rm' is not allowed")],
    ),
    "partial flushed before an error": (
        "S",
        [Output(1, STDOUT, b"half"), Error(1, ErrorCode.INTERNAL, "boom")],
        b"1-half\n! internal boom\n",
        [Output(1, STDOUT, b"half"), Error(1, ErrorCode.INTERNAL, "boom")],
    ),
    "newline in an error message": (
        "S",
        [Error(1, ErrorCode.BAD_REQUEST, "two\nlines")],
        b"! bad-request two lines\n",
        [Error(1, ErrorCode.BAD_REQUEST, "two lines")],
    ),
    "output that looks like a reply end": (
        "S",
        [Output(1, STDOUT, b"= exit 0\n! internal x\n")],
        b"1 = exit 0\n1 ! internal x\n",
        [Output(1, STDOUT, b"= exit 0\n"), Output(1, STDOUT, b"! internal x\n")],
    ),
    "binary output": (
        "S",
        [Output(1, STDOUT, b"\xff\x00\r\n")],
        b"1 \xff\x00\r\n",
        [Output(1, STDOUT, b"\xff\x00\r\n")],
    ),
}


@pytest.mark.parametrize(("sender", "sent", "wire", "received"), LINE_TABLE.values(), ids=list(LINE_TABLE))
def test_line_encoder_writes_the_table_bytes(
    sender: str, sent: list[Message], wire: bytes, received: list[Message]
) -> None:
    framer = make_framer("line", Role.CLIENT if sender == "C" else Role.SERVER)
    assert b"".join(framer.encode(message) for message in sent) == wire


@pytest.mark.parametrize(("sender", "sent", "wire", "received"), LINE_TABLE.values(), ids=list(LINE_TABLE))
def test_line_decoder_reads_the_table_bytes(
    sender: str, sent: list[Message], wire: bytes, received: list[Message]
) -> None:
    receiver = make_framer("line", Role.SERVER) if sender == "C" else client_after_request("line")
    assert all_messages(receiver, wire) == received


def test_line_server_skips_blank_lines_and_carriage_returns() -> None:
    assert all_messages(make_framer("line", Role.SERVER), b"\r\n  \nls -l\r\nuptime\n") == [
        Request(1, (), "ls -l", digest=True),
        Request(2, (), "uptime", digest=True),
    ]


def test_line_error_with_no_request_outstanding_is_connection_level() -> None:
    fresh = make_framer("line", Role.CLIENT)
    assert all_messages(fresh, b"! server-busy try later\n") == [Error(0, ErrorCode.SERVER_BUSY, "try later")]
    after_reply = client_after_request("line")
    assert all_messages(after_reply, b"= exit 0 stdout=0 stderr=0 ms=0.000 sha256=\n! idle-timeout bye\n") == [
        Exit(1, 0),
        Error(0, ErrorCode.IDLE_TIMEOUT, "bye"),
    ]


def test_line_splits_output_lines_longer_than_max_frame() -> None:
    # 64 bytes per line: "1-" or "1 ", then at most 62 output bytes, then the newline.
    sender = make_framer("line", Role.SERVER, max_frame=64)
    long_line, unfinished = b"a" * 62 + b"b" * 62 + b"c" * 5 + b"\n", b"d" * 62 + b"e"
    wire = sender.encode(Output(1, STDOUT, long_line + unfinished)) + sender.encode(Exit(1, 0))
    assert wire.startswith(b"1-" + b"a" * 62 + b"\n1-" + b"b" * 62 + b"\n1 ccccc\n1-" + b"d" * 62 + b"\n1-e\n= exit 0 ")
    receiver = client_after_request("line", max_frame=64)
    *outputs, last = all_messages(receiver, wire)
    assert b"".join(output.data for output in outputs) == long_line + unfinished and last == Exit(1, 0)


LINE_UNENCODABLE: dict[str, tuple[Role, Message]] = {
    "newline in a command": (Role.CLIENT, Request(1, (), "ls\nrm -rf /")),
    "carriage return in a command": (Role.CLIENT, Request(1, (), "ls\r")),
    "blank command": (Role.CLIENT, Request(1, (), " \t")),
    "exit without a status": (Role.SERVER, Exit(1, None)),
    "authentication": (Role.SERVER, Challenge(bytes(32))),
}


@pytest.mark.parametrize(("role", "message"), LINE_UNENCODABLE.values(), ids=list(LINE_UNENCODABLE))
def test_line_refuses_what_it_cannot_say(role: Role, message: Message) -> None:
    with pytest.raises(LocalProtocolError):
        make_framer("line", role).encode(message)


LINE_MALFORMED: dict[str, tuple[Role, bytes]] = {
    "command not UTF-8": (Role.SERVER, b"ls \xff\n"),
    "unknown reply prefix": (Role.CLIENT, b"3 x\n"),
    "prefix without separator": (Role.CLIENT, b"1x\n"),
    "empty reply line": (Role.CLIENT, b"\n"),
    "unknown exit kind": (Role.CLIENT, b"= status 0\n"),
    "exit without a number": (Role.CLIENT, b"= exit\n"),
    "exit with a bad count": (Role.CLIENT, b"= exit 0 stdout=lots\n"),
    "exit with a bad digest": (Role.CLIENT, b"= exit 0 sha256=abc\n"),
    "exit line not UTF-8": (Role.CLIENT, b"= exit 0 \xff\n"),
    "unknown error code": (Role.CLIENT, b"! no-such-code hello\n"),
    "line over max_frame": (Role.SERVER, b"x" * 65 + b"\n"),
    "over max_frame, newline far away": (Role.CLIENT, b"1 " + b"x" * 70),
}


@pytest.mark.parametrize(("role", "wire"), LINE_MALFORMED.values(), ids=list(LINE_MALFORMED))
def test_line_malformed_input_is_a_remote_protocol_error(role: Role, wire: bytes) -> None:
    receiver = make_framer("line", role, max_frame=64)
    with pytest.raises(RemoteProtocolError):
        all_messages(receiver, wire)


@pytest.mark.parametrize("role", list(Role))
def test_line_stream_ending_mid_line_is_an_error(role: Role) -> None:
    receiver = make_framer("line", role)
    receiver.receive_data(b"1 unfinished")
    assert receiver.next_message() is NEED_DATA
    receiver.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        receiver.next_message()


# -- ack -----------------------------------------------------------------------------

# (steps: sender + messages encoded together, exact transcript, what each side receives)
ACK_TABLE: dict[str, tuple[list[tuple[str, list[Message]]], list[tuple[str, bytes]], dict[str, list[Message]]]] = {
    "request and reply": (
        [
            ("C", [Request(1, ("echo", "hi"), "echo hi")]),
            ("S", [Output(1, STDOUT, b"hi\n"), Exit(1, 0, stdout_bytes=3)]),
        ],
        [("C", b"7\n"), ("S", b"ok\n"), ("C", b"echo hi"), ("S", b"3\n"), ("C", b"ok\n"), ("S", b"hi\n")],
        {"S": [Request(1, (), "echo hi")], "C": [Output(1, STDOUT, b"hi\n"), Exit(1, None)]},
    ),
    "stdout then stderr in one body": (
        [
            ("C", [Request(1, (), "make")]),
            ("S", [Output(1, STDOUT, b"out\n"), Output(1, STDERR, b"err\n"), Exit(1, 2)]),
        ],
        [("C", b"4\n"), ("S", b"ok\n"), ("C", b"make"), ("S", b"8\n"), ("C", b"ok\n"), ("S", b"out\nerr\n")],
        {"S": [Request(1, (), "make")], "C": [Output(1, STDOUT, b"out\nerr\n"), Exit(1, None)]},
    ),
    "zero-size bodies": (
        [("C", [Request(1, (), "")]), ("S", [Exit(1, 0)])],
        [("C", b"0\n"), ("S", b"ok\n0\n"), ("C", b"ok\n")],
        {"S": [Request(1, (), "")], "C": [Exit(1, None)]},
    ),
    "an error is a text body": (
        [("C", [Request(1, (), "rm x")]), ("S", [Error(1, ErrorCode.COMMAND_REFUSED, "'rm' is not allowed")])],
        [
            ("C", b"4\n"),
            ("S", b"ok\n"),
            ("C", b"rm x"),
            ("S", b"27\n"),
            ("C", b"ok\n"),
            ("S", b"error: 'rm' is not allowed\n"),
        ],
        {"S": [Request(1, (), "rm x")], "C": [Output(1, STDOUT, b"error: 'rm' is not allowed\n"), Exit(1, None)]},
    ),
    "a second message waits for the first ok": (
        [("C", [Request(1, (), "a"), Request(2, (), "bb")])],
        [("C", b"1\n"), ("S", b"ok\n"), ("C", b"a2\n"), ("S", b"ok\n"), ("C", b"bb")],
        {"S": [Request(1, (), "a"), Request(2, (), "bb")], "C": []},
    ),
}


@pytest.mark.parametrize(("steps", "transcript", "received"), ACK_TABLE.values(), ids=list(ACK_TABLE))
@pytest.mark.parametrize("chunk_size", [None, 1], ids=["whole", "bytewise"])
def test_ack_exchange_matches_the_table(
    steps: list[tuple[str, list[Message]]],
    transcript: list[tuple[str, bytes]],
    received: dict[str, list[Message]],
    chunk_size: int | None,
) -> None:
    pipe = DuplexPipe.of_framers("ack", chunk_size=chunk_size)
    for sender, messages in steps:
        pipe.send(sender, *messages)
    assert pipe.merged_transcript() == transcript
    assert pipe.received["S"] == received["S"]
    assert _merge_outputs(pipe.received["C"]) == received["C"]


def _merge_outputs(messages: list[object]) -> list[object]:
    """Join consecutive Output chunks of one stream (their split follows the receives)."""
    merged: list[object] = []
    for message in messages:
        previous = merged[-1] if merged else None
        if isinstance(message, Output) and isinstance(previous, Output) and previous.stream == message.stream:
            merged[-1] = Output(previous.request_id, previous.stream, previous.data + message.data)
        else:
            merged.append(message)
    return merged


def test_ack_receiver_acks_a_header_and_reads_exactly_its_body() -> None:
    server = make_framer("ack", Role.SERVER)
    server.receive_data(b"7\necho hi")  # a sender that did not wait for the ok
    assert server.data_to_send() == b"ok\n"
    assert [server.next_message(), server.next_message()] == [Request(1, (), "echo hi"), NEED_DATA]
    client = client_after_request("ack")
    client.receive_data(b"3\nhi\n")
    assert client.data_to_send() == b"ok\n"
    assert all_messages(client, b"") == [Output(1, STDOUT, b"hi\n"), Exit(1, None)]


def test_ack_streams_a_reply_larger_than_max_frame_in_chunks() -> None:
    client = client_after_request("ack", max_frame=16)
    client.receive_data(b"40\n" + b"a" * 15)
    assert client.data_to_send() == b"ok\n"
    first = all_messages(client, b"b" * 15)
    rest = all_messages(client, b"c" * 10)
    assert first == [Output(1, STDOUT, b"a" * 15), Output(1, STDOUT, b"b" * 15)]
    assert rest == [Output(1, STDOUT, b"c" * 10), Exit(1, None)]


ACK_MALFORMED: dict[str, tuple[Role, bytes]] = {
    "header not decimal": (Role.SERVER, b"12a\n"),
    "negative size": (Role.SERVER, b"-1\n"),
    "empty header line": (Role.SERVER, b"\n"),
    "a long line without newline": (Role.SERVER, b"1234567890123"),
    "request over max_frame": (Role.SERVER, b"65\n"),
    "reply over the reply limit": (Role.CLIENT, b"9999999999999\n"),
    "ok when nothing waits for it": (Role.SERVER, b"ok\n"),
    "command not UTF-8": (Role.SERVER, b"2\n\xc3("),
}


@pytest.mark.parametrize(("role", "wire"), ACK_MALFORMED.values(), ids=list(ACK_MALFORMED))
def test_ack_malformed_input_is_a_remote_protocol_error(role: Role, wire: bytes) -> None:
    receiver = make_framer("ack", role, max_frame=64)
    with pytest.raises(RemoteProtocolError):
        all_messages(receiver, wire)


@pytest.mark.parametrize("partial", [b"12", b"5\nab"], ids=["header", "body"])
def test_ack_stream_ending_mid_message_is_an_error(partial: bytes) -> None:
    server = make_framer("ack", Role.SERVER)
    server.receive_data(partial)
    assert server.next_message() is NEED_DATA
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        server.next_message()


@pytest.mark.parametrize("message", [Challenge(bytes(32)), AuthOk()], ids=["challenge", "auth-ok"])
@pytest.mark.parametrize("framing", ["raw", "ack"])
def test_raw_and_ack_cannot_carry_authentication(framing: str, message: Message) -> None:
    with pytest.raises(LocalProtocolError):
        make_framer(framing, Role.SERVER).encode(message)


# -- raw -------------------------------------------------------------------------------

RAW_ENCODER_TABLE: dict[str, tuple[Role, Message, bytes]] = {
    "request is the bare command": (Role.CLIENT, Request(1, ("echo", "hi"), "echo hi"), b"echo hi"),
    "stdout as it comes": (Role.SERVER, Output(1, STDOUT, b"hi\n"), b"hi\n"),
    "stderr mixed in": (Role.SERVER, Output(1, STDERR, b"warn\n"), b"warn\n"),
    "exit sends nothing": (Role.SERVER, Exit(1, 0, stdout_bytes=3), b""),
    "error as a text line": (Role.SERVER, Error(1, ErrorCode.COMMAND_REFUSED, "no"), b"error: no\n"),
}


@pytest.mark.parametrize(("role", "message", "wire"), RAW_ENCODER_TABLE.values(), ids=list(RAW_ENCODER_TABLE))
def test_raw_encoder_writes_the_table_bytes(role: Role, message: Message, wire: bytes) -> None:
    assert make_framer("raw", role).encode(message) == wire


# (receiving role, the receives as they happened, messages)
RAW_DECODER_TABLE: dict[str, tuple[Role, list[bytes], list[Message]]] = {
    "one receive is one request": (Role.SERVER, [b"echo hi"], [Request(1, (), "echo hi")]),
    "surrounding whitespace dropped": (Role.SERVER, [b" echo hi\n"], [Request(1, (), "echo hi")]),
    "blank receive ignored": (Role.SERVER, [b" \n", b"ls"], [Request(1, (), "ls")]),
    "two sends merged into one receive": (Role.SERVER, [b"echo aecho b"], [Request(1, (), "echo aecho b")]),
    "one receive is one reply, no status": (
        Role.CLIENT,
        [b"hi\n"],
        [Output(1, STDOUT, b"hi\n"), Exit(1, None, stdout_bytes=3)],
    ),
    "a reply cut in two is two replies": (
        Role.CLIENT,
        [b"part1", b"part2"],
        [
            Output(1, STDOUT, b"part1"),
            Exit(1, None, stdout_bytes=5),
            Output(1, STDOUT, b"part2"),
            Exit(1, None, stdout_bytes=5),
        ],
    ),
}


@pytest.mark.parametrize(("role", "receives", "messages"), RAW_DECODER_TABLE.values(), ids=list(RAW_DECODER_TABLE))
def test_raw_decoder_reads_the_table(
    role: Role, receives: list[bytes], messages: list[Message]
) -> None:
    receiver = make_framer("raw", role) if role is Role.SERVER else client_after_request("raw")
    assert feed(receiver, receives, close=True) == [*messages, END_OF_STREAM]


def test_raw_command_not_utf8_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        make_framer("raw", Role.SERVER).receive_data("grüß".encode()[:3])  # cut inside 'ü'


def test_raw_two_quick_commands_merge_into_one_request() -> None:
    client = make_framer("raw", Role.CLIENT)
    sent = client.encode(Request(1, (), "echo a")) + client.encode(Request(2, (), "echo b"))
    server = make_framer("raw", Role.SERVER)
    assert all_messages(server, sent) == [Request(1, (), "echo aecho b")]


commands_without_spaces = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8)


@PROPERTY
@given(commands=st.lists(commands_without_spaces, min_size=1, max_size=5), data=st.data())
def test_raw_messages_are_the_receive_slices_not_the_sends(
    commands: list[str], data: st.DataObject
) -> None:
    client = make_framer("raw", Role.CLIENT)
    stream = b"".join(client.encode(Request(index + 1, (), command)) for index, command in enumerate(commands))
    chunks = split_at(stream, data.draw(st.lists(st.integers(1, len(stream)), max_size=6)))
    requests = feed(make_framer("raw", Role.SERVER), chunks)
    assert [request.line.encode() for request in requests] == chunks
    assert [request.request_id for request in requests] == list(range(1, len(chunks) + 1))

    replies = feed(client_after_request("raw", request_id=7), chunks)
    assert replies == [
        message for chunk in chunks for message in (Output(7, STDOUT, chunk), Exit(7, None, stdout_bytes=len(chunk)))
    ]


# -- every decoder under slicing -------------------------------------------------------------------

line_commands = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=16).filter(
    str.strip
)
output_pieces = st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]), st.binary(max_size=24)), max_size=6)
reply_ends = st.one_of(
    st.builds(
        lambda status, signal, microseconds, out, err, digest, truncated, timed_out: Exit(
            1,
            None if signal else status,
            status if signal else None,
            microseconds / 1_000_000,
            out,
            err,
            digest,
            truncated,
            timed_out,
        ),
        st.integers(0, 255),
        st.booleans(),
        st.integers(0, 10**9),
        st.integers(0, 2**64),
        st.integers(0, 2**64),
        st.sampled_from([b"", SHA_OF_HI]),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        Error,
        st.just(1),
        st.sampled_from(list(ErrorCode)),
        st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=12),
    ),
)


def _slicings(stream: bytes, data: st.DataObject) -> list[list[bytes]]:
    cuts = data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=10))
    return [[stream], [stream[index : index + 1] for index in range(len(stream))], split_at(stream, cuts)]


@PROPERTY
@given(commands=st.lists(line_commands, min_size=1, max_size=5), data=st.data())
def test_line_server_decodes_the_same_requests_however_sliced(
    commands: list[str], data: st.DataObject
) -> None:
    client = make_framer("line", Role.CLIENT)
    stream = b"".join(client.encode(Request(index + 1, (), command)) for index, command in enumerate(commands))
    expected = [Request(index + 1, (), command, digest=True) for index, command in enumerate(commands)]
    for chunks in _slicings(stream, data):
        assert feed(make_framer("line", Role.SERVER), chunks, close=True) == [*expected, END_OF_STREAM]
    trailing = feed(make_framer("line", Role.SERVER), split_at(stream + b"unfinished", [len(stream)]))
    assert trailing == expected


@PROPERTY
@given(pieces=output_pieces, end=reply_ends, data=st.data())
def test_line_client_decodes_the_same_reply_however_sliced(
    pieces: list[tuple[int, bytes]], end: Message, data: st.DataObject
) -> None:
    server = make_framer("line", Role.SERVER)
    stream = b"".join(server.encode(Output(1, number, chunk)) for number, chunk in pieces) + server.encode(end)
    decoded = [feed(client_after_request("line"), chunks) for chunks in _slicings(stream, data)]
    assert decoded[0] == decoded[1] == decoded[2]
    assert feed(client_after_request("line"), [stream, b"1 trailing"]) == decoded[0]

    # The bytes of each stream arrive unchanged; the end of reply says the same.
    *outputs, last = decoded[0]
    for stream_number in (STDOUT, STDERR):
        sent = b"".join(chunk for number, chunk in pieces if number == stream_number)
        got = b"".join(output.data for output in outputs if output.stream == stream_number)
        assert got == sent
    if isinstance(end, Exit):  # the line carries milliseconds with three decimals
        assert round(last.duration * 1_000_000) == round(end.duration * 1_000_000)
        end = dataclasses.replace(end, duration=last.duration)
    assert last == end


ack_bodies = st.text(st.characters(codec="utf-8"), max_size=30)


@PROPERTY
@given(commands=st.lists(ack_bodies, min_size=1, max_size=5), data=st.data())
def test_ack_server_decodes_the_same_requests_however_sliced(
    commands: list[str], data: st.DataObject
) -> None:
    bodies = [command.encode() for command in commands]
    stream = b"".join(b"%d\n%s" % (len(body), body) for body in bodies)
    expected = [Request(index + 1, (), command.strip()) for index, command in enumerate(commands)]
    for chunks in _slicings(stream, data):
        server = make_framer("ack", Role.SERVER)
        assert feed(server, chunks, close=True) == [*expected, END_OF_STREAM]
        assert server.data_to_send() == b"ok\n" * len(commands)
    for trailing in (b"12", b"5\nab"):
        assert feed(make_framer("ack", Role.SERVER), [stream + trailing]) == expected


@PROPERTY
@given(body=st.binary(max_size=80), data=st.data())
def test_ack_client_decodes_the_same_reply_however_sliced(
    body: bytes, data: st.DataObject
) -> None:
    stream = b"%d\n%s" % (len(body), body)
    expected = ([Output(1, STDOUT, body)] if body else []) + [Exit(1, None)]
    for chunks in _slicings(stream, data):
        client = client_after_request("ack")
        assert _merge_outputs(feed(client, chunks)) == expected
        assert client.data_to_send() == b"ok\n"
    assert _merge_outputs(feed(client_after_request("ack"), [stream + b"12"])) == expected


# -- every decoder under fuzzing: RemoteProtocolError or messages, nothing else --------

MESSAGE_TYPES = (Request, Output, Exit, Error, Input, Signal, Challenge, Authenticate, AuthOk)
DECODERS = [(framing, role) for framing in FRAMING_NAMES for role in Role]
SAMPLE_STREAMS = {
    "raw": b"echo hi",
    "ack": b"7\necho hiok\n3\nhi\n",
    "line": b"echo hi\n1 hi\n2-x\n= exit 0 stdout=3 stderr=0 ms=1.000 sha256=\n! internal boom\n",
    "length": LengthFramer(Role.SERVER).encode(Request(1, ("a",), "a"))
    + LengthFramer(Role.SERVER).encode(Output(1, STDOUT, b"hi"))
    + LengthFramer(Role.SERVER).encode(Exit(1, 0)),
}


@st.composite
def hostile_bytes(draw: st.DrawFn, framing: str) -> bytes:
    """Arbitrary bytes, or a valid stream with some bytes overwritten or dropped."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=120))
    stream = bytearray(SAMPLE_STREAMS[framing])
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(stream) - 1))
        if draw(st.booleans()):
            stream[position] = draw(st.integers(0, 255))
        else:
            del stream[position]
    return bytes(stream)


def _session_for(framing: str, role: Role) -> Session:
    session = Session(role, make_framer(framing, role, max_frame=64))
    if role is Role.CLIENT:
        session.send(Request(1, ("echo", "hi"), "echo hi"))
    return session


@PROPERTY
@pytest.mark.parametrize(("framing", "role"), DECODERS, ids=[f"{f}-{r.value}" for f, r in DECODERS])
@given(data=st.data())
def test_any_bytes_give_messages_or_a_remote_protocol_error(
    framing: str, role: Role, data: st.DataObject
) -> None:
    wire = data.draw(hostile_bytes(framing))
    chunks = split_at(wire, data.draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=5)))
    for receiver in (make_framer(framing, role, max_frame=64), _session_for(framing, role)):
        try:
            events = feed(receiver, chunks, close=True)
        except RemoteProtocolError:
            continue
        *messages, last = events
        assert last is END_OF_STREAM
        assert all(isinstance(message, MESSAGE_TYPES) for message in messages)


# -- docs/protocol.md: its worked examples are what the code sends ---------------------

ECHO_HI_EXIT = Exit(1, 0, duration=0.001234, stdout_bytes=3, stdout_sha256=SHA_OF_HI)
ECHO_HI: list[tuple[str, Message]] = [
    ("C", Request(1, ("echo", "hi"), "echo hi", digest=True)),
    ("S", Output(1, STDOUT, b"hi\n")),
    ("S", ECHO_HI_EXIT),
]
DOC_NONCE = bytes(range(32))
DOC_TOKEN = b"s3cret"

# name -> (framing, session options, steps, what the client and the server receive)
DOC_EXCHANGES: dict[str, tuple[str, dict[str, Any], list[tuple[str, Message]], dict[str, list[Any]]]] = {
    "raw-exchange": (
        "raw",
        {},
        ECHO_HI,
        {"S": [Request(1, (), "echo hi")], "C": [Output(1, STDOUT, b"hi\n"), Exit(1, None, stdout_bytes=3)]},
    ),
    "ack-exchange": (
        "ack",
        {},
        ECHO_HI,
        {"S": [Request(1, (), "echo hi")], "C": [Output(1, STDOUT, b"hi\n"), Exit(1, None)]},
    ),
    "line-exchange": (
        "line",
        {},
        ECHO_HI,
        {"S": [Request(1, (), "echo hi", digest=True)], "C": [Output(1, STDOUT, b"hi\n"), ECHO_HI_EXIT]},
    ),
    "length-exchange": (
        "length",
        {},
        ECHO_HI,
        {"S": [Request(1, ("echo", "hi"), "echo hi", digest=True)], "C": [Output(1, STDOUT, b"hi\n"), ECHO_HI_EXIT]},
    ),
    "length-auth": (
        "length",
        {"auth_required": True},
        [
            ("S", Challenge(DOC_NONCE)),
            ("C", answer_challenge(DOC_TOKEN, Challenge(DOC_NONCE))),
            ("S", AuthOk()),
        ],
        {
            "S": [answer_challenge(DOC_TOKEN, Challenge(DOC_NONCE))],
            "C": [Challenge(DOC_NONCE), AuthOk()],
        },
    ),
}
DOC_EXCHANGES["length-stdin-exchange"] = (
    "length",
    {},
    [
        ("C", Request(1, ("cat",), "cat", stdin=True)),
        ("C", Input(1, b"hi\n")),
        ("C", Input(1, b"")),
        ("S", Output(1, STDOUT, b"hi\n")),
        ("S", Exit(1, 0, duration=0.001234, stdout_bytes=3)),
    ],
    {
        "S": [Request(1, ("cat",), "cat", stdin=True), Input(1, b"hi\n"), Input(1, b"")],
        "C": [Output(1, STDOUT, b"hi\n"), Exit(1, 0, duration=0.001234, stdout_bytes=3)],
    },
)
DOC_EXCHANGES["length-signal-exchange"] = (
    "length",
    {},
    [
        ("C", Request(2, ("sleep", "30"), "sleep 30")),
        ("C", Signal(2, "INT")),
        ("S", Exit(2, None, signal=2, duration=0.001234)),
    ],
    {
        "S": [Request(2, ("sleep", "30"), "sleep 30"), Signal(2, "INT")],
        "C": [Exit(2, None, signal=2, duration=0.001234)],
    },
)
# name -> (sender, one message in the length framing)
DOC_FRAMES: dict[str, tuple[str, Message]] = {
    "length-request-unicode": ("C", Request(7, ("grüß", "日本"), "grüß 日本", timeout=2.5)),
    "length-output-stderr": ("S", Output(7, STDERR, b"oops\n")),
    "length-exit-signal": (
        "S",
        Exit(7, None, signal=9, duration=1.5, stdout_bytes=65536, timed_out=True, command_timeout=1.5),
    ),
    "length-exit-truncated": (
        "S",
        Exit(8, 0, duration=0.25, stdout_bytes=1 << 20, stdout_sha256=SHA_OF_HI, truncated=True, output_cap=1 << 20),
    ),
    "length-exit-no-status": ("S", Exit(9, None, stdout_bytes=5)),
    "length-error": ("S", Error(7, ErrorCode.COMMAND_REFUSED, "'rm' is not allowed")),
    "length-connection-error": ("S", Error(0, ErrorCode.IDLE_TIMEOUT, "idle")),
}


def test_protocol_doc_shows_exactly_the_known_examples(protocol_doc_examples: dict[str, Any]) -> None:
    assert set(protocol_doc_examples) == set(DOC_EXCHANGES) | set(DOC_FRAMES)


@pytest.mark.parametrize("name", list(DOC_EXCHANGES))
def test_protocol_doc_exchange_is_what_the_code_sends(
    name: str, protocol_doc_examples: dict[str, Any]
) -> None:
    framing, options, steps, received = DOC_EXCHANGES[name]
    pipe = DuplexPipe.of_sessions(framing, **options)
    for sender, message in steps:
        pipe.send(sender, message)
    assert protocol_doc_examples[name] == pipe.merged_transcript()
    assert pipe.received == received


@pytest.mark.parametrize("name", list(DOC_FRAMES))
def test_protocol_doc_frame_decodes_to_its_message(name: str, protocol_doc_examples: dict[str, Any]) -> None:
    sender, message = DOC_FRAMES[name]
    ((direction, wire),) = protocol_doc_examples[name]
    assert direction == sender
    assert all_messages(LengthFramer(Role.CLIENT if sender == "S" else Role.SERVER), wire) == [message]
    assert LengthFramer(Role.SERVER if sender == "S" else Role.CLIENT).encode(message) == wire


# -- receiving in place: get_buffer / buffer_updated ---------------------------------

def feed_in_place(framer: Framer, chunks: list[bytes], sizes: list[int], *, close: bool = False) -> list[Any]:
    """Feed ``chunks`` through ``get_buffer``/``buffer_updated`` (each chunk's asked size from ``sizes``)."""
    events: list[Any] = []
    for index, chunk in enumerate(chunks):
        buffer = framer.get_buffer(max(len(chunk), sizes[index % len(sizes)]))
        assert len(buffer) >= len(chunk)
        buffer[: len(chunk)] = chunk
        framer.buffer_updated(len(chunk))
        while (event := framer.next_message()) is not NEED_DATA and event is not END_OF_STREAM:
            events.append(event)
    if close:
        framer.buffer_updated(0)
        events.append(framer.next_message())
    return events


reply_messages = st.lists(
    st.builds(Output, st.just(1), st.sampled_from([STDOUT, STDERR]), st.binary(max_size=3000)), max_size=6
)


@PROPERTY
@given(outputs=reply_messages, data=st.data())
@pytest.mark.parametrize("framing", ["length", "line"])
def test_receiving_in_place_gives_what_receive_data_gives(
    framing: str, outputs: list[Output], data: st.DataObject
) -> None:
    server = make_framer(framing, Role.SERVER)
    stream = b"".join(server.encode(output) for output in outputs) + server.encode(Exit(1, 0))
    chunks = split_at(stream, data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=12)))
    sizes = data.draw(st.lists(st.integers(1, 9000), min_size=1, max_size=4))
    expected = feed(client_after_request(framing), chunks, close=True)
    assert type(expected[-2]) is Exit and expected[-1] is END_OF_STREAM
    assert feed_in_place(client_after_request(framing), chunks, sizes, close=True) == expected


def test_the_length_receive_area_grows_only_to_fit_a_frame() -> None:
    framer = LengthFramer(Role.CLIENT, max_frame=1 << 20)
    frame = LengthFramer(Role.SERVER, max_frame=1 << 20).encode(Output(1, STDOUT, bytes(300_000)))
    events = feed_in_place(framer, [frame[:1000], frame[1000:200_000], frame[200_000:]], [4096])
    assert events == [Output(1, STDOUT, bytes(300_000))]
    assert len(framer.get_buffer(4096)) >= 4096
    assert len(framer._area) <= 2 * len(frame)


def test_receive_data_and_in_place_receives_can_alternate() -> None:
    frames = b"".join(LengthFramer(Role.SERVER).encode(Output(1, STDOUT, bytes([n]) * 50)) for n in range(4))
    framer = LengthFramer(Role.CLIENT)
    framer.receive_data(frames[:70])
    events = feed_in_place(framer, [frames[70:130]], [64])
    framer.receive_data(frames[130:])
    events += all_messages(framer, b"")
    assert events == [Output(1, STDOUT, bytes([n]) * 50) for n in range(4)]


def test_data_after_end_of_stream_is_refused_in_place() -> None:
    framer = LengthFramer(Role.CLIENT)
    framer.buffer_updated(0)
    framer.get_buffer(8)
    with pytest.raises(RemoteProtocolError, match="after end of stream"):
        framer.buffer_updated(4)


@pytest.mark.parametrize("framing", FRAMING_NAMES)
def test_encode_parts_join_to_encode(framing: str) -> None:
    messages: list[Message] = [Output(1, STDOUT, bytes(range(256)) * 300), Output(1, STDERR, b""), Exit(1, 0)]
    for message in messages:
        if framing == "raw" and type(message) is Exit:
            continue
        whole, gathered = make_framer(framing, Role.SERVER), make_framer(framing, Role.SERVER)
        assert b"".join(gathered.encode_parts(message)) == whole.encode(message)
    with pytest.raises(LocalProtocolError, match="exceeds"):
        LengthFramer(Role.SERVER, max_frame=100).encode_parts(Output(1, STDOUT, bytes(200)))
