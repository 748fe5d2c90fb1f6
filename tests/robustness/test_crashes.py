"""One connection's input never stops a server: bad frames after good ones, NUL bytes in arguments."""

from __future__ import annotations

import threading

import pytest

from netlab.errors import PolicyError, ServerError
from netlab.proto.messages import Error, ErrorCode, Exit, Request
from netlab.proto.session import Session
from netlab.service.client import Client
from netlab.service.policy import Policy
from netlab.testing import serve_in_thread, wait_until
from netlab.testing.robustness import MODELS, assert_serves, client_session, raw_socket, read_messages


def _request(session: Session) -> bytes:
    return session.send(Request(1, ("echo", "a"), "echo a", 0, False))


#: framing -> what follows a good request in the same write
HOSTILE_TAILS = {
    "length-then-zero-length-frame": ("length", lambda: b"\0\0\0\0"),
    "length-replayed-request-id": ("length", lambda: _request(client_session("length"))),
    "line-then-bad-utf8": ("line", lambda: b"\xff\n"),
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", sorted(HOSTILE_TAILS))
def test_a_good_request_then_a_bad_frame_in_one_write_ends_only_that_connection(model: str, case: str) -> None:
    framing, tail = HOSTILE_TAILS[case]
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, framing=framing) as running:
        for _ in range(3):  # the old selector died on the accept after, when the descriptor number came back
            session = client_session(framing)
            with raw_socket(running.address) as sock:
                sock.sendall(_request(session) + tail())
                messages = read_messages(sock, session, 3)
            # the good request is answered, then one connection-level error, then the close
            kinds = [type(message) for message in messages]
            assert kinds[-1] is Error and messages[-1].request_id == 0, messages  # type: ignore[union-attr]
            assert messages[-1].code is ErrorCode.BAD_REQUEST  # type: ignore[union-attr]
            assert Exit in kinds, messages
            assert_serves(running.address, framing=framing, times=1)
        assert running.thread.is_alive()
        wait_until(lambda: sum("closed: bad-request" in line for line in running.log_lines) == 3,
                   what="one log line per bad connection")


@pytest.mark.parametrize("model", MODELS)
def test_a_nul_byte_in_an_argument_is_refused_and_the_connection_serves_on(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model) as running:
        with Client(running.address, read_timeout=10) as client:
            with pytest.raises(PolicyError, match="NUL"):
                client.run(["ls", "a\0b"])
            assert client.run("echo still here").stdout == b"still here\n"
        assert_serves(running.address)
        assert running.thread.is_alive()


@pytest.mark.parametrize("model", MODELS)
def test_a_nul_byte_reaching_the_process_start_is_an_error_reply_not_a_crash(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Belt and braces: even if the argument policy let a NUL through, Popen's
    # ValueError becomes a refusal instead of killing the serving thread.
    monkeypatch.setattr("netlab.service.executor.resolve_command", lambda argv, policy: "ls")
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, policy=Policy()) as running:
        with Client(running.address, read_timeout=10) as client:
            with pytest.raises(PolicyError, match="cannot run"):
                client.run(["ls", "a\0b"])
            assert client.run("echo still here").stdout == b"still here\n"
        assert running.thread.is_alive()


def test_the_threaded_server_survives_failing_to_start_a_connection_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    real_start = threading.Thread.start
    failures = {"left": 2}

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("netlab-tcp4") and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("can't start new thread")
        real_start(thread)

    with serve_in_thread("tcp4://127.0.0.1:0", model="threaded") as running:
        monkeypatch.setattr(threading.Thread, "start", start)
        for _ in range(2):
            with pytest.raises(ServerError, match="server-busy: the server cannot start a thread"):
                with Client(running.address, read_timeout=10) as client:
                    client.run("echo lost")
        assert_serves(running.address)
        assert running.thread.is_alive()
