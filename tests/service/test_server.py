"""The server models in-process: every model x framing, limits, timeouts, many idle connections."""

from __future__ import annotations

import resource
import selectors
import signal
import struct
from pathlib import Path

import pytest

import netlab.service.server as server_module
from netlab.errors import LocalProtocolError, PolicyError, ReadTimeout
from netlab.proto.framing import FRAMING_NAMES, Role, make_framer
from netlab.proto.messages import ErrorCode
from netlab.proto.session import Session
from netlab.service.client import Client
from netlab.service.policy import Policy
from netlab.service.server import MODELS
from netlab.testing import read_connection_error, serve_in_thread, wait_until
from netlab.transport import connect

IDLE_CONNECTIONS = 1000
STATUS_FRAMINGS = ("line", "length")


@pytest.mark.parametrize("framing", FRAMING_NAMES)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_serves_every_framing(model: str, framing: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, framing=framing) as running:
        with Client(running.address, framing=framing, read_timeout=10) as client:
            first = client.run("echo one two")
            second = client.run("upper three")
            blob = client.run("blob 200000", verify=True)
        assert first.stdout == b"one two\n"
        if framing == "raw":
            # One receive is one reply: the second reply and the blob are cut to 1024 bytes.
            assert second.stdout == b"THREE\n" and blob.stdout_bytes <= 1024
            assert first.exit.exit_status is None and blob.verified is None
            return
        assert second.stdout == b"THREE\n"
        assert blob.stdout_bytes == 200000
        if framing == "ack":
            assert blob.exit.exit_status is None and blob.verified is None
        else:
            assert blob.exit.exit_status == 0 and blob.verified is True
            assert blob.exit.stdout_bytes == 200000


@pytest.mark.parametrize("framing", STATUS_FRAMINGS)
@pytest.mark.parametrize("model", MODELS)
def test_exit_status_and_stderr_travel_separately(model: str, framing: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, framing=framing) as running:
        with Client(running.address, framing=framing, read_timeout=10) as client:
            statuses = [client.run(f"exit {code}").exit.exit_status for code in (0, 1, 2, 44)]
            usage = client.run("blob")  # a usage error: stderr and status 2
    assert statuses == [0, 1, 2, 44]
    assert usage.exit.exit_status == 2 and usage.stdout == b""
    assert usage.stderr.startswith(b"blob: expected exactly one SIZE\n")


@pytest.mark.parametrize("model", MODELS)
def test_a_refused_command_is_a_policy_error_and_the_connection_goes_on(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model) as running:
        with Client(running.address, read_timeout=10) as client:
            with pytest.raises(PolicyError, match="command-refused"):
                client.run("rm -rf /")
            assert client.run("echo still here").stdout == b"still here\n"


@pytest.mark.parametrize("model", MODELS)
def test_a_command_killed_by_its_timeout_reports_the_signal(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model) as running:
        with Client(running.address, read_timeout=10) as client:
            reply = client.run("sleep 30", timeout=0.05)
    assert reply.exit.signal == signal.SIGTERM and reply.exit.timed_out
    assert reply.exit.exit_status is None


@pytest.mark.parametrize("model", ("threaded", "selector"))
def test_a_connection_over_the_limit_gets_server_busy(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, max_connections=1) as running:
        with Client(running.address, read_timeout=10) as holder:
            assert holder.run("echo mine").stdout == b"mine\n"
            with connect(running.address) as extra:
                error = read_connection_error(extra, "length")
                assert extra.receive(65536, 10) == b""
            assert (error.request_id, error.code) == (0, ErrorCode.SERVER_BUSY)
            assert holder.run("echo still mine").stdout == b"still mine\n"


@pytest.mark.parametrize("framing", STATUS_FRAMINGS)
@pytest.mark.parametrize("model", MODELS)
def test_an_idle_connection_is_closed_with_idle_timeout(model: str, framing: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, framing=framing, idle_timeout=0.2) as running:
        with connect(running.address) as idle:
            error = read_connection_error(idle, framing)
            assert idle.receive(65536, 10) == b""
    assert error.code is ErrorCode.IDLE_TIMEOUT


@pytest.mark.parametrize("model", MODELS)
def test_a_client_trickling_a_partial_frame_is_closed_at_the_request_deadline(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, request_deadline=0.3, idle_timeout=60) as running:
        with connect(running.address) as trickler:
            frame_head = struct.pack(">I", 1000)  # announces 1000 bytes, of which we send a few
            received = b""
            for index in range(400):  # bounded: ~20 s at the most
                if index < len(frame_head):
                    trickler.send(frame_head[index:index + 1])
                else:
                    trickler.send(b"x")
                try:
                    received = trickler.receive(65536, 0.05)
                except ReadTimeout:
                    continue
                break
            assert received, "the server never answered the trickling client"
            rest = b""
            for _ in range(10):
                chunk = trickler.receive(65536, 10)
                if not chunk:
                    break
                rest += chunk
    session = Session(Role.CLIENT, make_framer("length", Role.CLIENT))
    session.receive_data(received + rest)
    error = session.next_event()
    assert error.code is ErrorCode.REQUEST_TIMEOUT  # type: ignore[union-attr]


def _raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files but the hard limit is {hard}")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        pytest.skip(f"cannot raise the open-file limit to {needed}: {exc}")


def test_the_selector_model_holds_a_thousand_idle_connections() -> None:
    _raise_open_file_limit(2 * IDLE_CONNECTIONS + 200)
    with serve_in_thread("tcp4://127.0.0.1:0", model="selector", backlog=IDLE_CONNECTIONS + 50,
                         max_connections=IDLE_CONNECTIONS + 10) as running:
        idle = []
        try:
            for _ in range(IDLE_CONNECTIONS):
                idle.append(connect(running.address))
            with Client(running.address, read_timeout=30) as client:
                reply = client.run("echo through the crowd")
                # The accept queue is FIFO: every idle connection was accepted before ours.
                assert len(running.server.handlers) == IDLE_CONNECTIONS + 1
            assert reply.stdout == b"through the crowd\n"
        finally:
            for connection in idle:
                connection.close()
        wait_until(lambda: not running.server.handlers, what="the server to forget closed connections")


INJECTION_CORPUS = (
    "echo hi; touch CANARY",
    "echo hi && touch CANARY",
    "echo hi | touch CANARY",
    "echo hi > CANARY",
    "echo $(touch CANARY)",
    "echo `touch CANARY`",
    "echo ${IFS}touch${IFS}CANARY",
    "ls $(touch CANARY)",
    "ls;touch CANARY",
    "ls > CANARY",
    "ls -la 'CANARY; touch CANARY'",
    "touch CANARY",
    "/usr/bin/touch CANARY",
    "sh -c 'touch CANARY'",
    "$(touch CANARY)",
    "echo hi\rtouch CANARY",
)


@pytest.mark.parametrize("framing", ("raw", "line", "length"))
def test_the_injection_corpus_through_the_service_never_creates_the_canary(framing: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    policy = Policy(working_directory=str(work))
    with serve_in_thread("tcp4://127.0.0.1:0", framing=framing, policy=policy) as running:
        for line in INJECTION_CORPUS:
            # A fresh connection per line: raw replies cannot be told apart otherwise.
            with Client(running.address, framing=framing, read_timeout=10) as client:
                try:
                    reply = client.run(line)
                except (PolicyError, LocalProtocolError):
                    continue  # refused by the server, or by our client before sending
                if line.startswith("echo") and framing != "raw":
                    assert reply.stdout.startswith(b"hi") or b"touch" in reply.stdout
            assert not (work / "CANARY").exists(), line
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("model", MODELS)
def test_connections_one_after_another_reuse_descriptors_safely(model: str) -> None:
    # Regression: the selector loop once kept a closed connection's descriptor
    # registered, and crashed when the next connection reused the number.
    with serve_in_thread("tcp4://127.0.0.1:0", model=model) as running:
        for index in range(5):
            with Client(running.address, read_timeout=10) as client:
                assert client.run(f"echo {index}").stdout == f"{index}\n".encode()
        assert running.thread.is_alive()


@pytest.mark.parametrize("model", ("iterative", "threaded"))  # the memory transport has no descriptor
def test_a_client_gone_before_the_challenge_does_not_stop_the_server(model: str) -> None:
    # Regression: a failed greeting (the auth challenge) escaped the accept loop and ended the server.
    with serve_in_thread("memory://gone-before-greeting", model=model, token=b"secret") as running:
        holder = connect(running.address)  # the iterative model serves it; the next client waits in the queue
        wait_until(lambda: any("connected" in line for line in running.log_lines), what="the first connection")
        early = connect(running.address)
        early.close()  # gone before the server greets it
        holder.close()
        with Client(running.address, token=b"secret", read_timeout=10) as client:
            assert client.run("echo still serving").stdout == b"still serving\n"
        assert running.thread.is_alive()


class _CountingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that counts the waits that return at once."""

    zero_waits = 0

    def select(self, timeout: float | None = None) -> list:  # type: ignore[override]
        if timeout is not None and timeout <= 0:
            _CountingSelector.zero_waits += 1
        return super().select(timeout)


def test_the_selector_loop_waits_while_a_worker_runs_past_the_idle_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: a connection whose command outlived the idle timeout made every
    # loop turn compute a timeout of 0, so the loop spun until the command ended.
    monkeypatch.setattr(server_module.selectors, "DefaultSelector", _CountingSelector)
    _CountingSelector.zero_waits = 0
    with serve_in_thread("tcp4://127.0.0.1:0", model="selector", idle_timeout=0.1) as running:
        with Client(running.address, read_timeout=10) as client:
            assert client.run("sleep 1").exit.exit_status == 0
    assert _CountingSelector.zero_waits < 20
