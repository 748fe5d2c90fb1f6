"""The length framing and the binary codec, pinned byte by byte.

One table of (message, exact frame bytes) drives both directions: the encoder
must produce the bytes, the decoder must give back the message. The bytes are
written out by hand from docs/protocol.md, never computed by the code under
test. Property tests then check round trips and that slicing the stream never
changes what is decoded.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.errors import LocalProtocolError, RemoteProtocolError
from netlab.proto import codec
from netlab.proto.codec import decode_message, encode_message
from netlab.proto.framing import LengthFramer, Role, make_framer
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
from netlab.testing.protocol import feed, split_at

PROPERTY = settings(max_examples=60, deadline=None)

SHA_OF_HI = bytes.fromhex("98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4")
ZEROS_32 = "00" * 32


def frame(*hex_parts: str) -> bytes:
    """Bytes from hex pieces written field by field (spaces ignored)."""
    return bytes.fromhex("".join(hex_parts).replace(" ", ""))


# (message, the whole length frame: 4-byte length, type byte, fields)
LENGTH_TABLE: list[tuple[Message, bytes]] = [
    (
        Request(1, ("echo", "hi"), "echo hi", digest=True),
        frame(
            "00000021",
            "01",
            "00000001",
            "00000000",
            "01",
            "0002",
            "00000004",
            "6563686f",
            "00000002",
            "6869",
            "6563686f206869",
        ),
    ),
    (
        Request(7, ("grüß", "日本"), "grüß 日本", timeout=2.5),
        frame(
            "0000002d",
            "01",
            "00000007",
            "000009c4",
            "00",
            "0002",
            "00000006",
            "6772c3bcc39f",
            "00000006",
            "e697a5e69cac",
            "6772c3bcc39f20e697a5e69cac",
        ),
    ),
    (Request(2, (), "uptime"), frame("00000012", "01", "00000002", "00000000", "00", "0000", "757074696d65")),
    (Output(1, STDOUT, b"hi\n"), frame("00000008", "02", "00000001", "68690a")),
    (Output(3, STDERR, b"\x00\xff\n"), frame("00000008", "03", "00000003", "00ff0a")),
    (Output(0xFFFFFFFF, STDOUT, b""), frame("00000005", "02", "ffffffff")),
    (
        Exit(1, 0, duration=0.021, stdout_bytes=3, stderr_bytes=0, stdout_sha256=SHA_OF_HI),
        frame(
            "0000003f",
            "04",
            "00000001",
            "00",
            "00",
            "0000000000005208",
            "0000000000000003",
            "0000000000000000",
            SHA_OF_HI.hex(),
        ),
    ),
    (
        Exit(2, None, signal=9, duration=1.5, timed_out=True, command_timeout=30.0),
        frame(
            "0000004b",
            "04",
            "00000002",
            "05",
            "09",
            "000000000016e360",
            "0000000000000000",
            "0000000000000000",
            ZEROS_32,
            "00007530",
            "0000000000000000",
        ),
    ),
    (
        Exit(3, None, stdout_bytes=5),
        frame(
            "0000003f",
            "04",
            "00000003",
            "08",
            "00",
            "0000000000000000",
            "0000000000000005",
            "0000000000000000",
            ZEROS_32,
        ),
    ),
    (
        Exit(4, 255, stdout_bytes=1 << 20, stderr_bytes=2, truncated=True, stdout_sha256=bytes(range(32)),
             output_cap=1 << 20),
        frame(
            "0000004b",
            "04",
            "00000004",
            "02",
            "ff",
            "0000000000000000",
            "0000000000100000",
            "0000000000000002",
            bytes(range(32)).hex(),
            "00000000",
            "0000000000100000",
        ),
    ),
    (
        Exit(5, 124, truncated=True, timed_out=True, command_timeout=2.5, output_cap=64 << 20),
        frame(
            "0000004b",
            "04",
            "00000005",
            "06",
            "7c",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            ZEROS_32,
            "000009c4",
            "0000000004000000",
        ),
    ),
    (
        Request(6, ("cat",), "cat", stdin=True),
        frame("00000016", "01", "00000006", "00000000", "02", "0001", "00000003", "636174", "636174"),
    ),
    (Input(6, b"data\n"), frame("0000000a", "06", "00000006", "646174610a")),
    (Input(6, b""), frame("00000005", "06", "00000006")),
    (Signal(6, "INT"), frame("00000008", "07", "00000006", "494e54")),
    (
        Error(5, ErrorCode.COMMAND_REFUSED, "'rm' is not allowed"),
        frame("0000001a", "05", "00000005", "0002", "27726d27206973206e6f7420616c6c6f776564"),
    ),
    (Error(0, ErrorCode.IDLE_TIMEOUT, ""), frame("00000007", "05", "00000000", "0009")),
    (Error(9, ErrorCode.AUTH_FAILED, "erroné"), frame("0000000e", "05", "00000009", "0004", "6572726f6ec3a9")),
    (Challenge(bytes(range(32))), frame("00000021", "10", bytes(range(32)).hex())),
    (Authenticate(bytes(range(0xE0, 0x100))), frame("00000021", "11", bytes(range(0xE0, 0x100)).hex())),
    (AuthOk(), frame("00000001", "12")),
]
TABLE_IDS = [f"{index}-{type(message).__name__}" for index, (message, _) in enumerate(LENGTH_TABLE)]


def decode_all(data: bytes, *, max_frame: int = 256 * 1024) -> list[Any]:
    framer = make_framer("length", Role.CLIENT, max_frame)
    framer.receive_data(data)
    events: list[Any] = []
    while (event := framer.next_message()) is not NEED_DATA:
        events.append(event)
        if event is END_OF_STREAM:
            break
    return events


@pytest.mark.parametrize(("message", "wire"), LENGTH_TABLE, ids=TABLE_IDS)
def test_length_framer_encodes_the_table_bytes(message: Message, wire: bytes) -> None:
    for role in Role:
        assert make_framer("length", role).encode(message) == wire
    assert encode_message(message) == wire[4:]


@pytest.mark.parametrize(("message", "wire"), LENGTH_TABLE, ids=TABLE_IDS)
def test_length_framer_decodes_the_table_bytes(message: Message, wire: bytes) -> None:
    assert decode_all(wire) == [message]
    assert decode_message(wire[4:]) == message


@pytest.mark.parametrize(("message", "wire"), LENGTH_TABLE, ids=TABLE_IDS)
def test_message_type_is_the_type_byte_on_the_wire_and_has_a_name(message: Message, wire: bytes) -> None:
    assert codec.message_type(message) == wire[4]
    assert wire[4] in codec.TYPE_NAMES


def test_the_type_names_are_the_documented_ones() -> None:
    assert codec.TYPE_NAMES == {
        0x01: "REQUEST", 0x02: "STDOUT", 0x03: "STDERR", 0x04: "EXIT", 0x05: "ERROR", 0x06: "INPUT",
        0x07: "SIGNAL", 0x10: "CHALLENGE", 0x11: "AUTHENTICATE", 0x12: "AUTH_OK",
    }


def test_the_whole_table_as_one_stream_decodes_in_order() -> None:
    stream = b"".join(wire for _, wire in LENGTH_TABLE)
    assert decode_all(stream) == [message for message, _ in LENGTH_TABLE]


def test_error_codes_are_stable_on_the_wire() -> None:
    assert {code.name: int(code) for code in ErrorCode} == {
        "BAD_REQUEST": 1,
        "COMMAND_REFUSED": 2,
        "AUTH_REQUIRED": 3,
        "AUTH_FAILED": 4,
        "SERVER_BUSY": 5,
        "SHUTTING_DOWN": 6,
        "INTERNAL": 7,
        "REQUEST_TIMEOUT": 8,
        "IDLE_TIMEOUT": 9,
    }
    assert ErrorCode.COMMAND_REFUSED.label == "command-refused"


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.label)
def test_every_error_code_round_trips(code: ErrorCode) -> None:
    wire = frame("00000009", "05", "0000000c", f"{int(code):04x}", "6f6b")
    assert make_framer("length", Role.SERVER).encode(Error(12, code, "ok")) == wire
    assert decode_all(wire) == [Error(12, code, "ok")]


# -- malformed input: always RemoteProtocolError, as early as possible ---------

MALFORMED_BODIES = {
    "empty body": "",
    "unknown type 0x00": "00",
    "unknown type 0x7f": "7f 00000001",
    "output without its id": "02 000000",
    "request header cut": "01 00000001 0000",
    "request argc past the end": "01 00000001 00000000 00 0002 00000001 61",
    "argument length past the end": "01 00000001 00000000 00 0001 000000ff 61",
    "request line not UTF-8": "01 00000001 00000000 00 0000 ff",
    "argument not UTF-8": "01 00000001 00000000 00 0001 00000001 c3",
    "unknown request flag": "01 00000001 00000000 04 0000 6c73",
    "error message not UTF-8": "05 00000001 0001 80",
    "unknown error code": "05 00000001 0063",
    "error header cut": "05 000000",
    "exit one byte short": "04 00000001 00 00" + "00" * 24 + "00" * 31,
    "exit one byte long": "04 00000001 00 00" + "00" * 24 + "00" * 33,
    "unknown exit flag": "04 00000001 10 00" + "00" * 24 + "00" * 32,
    "timed-out exit without its limits": "04 00000001 04 00" + "00" * 24 + "00" * 32,
    "exit with limits but no limit flag": "04 00000001 00 00" + "00" * 24 + "00" * 32 + "00" * 12,
    "input without its id": "06 000000",
    "signal without a name": "07 00000001",
    "signal name with SIG": "07 00000001 534947494e54",
    "signal name in lower case": "07 00000001 696e74",
    "challenge nonce short": "10" + "00" * 31,
    "challenge nonce long": "10" + "00" * 33,
    "authenticate mac short": "11" + "00" * 31,
    "auth-ok with a body": "12 00",
}


@pytest.mark.parametrize("body", list(MALFORMED_BODIES.values()), ids=list(MALFORMED_BODIES))
def test_malformed_bodies_raise_remote_protocol_error(body: str) -> None:
    raw = frame(body)
    with pytest.raises(RemoteProtocolError):
        decode_message(raw)
    if raw:
        with pytest.raises(RemoteProtocolError):
            decode_all(len(raw).to_bytes(4, "big") + raw)


@pytest.mark.parametrize(
    "header",
    [frame("ffffffff"), frame("00000000"), (1024 + 1).to_bytes(4, "big")],
    ids=["length 0xffffffff", "length 0", "one over max_frame"],
)
def test_a_bad_length_is_refused_as_soon_as_its_four_bytes_arrive(header: bytes) -> None:
    framer = make_framer("length", Role.SERVER, max_frame=1024)
    framer.receive_data(header[:3])
    assert framer.next_message() is NEED_DATA
    framer.receive_data(header[3:])  # no body byte has arrived
    with pytest.raises(RemoteProtocolError):
        framer.next_message()


def test_a_length_of_exactly_max_frame_waits_for_its_body() -> None:
    framer = make_framer("length", Role.CLIENT, max_frame=1024)
    framer.receive_data((1024).to_bytes(4, "big") + b"\x02" + bytes(4))
    assert framer.next_message() is NEED_DATA
    framer.receive_data(bytes(1024 - 5))
    assert framer.next_message() == Output(0, STDOUT, bytes(1024 - 5))


@pytest.mark.parametrize("partial", [b"\x00\x00\x00", frame("00000008", "02", "000000")], ids=["header", "body"])
def test_a_stream_that_ends_inside_a_frame_is_an_error(partial: bytes) -> None:
    framer = make_framer("length", Role.CLIENT)
    framer.receive_data(partial)
    assert framer.next_message() is NEED_DATA
    framer.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        framer.next_message()


def test_a_clean_end_of_stream_after_whole_frames() -> None:
    assert decode_all(frame("00000001", "12")) == [AuthOk()]
    framer = make_framer("length", Role.CLIENT)
    framer.receive_data(frame("00000001", "12"))
    framer.receive_data(b"")
    assert [framer.next_message(), framer.next_message()] == [AuthOk(), END_OF_STREAM]


def test_data_after_the_end_of_stream_is_an_error() -> None:
    framer = make_framer("length", Role.CLIENT)
    framer.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        framer.receive_data(frame("00000001", "12"))


# -- encoding errors: always LocalProtocolError --------------------------------

UNENCODABLE: dict[str, Message] = {
    "request id 2**32": Request(1 << 32, (), "ls"),
    "negative request id": Output(-1, STDOUT, b""),
    "negative timeout": Request(1, (), "ls", timeout=-1.0),
    "NaN timeout": Request(1, (), "ls", timeout=float("nan")),
    "exit status 256": Exit(1, 256),
    "signal 300": Exit(1, None, signal=300),
    "NaN duration": Exit(1, 0, duration=float("nan")),
    "infinite duration": Exit(1, 0, duration=float("inf")),
    "digest of 5 bytes": Exit(1, 0, stdout_sha256=b"12345"),
    "digest of 33 bytes": Exit(1, 0, stdout_sha256=bytes(33)),
    "65536 arguments": Request(1, ("a",) * 65536, "a"),
    "lone surrogate": Request(1, ("\ud800",), "x"),
    "error code 65536": Error(1, 65536, "x"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("message", list(UNENCODABLE.values()), ids=list(UNENCODABLE))
def test_unencodable_messages_raise_local_protocol_error(message: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode_message(message)
    with pytest.raises(LocalProtocolError):
        make_framer("length", Role.SERVER).encode(message)


def test_a_frame_over_max_frame_is_refused_by_the_sender() -> None:
    framer = make_framer("length", Role.SERVER, max_frame=1024)
    assert len(framer.encode(Output(1, STDOUT, bytes(1024 - 5)))) == 4 + 1024
    with pytest.raises(LocalProtocolError):
        framer.encode(Output(1, STDOUT, bytes(1024 - 4)))


def test_the_empty_digest_and_zero_digest_are_the_same_on_the_wire() -> None:
    # 32 zero bytes mean "no digest": they decode as b"" (clients then skip verification).
    wire = make_framer("length", Role.SERVER).encode(Exit(1, 0, stdout_sha256=bytes(32)))
    assert wire == make_framer("length", Role.SERVER).encode(Exit(1, 0))
    assert decode_all(wire) == [Exit(1, 0, stdout_sha256=b"")]


# -- properties -------------------------------------------------------------------

request_ids = st.integers(0, 2**32 - 1)
wire_text = st.text(max_size=12)
requests = st.builds(
    Request,
    request_ids,
    st.lists(wire_text, max_size=4).map(tuple),
    wire_text,
    st.integers(0, 2**32 - 1).map(lambda milliseconds: milliseconds / 1000),
)
outputs = st.builds(Output, request_ids, st.sampled_from([STDOUT, STDERR]), st.binary(max_size=40))
statuses = st.one_of(
    st.tuples(st.integers(0, 255), st.none()),
    st.tuples(st.none(), st.integers(0, 255)),
    st.tuples(st.none(), st.none()),
)
digests = st.one_of(st.just(b""), st.binary(min_size=32, max_size=32).filter(lambda digest: any(digest)))
counts = st.integers(0, 2**64 - 1)
exits = st.builds(
    lambda request_id, status, microseconds, out, err, digest, truncated, timed_out: Exit(
        request_id, status[0], status[1], microseconds / 1_000_000, out, err, digest, truncated, timed_out
    ),
    request_ids,
    statuses,
    # a duration is a float of seconds: it survives the wire's whole microseconds exactly
    # below 2**50 us (35 years); above that the float itself has no single microsecond
    st.integers(0, 2**50),
    counts,
    counts,
    digests,
    st.booleans(),
    st.booleans(),
)
errors = st.builds(Error, request_ids, st.sampled_from(list(ErrorCode)), wire_text)
thirty_two_bytes = st.binary(min_size=32, max_size=32)
messages = st.one_of(
    requests,
    outputs,
    exits,
    errors,
    st.builds(Challenge, thirty_two_bytes),
    st.builds(Authenticate, thirty_two_bytes),
    st.just(AuthOk()),
)


@PROPERTY
@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    assert decode_message(encode_message(message)) == message
    assert decode_all(make_framer("length", Role.SERVER).encode(message)) == [message]


# Output data on both sides of the size up to which decoding copies a bytearray slice twice.
large_outputs = st.builds(Output, request_ids, st.sampled_from([STDOUT, STDERR]),
                          st.integers(4090, 4200).map(lambda size: bytes(range(256)) * (size // 256) + b"x" * (size % 256)))


@PROPERTY
@given(st.one_of(messages, large_outputs))
def test_the_length_frame_fast_paths_give_the_general_paths_bytes(message: Message) -> None:
    """encode_frame's shortcuts (Output, the usual Exit, Request) are byte for byte the body behind its length."""
    body = encode_message(message)
    general = len(body).to_bytes(4, "big") + body
    assert codec.encode_frame(message) == general
    assert b"".join(codec.encode_frame_parts(message)) == general
    # decoded where it lies in a received bytes object and in the framer's own receive area: the same message
    assert codec.decode_body(general, 4, len(general)) == message
    receiver = LengthFramer(Role.CLIENT if type(message) is not Request else Role.SERVER)
    receiver.get_buffer(len(general))[: len(general)] = general
    receiver.buffer_updated(len(general))
    assert receiver.next_message() == message


@PROPERTY
@given(outputs, exits, st.sampled_from(["length", "line", "ack", "raw"]))
def test_a_reply_encoded_in_one_step_is_the_two_frames_in_turn(output: Output, end: Exit, framing: str) -> None:
    """encode_reply (one output chunk and its Exit at once) gives exactly encode(output) + encode(end)."""
    if framing == "length":
        assert codec.encode_reply_frames(output, end) == codec.encode_frame(output) + codec.encode_frame(end)
    one_by_one = make_framer(framing, Role.SERVER)
    try:
        expected = one_by_one.encode(output) + one_by_one.encode(end)
    except LocalProtocolError:
        with pytest.raises(LocalProtocolError):
            make_framer(framing, Role.SERVER).encode_reply(output, end)
        return
    assert make_framer(framing, Role.SERVER).encode_reply(output, end) == expected


@PROPERTY
@given(outputs, exits, st.data())
def test_a_reply_read_in_one_step_is_the_two_messages_in_turn(output: Output, end: Exit, data: st.DataObject) -> None:
    """next_reply takes an output chunk and the usual Exit of one request whole, or nothing (next_message then)."""
    if data.draw(st.booleans()):
        end = dataclasses.replace(end, request_id=output.request_id)
    wire = codec.encode_frame(output) + codec.encode_frame(end)
    expected = decode_all(wire)
    in_area = data.draw(st.booleans())
    framer = LengthFramer(Role.CLIENT)
    if in_area:  # in the framer's own receive area, as a socket fills it
        framer.get_buffer(len(wire))[: len(wire)] = wire
        framer.buffer_updated(len(wire))
    else:
        framer.receive_data(wire)
    usual = end.exit_status is not None and end.signal is None and not (end.truncated or end.timed_out)  # flags 0
    reply = framer.next_reply(output.request_id)
    if usual and end.request_id == output.request_id:
        assert reply == (output, end) and list(reply) == expected
    else:
        assert reply is None
        assert [framer.next_message(), framer.next_message()] == expected
    assert framer.next_reply(output.request_id) is NEED_DATA


def test_a_reply_is_read_in_one_step_only_when_both_frames_are_whole_and_of_the_request() -> None:
    wire = codec.encode_frame(Output(3, STDOUT, b"hi\n")) + codec.encode_frame(Exit(3, 0))
    for cut in range(len(wire)):  # a reply that has not arrived whole is left to next_message
        framer = LengthFramer(Role.CLIENT)
        if cut:
            framer.receive_data(wire[:cut])
        assert framer.next_reply(3) is (NEED_DATA if cut == 0 else None)
    framer = LengthFramer(Role.CLIENT)
    framer.receive_data(wire)
    assert framer.next_reply(4) is None  # another request's: next_message (and the session) say what it is
    assert framer.next_reply(3) == (Output(3, STDOUT, b"hi\n"), Exit(3, 0))
    followed_by_error = codec.encode_frame(Output(3, STDERR, b"x")) + codec.encode_frame(
        Error(3, ErrorCode.INTERNAL, "no"))
    framer.receive_data(followed_by_error)
    assert framer.next_reply(3) is None and framer.next_message() == Output(3, STDERR, b"x")
    framer = LengthFramer(Role.CLIENT, max_frame=8)  # a frame over max_frame is refused by next_message
    framer.receive_data(codec.encode_frame(Output(3, STDOUT, b"0123456789")) + codec.encode_frame(Exit(3, 0)))
    assert framer.next_reply(3) is None
    with pytest.raises(RemoteProtocolError, match="outside 1..8"):
        framer.next_message()
    framer = LengthFramer(Role.CLIENT)
    framer.receive_data(b"")
    assert framer.next_reply(3) is None and framer.next_message() is END_OF_STREAM


def test_a_reply_over_max_frame_is_refused_like_its_frames() -> None:
    framer = make_framer("length", Role.SERVER, max_frame=1024)
    assert framer.encode_reply(Output(1, STDOUT, bytes(1024 - 5)), Exit(1, 0)) == \
        framer.encode(Output(1, STDOUT, bytes(1024 - 5))) + framer.encode(Exit(1, 0))
    with pytest.raises(LocalProtocolError, match="1024-byte maximum"):
        framer.encode_reply(Output(1, STDOUT, bytes(1024 - 4)), Exit(1, 0))
    tiny = make_framer("length", Role.SERVER, max_frame=40)  # an Exit body is 63 bytes: it is refused as on its own
    with pytest.raises(LocalProtocolError, match="a 63-byte frame exceeds the 40-byte maximum"):
        tiny.encode(Exit(1, 0))
    with pytest.raises(LocalProtocolError, match="a 63-byte frame exceeds the 40-byte maximum"):
        tiny.encode_reply(Output(1, STDOUT, b"hi"), Exit(1, 0))
    with pytest.raises(LocalProtocolError):
        framer.encode_reply(Output(2**32, STDOUT, b"hi"), Exit(2**32, 0))


@PROPERTY
@given(message_list=st.lists(messages, min_size=1, max_size=6), data=st.data())
def test_slicing_the_stream_never_changes_the_messages(
    message_list: list[Message],
    data: st.DataObject,
) -> None:
    sender = make_framer("length", Role.SERVER)
    stream = b"".join(sender.encode(message) for message in message_list)
    cuts = data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=12))
    expected = [*message_list, END_OF_STREAM]
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))], split_at(stream, cuts)):
        assert feed(LengthFramer(Role.CLIENT), chunks, close=True) == expected

    # Trailing data: the start of one more frame decodes nothing more ...
    trailing = sender.encode(data.draw(messages))
    keep = data.draw(st.integers(1, len(trailing) - 1))
    receiver = LengthFramer(Role.CLIENT)
    assert feed(receiver, split_at(stream + trailing[:keep], cuts)) == message_list
    # ... and ending the stream there is an error, not a silent loss.
    receiver.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        receiver.next_message()


def test_the_protocol_doc_tables_match_the_codec(protocol_doc_text: str) -> None:
    documented_codes = re.findall(r"^\| +(\d+) \| `([a-z-]+)` \|", protocol_doc_text, re.MULTILINE)
    assert [(int(number), label) for number, label in documented_codes] == [
        (int(code), code.label) for code in ErrorCode
    ]
    documented_types = re.findall(
        r"^\| `0x([0-9a-f]{2})` \| (\w+)[^|]*\| (?:client|server) \|", protocol_doc_text, re.MULTILINE
    )
    assert {int(number, 16): name for number, name in documented_types} == {
        codec.TYPE_REQUEST: "Request",
        codec.TYPE_STDOUT: "Output",
        codec.TYPE_STDERR: "Output",
        codec.TYPE_EXIT: "Exit",
        codec.TYPE_ERROR: "Error",
        codec.TYPE_INPUT: "Input",
        codec.TYPE_SIGNAL: "Signal",
        codec.TYPE_CHALLENGE: "Challenge",
        codec.TYPE_AUTHENTICATE: "Authenticate",
        codec.TYPE_AUTH_OK: "AuthOk",
    }
    documented_flags = re.findall(
        r"^\| `0x([0-9a-f]{2})` \| (signaled|truncated|timed out|no status) \|", protocol_doc_text, re.MULTILINE
    )
    assert {int(bit, 16): name for bit, name in documented_flags} == {
        codec.EXIT_FLAG_SIGNALED: "signaled",
        codec.EXIT_FLAG_TRUNCATED: "truncated",
        codec.EXIT_FLAG_TIMED_OUT: "timed out",
        codec.EXIT_FLAG_NO_STATUS: "no status",
    }


@pytest.mark.parametrize(
    "wrap", [lambda buffer: buffer, memoryview], ids=["the bytearray itself", "a memoryview of it"]
)
def test_the_framer_copies_a_receive_buffer_the_caller_may_reuse(wrap: Callable[[bytearray], Any]) -> None:
    first, second = Output(1, STDOUT, b"first"), Exit(1, 0)
    sender = make_framer("length", Role.SERVER)
    reused = bytearray(sender.encode(first) + sender.encode(second)[:7])
    receiver = make_framer("length", Role.CLIENT)
    receiver.receive_data(wrap(reused))
    reused[:] = bytes(len(reused))  # the caller's next recv_into overwrites its buffer
    assert receiver.next_message() == first
    receiver.receive_data(sender.encode(second)[7:])
    assert [receiver.next_message(), receiver.next_message()] == [second, NEED_DATA]
