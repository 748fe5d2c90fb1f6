"""The conversation state machine: what each end may send, and when.

Allowed sequences run through a pair of Sessions joined by an in-memory duplex
pipe. Each forbidden step is checked at both ends: the sender's Session refuses
to send it (LocalProtocolError, state unchanged) and, fed the same message by a
bare framer that checks nothing, the receiver's Session refuses it
(RemoteProtocolError).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.errors import LocalProtocolError, RemoteProtocolError
from netlab.proto.framing import Role, make_framer
from netlab.proto.messages import (
    END_OF_STREAM,
    NEED_DATA,
    NOT_CONTROL,
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
from netlab.proto.session import Session, State
from netlab.testing.protocol import DuplexPipe

NONCE = bytes(range(32))
MAC = bytes(32)


def play(steps: list[tuple[str, Message]], **options: Any) -> Any:
    pipe = DuplexPipe.of_sessions("length", **options)
    for sender, message in steps:
        pipe.send(sender, message)
    return pipe


def inject(session: Session, message: Message) -> list[Any]:
    """Feed ``session`` a message from an unchecked peer; return what it decodes."""
    peer = make_framer("length", Role.SERVER if session.role is Role.CLIENT else Role.CLIENT)
    session.receive_data(peer.encode(message))
    events: list[Any] = []
    while (event := session.next_event()) is not NEED_DATA:
        events.append(event)
    return events


# -- allowed sequences -------------------------------------------------------------------


def test_request_outputs_exit_then_the_next_request() -> None:
    pipe = play(
        [
            ("C", Request(1, ("ls",), "ls")),
            ("S", Output(1, STDOUT, b"a\n")),
            ("S", Output(1, STDERR, b"w\n")),
            ("S", Output(1, STDOUT, b"b\n")),
            ("S", Exit(1, 0, stdout_bytes=4, stderr_bytes=2)),
            ("C", Request(2, ("true",), "true")),
            ("S", Exit(2, 0)),
        ],
    )
    assert pipe.received["S"] == [Request(1, ("ls",), "ls"), Request(2, ("true",), "true")]
    assert pipe.received["C"] == [
        Output(1, STDOUT, b"a\n"),
        Output(1, STDERR, b"w\n"),
        Output(1, STDOUT, b"b\n"),
        Exit(1, 0, stdout_bytes=4, stderr_bytes=2),
        Exit(2, 0),
    ]
    for session in (pipe.client, pipe.server):
        assert session.state is State.IDLE and session.current_request_id == 2


def test_states_during_a_request() -> None:
    pipe = play([("C", Request(3, (), "sleep 1"))])
    assert pipe.client.state is pipe.server.state is State.BUSY
    pipe.send("S", Output(3, STDOUT, b"."))
    assert pipe.client.state is pipe.server.state is State.BUSY
    pipe.send("S", Exit(3, None, signal=15))
    assert pipe.client.state is pipe.server.state is State.IDLE


def test_request_ids_may_skip_but_must_increase() -> None:
    pipe = play(
        [("C", Request(1, (), "a")), ("S", Exit(1, 0)), ("C", Request(10, (), "b")), ("S", Exit(10, 0))]
    )
    assert [message.request_id for message in pipe.received["S"]] == [1, 10]


def test_an_error_ends_a_reply() -> None:
    pipe = play(
        [
            ("C", Request(1, ("rm",), "rm")),
            ("S", Output(1, STDERR, b"thinking\n")),
            ("S", Error(1, ErrorCode.COMMAND_REFUSED, "'rm' is not allowed")),
        ],
    )
    assert pipe.client.state is pipe.server.state is State.IDLE
    pipe.send("C", Request(2, ("ls",), "ls"))
    assert pipe.received["S"][-1] == Request(2, ("ls",), "ls")


def test_the_authentication_flow() -> None:
    pipe = play(
        [
            ("S", Challenge(NONCE)),
            ("C", Authenticate(MAC)),
            ("S", AuthOk()),
            ("C", Request(1, (), "id")),
            ("S", Exit(1, 0)),
        ],
        auth_required=True,
    )
    assert pipe.received["C"] == [Challenge(NONCE), AuthOk(), Exit(1, 0)]
    assert pipe.client.authenticated and pipe.server.authenticated


def test_authentication_states() -> None:
    pipe = play([("S", Challenge(NONCE))], auth_required=True)
    assert pipe.client.state is pipe.server.state is State.CHALLENGED
    pipe.send("C", Authenticate(MAC))
    assert pipe.client.state is pipe.server.state is State.AUTHENTICATING
    pipe.send("S", AuthOk())
    assert pipe.client.state is pipe.server.state is State.IDLE


@pytest.mark.parametrize(
    "before",
    [
        [],
        [("C", Request(1, (), "cat"))],
        [("C", Request(1, (), "cat")), ("S", Output(1, STDOUT, b"x"))],
        [("S", Challenge(NONCE))],
        [("S", Challenge(NONCE)), ("C", Authenticate(MAC))],
    ],
    ids=["idle", "busy", "mid-output", "challenged", "authenticating"],
)
def test_a_connection_level_error_closes_both_ends_from_any_state( before: list[tuple[str, Message]]
) -> None:
    pipe = play([*before, ("S", Error(0, ErrorCode.SHUTTING_DOWN, "bye"))])
    assert pipe.received["C"][-1] == Error(0, ErrorCode.SHUTTING_DOWN, "bye")
    assert pipe.client.state is pipe.server.state is State.CLOSED
    pipe.close("S")
    assert pipe.received["C"][-1] is END_OF_STREAM


def test_a_client_that_sent_before_the_challenge_still_hears_the_refusal() -> None:
    # The client does not know auth is required; the server refuses its request
    # and closes with AUTH_REQUIRED, and the client's session accepts that.
    pipe = DuplexPipe.of_sessions("length", auth_required=True)
    pipe.client.send(Request(1, (), "id"))
    with pytest.raises(RemoteProtocolError, match="authentication"):
        inject(pipe.server, Request(1, (), "id"))
    assert inject(pipe.client, Challenge(NONCE)) == [Challenge(NONCE)]
    pipe.server.send(Error(0, ErrorCode.AUTH_REQUIRED, "send a token"))
    assert inject(pipe.client, Error(0, ErrorCode.AUTH_REQUIRED, "send a token")) == [
        Error(0, ErrorCode.AUTH_REQUIRED, "send a token")
    ]
    assert pipe.client.state is State.CLOSED


# -- forbidden sequences: refused by the sender and by the receiver ---------------------

Step = tuple[str, Message]
AFTER_REQUEST_1: list[Step] = [("C", Request(1, (), "cat"))]
AFTER_REPLY_5: list[Step] = [("C", Request(5, (), "cat")), ("S", Exit(5, 0))]
CLOSED: list[Step] = [("S", Error(0, ErrorCode.IDLE_TIMEOUT, "idle"))]

# (steps that are fine, then the step that is not)
FORBIDDEN: dict[str, tuple[list[tuple[str, Message]], tuple[str, Message]]] = {
    "output before any request": ([], ("S", Output(1, STDOUT, b"x"))),
    "output after the reply ended": (AFTER_REPLY_5, ("S", Output(5, STDOUT, b"x"))),
    "exit before any request": ([], ("S", Exit(1, 0))),
    "second request while busy": (AFTER_REQUEST_1, ("C", Request(2, (), "ls"))),
    "output for the wrong id": (AFTER_REQUEST_1, ("S", Output(2, STDOUT, b"x"))),
    "exit for the wrong id": (AFTER_REQUEST_1, ("S", Exit(2, 0))),
    "error for the wrong id": (AFTER_REQUEST_1, ("S", Error(2, ErrorCode.INTERNAL, "x"))),
    "second exit": (AFTER_REPLY_5, ("S", Exit(5, 0))),
    "replayed request id": (AFTER_REPLY_5, ("C", Request(5, (), "cat"))),
    "request id going back": (AFTER_REPLY_5, ("C", Request(4, (), "cat"))),
    "request id 0": ([], ("C", Request(0, (), "cat"))),
    "challenge after output": (
        [("C", Request(1, (), "cat")), ("S", Output(1, STDOUT, b"x"))],
        ("S", Challenge(NONCE)),
    ),
    "challenge after a reply": (AFTER_REPLY_5, ("S", Challenge(NONCE))),
    "second challenge": ([("S", Challenge(NONCE))], ("S", Challenge(NONCE))),
    "authenticate without a challenge": ([], ("C", Authenticate(MAC))),
    "second authenticate": ([("S", Challenge(NONCE)), ("C", Authenticate(MAC))], ("C", Authenticate(MAC))),
    "auth-ok without an authenticate": ([("S", Challenge(NONCE))], ("S", AuthOk())),
    "auth-ok out of the blue": ([], ("S", AuthOk())),
    "request while challenged": ([("S", Challenge(NONCE))], ("C", Request(1, (), "id"))),
    "request while authenticating": ([("S", Challenge(NONCE)), ("C", Authenticate(MAC))], ("C", Request(1, (), "id"))),
    "request after close": (CLOSED, ("C", Request(1, (), "ls"))),
    "output after close": (AFTER_REQUEST_1 + CLOSED, ("S", Output(1, STDOUT, b"x"))),
    "error after close": (CLOSED, ("S", Error(0, ErrorCode.INTERNAL, "again"))),
    "challenge after close": (CLOSED, ("S", Challenge(NONCE))),
    "client sends output": (AFTER_REQUEST_1, ("C", Output(1, STDOUT, b"x"))),
    "client sends exit": (AFTER_REQUEST_1, ("C", Exit(1, 0))),
    "client sends a challenge": ([], ("C", Challenge(NONCE))),
    "server sends a request": ([], ("S", Request(1, (), "ls"))),
    "server sends authenticate": ([("S", Challenge(NONCE))], ("S", Authenticate(MAC))),
}


@pytest.mark.parametrize(("before", "step"), FORBIDDEN.values(), ids=list(FORBIDDEN))
def test_the_sender_refuses_a_forbidden_step( before: list[tuple[str, Message]], step: tuple[str, Message]
) -> None:
    pipe = play(before)
    sender, message = step
    session = pipe.ends[sender]
    state, request_id = session.state, session.current_request_id
    with pytest.raises(LocalProtocolError):
        session.send(message)
    assert (session.state, session.current_request_id) == (state, request_id)


@pytest.mark.parametrize(("before", "step"), FORBIDDEN.values(), ids=list(FORBIDDEN))
def test_the_receiver_refuses_a_forbidden_step( before: list[tuple[str, Message]], step: tuple[str, Message]
) -> None:
    pipe = play(before)
    sender, message = step
    with pytest.raises(RemoteProtocolError):
        inject(pipe.ends["S" if sender == "C" else "C"], message)


@pytest.mark.parametrize(
    "before",
    [[], [("S", Challenge(NONCE))], [("S", Challenge(NONCE)), ("C", Authenticate(MAC))]],
    ids=["before the challenge", "challenged", "authenticating"],
)
def test_a_server_that_requires_auth_refuses_an_early_request( before: list[tuple[str, Message]]
) -> None:
    pipe = play(before, auth_required=True)
    with pytest.raises(RemoteProtocolError):
        inject(pipe.server, Request(1, (), "id"))
    assert not pipe.server.authenticated and pipe.server.state is not State.BUSY


def test_a_failed_encoding_leaves_the_state_unchanged() -> None:
    client = Session(Role.CLIENT, make_framer("line", Role.CLIENT))
    with pytest.raises(LocalProtocolError):
        client.send(Request(1, (), "ls\nrm -rf /"))
    assert client.state is State.IDLE and client.current_request_id == 0
    assert client.send(Request(1, (), "ls")) == b"ls\n"
    server = Session(Role.SERVER, make_framer("length", Role.SERVER, max_frame=64))
    server.receive_data(make_framer("length", Role.CLIENT).encode(Request(1, (), "ls")))
    assert server.next_event() == Request(1, (), "ls")
    with pytest.raises(LocalProtocolError):
        server.send(Exit(1, 256))
    assert server.state is State.BUSY
    with pytest.raises(LocalProtocolError):
        server.send(Output(1, STDOUT, bytes(100)))  # over max_frame: chunk it
    assert server.send(Exit(1, 0))


def test_the_session_passes_receive_size_and_end_of_stream_through() -> None:
    session = Session(Role.CLIENT, make_framer("length", Role.CLIENT))
    assert session.receive_size == session.framer.receive_size
    assert session.next_event() is NEED_DATA
    session.receive_data(b"")
    assert session.next_event() is END_OF_STREAM


# -- the ack framing's lock-step, through sessions --------------------------------------


def test_ack_lock_step_streams_a_large_reply_and_handles_empty_bodies() -> None:
    pipe = DuplexPipe.of_sessions("ack", max_frame=1024, chunk_size=512)
    reply = bytes(range(256)) * 20  # 5120 bytes: five times max_frame
    pipe.send("C", Request(1, (), "cat big"))
    for start in range(0, len(reply), 2000):
        pipe.send("S", Output(1, STDOUT, reply[start : start + 2000]))
    assert pipe.received["C"] == []  # the ack server holds output until the exit
    pipe.send("S", Exit(1, 0, stdout_bytes=len(reply)))
    *chunks, end = pipe.received["C"]
    assert end == Exit(1, None)
    assert len(chunks) >= 10 and all(len(chunk.data) <= 512 for chunk in chunks)
    assert b"".join(chunk.data for chunk in chunks) == reply

    pipe.send("C", Request(2, (), ""))
    pipe.send("S", Exit(2, 0))
    assert pipe.received["S"] == [Request(1, (), "cat big"), Request(2, (), "")]
    assert pipe.received["C"][-1] == Exit(2, None)
    assert pipe.client.state is pipe.server.state is State.IDLE

    # Lock-step: every header is answered with "ok" before the body moves.
    transcript = pipe.merged_transcript()
    assert [direction for direction, _ in transcript] == ["C", "S", "C", "S", "C", "S", "C", "S", "C"]
    assert transcript[:4] == [("C", b"7\n"), ("S", b"ok\n"), ("C", b"cat big"), ("S", b"5120\n")]
    assert transcript[4:] == [("C", b"ok\n"), ("S", reply), ("C", b"0\n"), ("S", b"ok\n0\n"), ("C", b"ok\n")]


# -- whole conversations over every framing that has boundaries ------------------------

commands = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=10)
replies = st.lists(
    st.tuples(
        commands, st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]), st.binary(min_size=1, max_size=30)), max_size=4)
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=40, deadline=None)
@given(
    framing=st.sampled_from(["ack", "line", "length"]),
    chunk_size=st.one_of(st.none(), st.integers(1, 40)),
    script=replies,
)
def test_conversations_survive_any_delivery_slicing( framing: str, chunk_size: int | None, script: list[tuple[str, list[tuple[int, bytes]]]]
) -> None:
    pipe = DuplexPipe.of_sessions(framing, chunk_size=chunk_size)
    for request_id, (command, outputs) in enumerate(script, start=1):
        pipe.received["C"].clear()
        pipe.send("C", Request(request_id, (command,), command))
        for stream, data in outputs:
            pipe.send("S", Output(request_id, stream, data))
        pipe.send("S", Exit(request_id, 0))
        *chunks, end = pipe.received["C"]
        assert isinstance(end, Exit) and end.request_id == request_id
        assert pipe.received["S"][-1].line == command
        if framing == "ack":  # one stream, in the order the server collected it
            assert b"".join(chunk.data for chunk in chunks) == b"".join(data for _, data in outputs)
        else:
            for stream in (STDOUT, STDERR):
                sent = b"".join(data for number, data in outputs if number == stream)
                assert b"".join(chunk.data for chunk in chunks if chunk.stream == stream) == sent
    assert pipe.client.state is pipe.server.state is State.IDLE


def test_a_reply_sent_in_one_step_is_the_two_sends_in_turn() -> None:
    from netlab.proto.session import _REPLY_TARGETS, TRANSITIONS, Event

    # the composed step is the table's two steps: BUSY -Output-> BUSY -Exit-> IDLE, for the server only
    assert _REPLY_TARGETS[Role.SERVER] == {
        State.BUSY: TRANSITIONS[(TRANSITIONS[(State.BUSY, Event.OUTPUT)], Event.EXIT)]}
    assert _REPLY_TARGETS[Role.CLIENT] == {}
    one_step, two_steps = (Session(Role.SERVER, make_framer("length", Role.SERVER)) for _ in range(2))
    for session in (one_step, two_steps):
        session.receive_data(make_framer("length", Role.CLIENT).encode(Request(7, ("echo", "hi"), "echo hi")))
        assert session.next_event() == Request(7, ("echo", "hi"), "echo hi")
    output, end = Output(7, STDOUT, b"hi\n"), Exit(7, 0, duration=0.25, stdout_bytes=3)
    assert one_step.send_reply(output, end) == two_steps.send(output) + two_steps.send(end)
    assert one_step.state is two_steps.state is State.IDLE
    assert one_step.current_request_id == two_steps.current_request_id == 7


@pytest.mark.parametrize(("state", "output_id", "exit_id"), [
    (State.IDLE, 7, 7), (State.BUSY, 6, 6), (State.BUSY, 7, 6), (State.BUSY, 6, 7), (State.CLOSED, 7, 7)])
def test_a_reply_in_one_step_is_refused_where_either_send_is(state: State, output_id: int, exit_id: int) -> None:
    session = Session(Role.SERVER, make_framer("length", Role.SERVER))
    session.state, session.current_request_id = state, 7
    with pytest.raises(LocalProtocolError):
        session.send_reply(Output(output_id, STDOUT, b"x"), Exit(exit_id, 0))
    client = Session(Role.CLIENT, make_framer("length", Role.CLIENT))
    client.state, client.current_request_id = State.BUSY, 7
    with pytest.raises(LocalProtocolError, match="a client may not send Output"):
        client.send_reply(Output(7, STDOUT, b"x"), Exit(7, 0))


def test_a_reply_that_cannot_be_encoded_leaves_the_session_where_it_was() -> None:
    session = Session(Role.SERVER, make_framer("length", Role.SERVER, max_frame=16))
    session.state, session.current_request_id = State.BUSY, 7
    with pytest.raises(LocalProtocolError):
        session.send_reply(Output(7, STDOUT, bytes(64)), Exit(7, 0))
    assert session.state is State.BUSY


def test_a_reply_read_in_one_step_moves_the_session_as_the_two_messages_do() -> None:
    server = Session(Role.SERVER, make_framer("length", Role.SERVER))
    client = Session(Role.CLIENT, make_framer("length", Role.CLIENT))
    assert client.next_reply() is None  # idle: no reply is due (next_event says what came)
    server.receive_data(client.send(Request(7, ("echo", "hi"), "echo hi")))
    assert server.next_event() == Request(7, ("echo", "hi"), "echo hi")
    assert client.next_reply() is NEED_DATA and client.state is State.BUSY
    reply = (Output(7, STDOUT, b"hi\n"), Exit(7, 0, stdout_bytes=3))
    client.receive_data(server.send_reply(*reply))
    assert client.next_reply() == reply
    assert client.state is State.IDLE and client.current_request_id == 7
    assert client.next_reply() is None and client.next_event() is NEED_DATA


def test_a_reply_for_another_request_is_left_to_next_event_which_refuses_it() -> None:
    client = Session(Role.CLIENT, make_framer("length", Role.CLIENT))
    client.send(Request(7, ("echo", "hi"), "echo hi"))
    wrong = Session(Role.SERVER, make_framer("length", Role.SERVER))
    wrong.state, wrong.current_request_id = State.BUSY, 6
    client.receive_data(wrong.send_reply(Output(6, STDOUT, b"hi\n"), Exit(6, 0)))
    assert client.next_reply() is None and client.state is State.BUSY
    with pytest.raises(RemoteProtocolError, match="output for request 6 while request 7 is running"):
        client.next_event()


def test_the_drawn_diagram_is_the_transition_table() -> None:
    from netlab.proto import session as session_module

    drawn = [line.strip() for line in (session_module.__doc__ or "").splitlines() if "──▶" in line]
    assert drawn == session_module.diagram().splitlines()
    assert len(drawn) == len(session_module.TRANSITIONS)


def test_every_pair_missing_from_the_table_is_refused_by_the_sender() -> None:
    from netlab.proto.session import SENT_BY, TRANSITIONS, Event

    message_for = {
        Event.REQUEST: Request(5, ("ls",), "ls"),
        Event.OUTPUT: Output(1, STDOUT, b"a"),
        Event.EXIT: Exit(1, 0),
        Event.ERROR: Error(1, ErrorCode.BAD_REQUEST, "no"),
        Event.CONNECTION_ERROR: Error(0, ErrorCode.BAD_REQUEST, "no"),
        Event.CHALLENGE: Challenge(NONCE),
        Event.AUTHENTICATE: Authenticate(MAC),
        Event.AUTH_OK: AuthOk(),
        Event.INPUT: Input(1, b"data"),
        Event.SIGNAL: Signal(1, "INT"),
    }
    refused = 0
    for state in State:
        for event in Event:
            if (state, event) in TRANSITIONS:
                continue
            role = SENT_BY[event]
            session = Session(role, make_framer("length", role))
            session.state, session.current_request_id = state, 1
            with pytest.raises(LocalProtocolError):
                session.send(message_for[event])
            assert session.state is state
            refused += 1
    assert refused == len(State) * len(Event) - len(TRANSITIONS)
    # ... and every pair in it is taken, sent and received, to the table's target (the per-class routes
    # the session reads are derived from the table: this checks they hold nothing else)
    for (state, event), target in TRANSITIONS.items():
        role = SENT_BY[event]
        peer = Role.CLIENT if role is Role.SERVER else Role.SERVER
        sender, receiver = Session(role, make_framer("length", role)), Session(peer, make_framer("length", peer))
        for session in (sender, receiver):
            session.state, session.current_request_id = state, 1
        receiver.receive_data(sender.send(message_for[event]))
        assert receiver.next_event() == message_for[event]
        assert sender.state is receiver.state is target


def test_input_and_signal_name_the_running_request_and_may_arrive_just_after_its_end() -> None:
    client = Session(Role.CLIENT, make_framer("length", Role.CLIENT))
    server = Session(Role.SERVER, make_framer("length", Role.SERVER))
    server.receive_data(client.send(Request(1, ("cat",), "cat", stdin=True)))
    assert server.next_event() == Request(1, ("cat",), "cat", stdin=True)
    server.receive_data(client.send(Input(1, b"data")) + client.send(Signal(1, "INT")))
    assert server.next_control_event() == Input(1, b"data")
    assert server.next_control_event() == Signal(1, "INT")
    assert server.state is State.BUSY
    client.receive_data(server.send(Exit(1, 0)))
    assert client.next_event() == Exit(1, 0)
    # sent before the client saw the Exit: still valid, the server drops it
    server.receive_data(client.send(Input(1, b"")))
    assert server.next_event() == Input(1, b"")
    with pytest.raises(LocalProtocolError):
        client.send(Input(2, b"x"))  # no such request
    server.receive_data(make_framer("length", Role.CLIENT).encode(Signal(7, "INT")))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_a_pipelined_request_stays_buffered_while_one_runs() -> None:
    client = Session(Role.CLIENT, make_framer("length", Role.CLIENT))
    server = Session(Role.SERVER, make_framer("length", Role.SERVER))
    first = client.send(Request(1, ("sleep", "1"), "sleep 1"))
    second = make_framer("length", Role.CLIENT).encode(Request(2, ("echo", "hi"), "echo hi"))
    server.receive_data(first + second)
    assert server.next_event() == Request(1, ("sleep", "1"), "sleep 1")
    assert server.next_control_event() is NOT_CONTROL
    server.send(Exit(1, 0))
    assert server.next_event() == Request(2, ("echo", "hi"), "echo hi")
    assert server.next_control_event() is NEED_DATA
    server.receive_data(b"")
    assert server.next_control_event() is END_OF_STREAM
