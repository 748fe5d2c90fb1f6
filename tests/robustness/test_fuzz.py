"""A bounded fuzz of every server model through real sockets: random bytes and mutated valid frames.

Each example opens a connection, writes hostile bytes, sometimes reads for a
moment, and closes; afterwards the server must still be running, must answer
a real client, and must not have logged an internal error (every failure is
an expected, per-connection one). Bounded: a fixed number of examples per
model and framing, each with short socket timeouts. TCP gets the most
examples through a raw socket; unix, unix-seqpacket and udp (sequenced, so
the hostile bytes reach the server's framer whole) get fewer, through
``transport.connect``.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netlab.errors import LocalProtocolError, NetlabError
from netlab.proto.framing import FRAMING_NAMES
from netlab.proto.messages import Authenticate, Request
from netlab.service.policy import Policy
from netlab.testing import listen_url, serve_in_thread
from netlab.testing.robustness import MODELS, assert_serves, client_session, raw_socket
from netlab.transport import connect

EXAMPLES = 100
#: Examples per model and framing on each other transport (each UDP one is a handshake too).
OTHER_EXAMPLES = 30
OTHER_TRANSPORTS = ("unix", "unix-seqpacket", "udp")


def _valid_frames(framing: str, words: list[str], request_id: int) -> bytes:
    session = client_session(framing)
    line = " ".join(["echo", *words])
    try:
        data = session.framer.encode(Request(request_id, ("echo", *words), line, 0, False))
    except LocalProtocolError:  # words a text framing cannot carry (a newline): the mutations add such bytes
        data = session.framer.encode(Request(request_id, ("echo", "x"), "echo x", 0, False))
    return data + session.data_to_send()


@st.composite
def hostile_bytes(draw: st.DrawFn, framing: str) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=600))
    words = draw(st.lists(st.text(max_size=12), max_size=4))
    data = bytearray(_valid_frames(framing, words, draw(st.integers(0, 2**32 - 1))))
    if framing == "length" and draw(st.booleans()):
        data = bytearray(client_session(framing).framer.encode(Authenticate(bytes(32)))) + data
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[position] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            data.extend(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("framing", FRAMING_NAMES)
@pytest.mark.parametrize("model", MODELS)
def test_no_input_stops_a_server(model: str, framing: str) -> None:
    policy = Policy(command_timeout=2.0, output_cap=64 * 1024)
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, framing=framing, policy=policy,
                         request_deadline=1.0) as running:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(data=hostile_bytes(framing), read_reply=st.booleans())
        def attack(data: bytes, read_reply: bool) -> None:
            with raw_socket(running.address, timeout=2.0) as sock:
                with contextlib.suppress(OSError):
                    sock.sendall(data)
                    if read_reply:
                        sock.shutdown(socket.SHUT_WR)
                        sock.settimeout(0.3)
                        for _ in range(64):  # bounded
                            if not sock.recv(65536):
                                break
            assert running.thread.is_alive()

        attack()
        assert_serves(running.address, framing=framing, times=1)
        assert running.thread.is_alive()
        assert not [line for line in running.log_lines if "internal error" in line or "Traceback" in line]


@pytest.mark.parametrize("transport", OTHER_TRANSPORTS)
@pytest.mark.parametrize("framing", FRAMING_NAMES)
@pytest.mark.parametrize("model", MODELS)
def test_no_input_stops_a_server_on_the_other_transports(model: str, framing: str, transport: str,
                                                         tmp_path: Path) -> None:
    policy = Policy(command_timeout=2.0, output_cap=64 * 1024)
    with serve_in_thread(listen_url(transport, tmp_path), model=model, framing=framing, policy=policy,
                         request_deadline=1.0) as running:
        delivered: list[int] = []

        @settings(max_examples=OTHER_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(data=hostile_bytes(framing), read_reply=st.booleans())
        def attack(data: bytes, read_reply: bool) -> None:
            with contextlib.suppress(NetlabError), connect(running.address, timeout=5.0) as connection:
                connection.send(data, timeout=2.0)
                delivered.append(len(data))
                if read_reply:
                    connection.shutdown_write()
                    for _ in range(64):  # bounded
                        if not connection.receive(65536, timeout=0.3):
                            break
            assert running.thread.is_alive()

        attack()
        assert len(delivered) >= OTHER_EXAMPLES // 2  # the hostile bytes did reach the server
        assert_serves(running.address, framing=framing, times=1)
        assert running.thread.is_alive()
        assert not [line for line in running.log_lines if "internal error" in line or "Traceback" in line]
