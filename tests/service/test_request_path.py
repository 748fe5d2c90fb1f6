"""The per-request path: one built-in look-up, one send per reply, one outcome shape (Exit)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import pytest

import netlab.service.executor as executor_module
from netlab.errors import PolicyError
from netlab.proto.framing import Role, make_framer
from netlab.proto.messages import STDERR, STDOUT, Error, ErrorCode, Exit, Output, Request
from netlab.service.builtins import BUILTINS, Builtin, BuiltinOutput, ending
from netlab.service.client import Client
from netlab.service.executor import Executor
from netlab.service.handler import ConnectionHandler, ServiceConfig
from netlab.service.log import ServerLog
from netlab.service.policy import Policy
from netlab.service.server import DEADLINE_SCAN_INTERVAL, MODELS
from netlab.testing import serve_in_thread, wait_until
from netlab.testing.protocol import feed
from netlab.testing.transports import SinkConnection
from netlab.transport import connect
from netlab.transport.base import Connection, WrappedConnection

#: An instant built-in, one that waits (a worker in the selector model), a status, a refused program.
COMMANDS = ("echo one two", "sleep 0", "exit 3", "rm -rf /nothing")


class CountingBuiltins(dict):  # type: ignore[type-arg]
    """The built-in table, counting every look-up by name."""

    lookups = 0

    def get(self, name: object, default: object = None) -> object:
        CountingBuiltins.lookups += 1
        return super().get(name, default)

    def __getitem__(self, name: object) -> object:
        CountingBuiltins.lookups += 1
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        CountingBuiltins.lookups += 1
        return super().__contains__(name)


class SendCounter(WrappedConnection):
    """Passes everything on and counts the writes, however they are made."""

    def __init__(self, inner: Connection, sends: list[int]) -> None:
        super().__init__(inner)
        self.sends = sends

    def send(self, data: bytes, timeout: float | None = None) -> None:
        self.sends.append(len(data))
        self.inner.send(data, timeout)

    def send_parts(self, parts: Sequence[bytes], timeout: float | None = None) -> None:
        self.sends.append(sum(map(len, parts)))
        self.inner.send_parts(parts, timeout)

    def send_available(self, data: bytes) -> int:
        sent = self.inner.send_available(data)
        self.sends.append(sent)
        return sent

    def receive(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        return self.inner.receive(max_bytes, timeout)


@pytest.mark.parametrize("framing", ["length", "line"])
@pytest.mark.parametrize("model", MODELS)
def test_each_request_looks_its_builtin_up_once(model: str, framing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingBuiltins(BUILTINS)
    for module in list(sys.modules.values()):  # wherever the table is used, the look-ups are counted
        if module is not None and module.__name__.startswith("netlab.") and getattr(module, "BUILTINS", None) is BUILTINS:
            monkeypatch.setattr(module, "BUILTINS", counting)
    CountingBuiltins.lookups = 0
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, framing=framing, quiet=True) as running:
        with Client(running.address, framing=framing, read_timeout=10) as client:
            replies = []
            for command in COMMANDS:
                try:
                    replies.append(client.run(command).exit.exit_status)
                except Exception as exc:  # noqa: BLE001 - the refusal is part of what is checked
                    replies.append(type(exc).__name__)
    assert replies == [0, 0, 3, "PolicyError"]
    assert CountingBuiltins.lookups == len(COMMANDS)


@pytest.mark.parametrize("transport", ["tcp4://127.0.0.1:0", "unix-seqpacket://"])
@pytest.mark.parametrize("model", MODELS)
def test_a_builtins_reply_is_one_send(model: str, transport: str, tmp_path: object) -> None:
    sends: list[int] = []
    address = transport if transport.startswith("tcp4") else f"unix-seqpacket://{tmp_path}/s"
    with serve_in_thread(address, model=model, quiet=True,
                         wrap_accepted=lambda connection: SendCounter(connection, sends)) as running:
        with Client(running.address, read_timeout=10) as client:
            for number in range(20):
                assert client.run(("echo", str(number))).stdout == f"{number}\n".encode()
            usage = client.run("blob")  # stderr and a status: still one reply, one send
            replies = list(sends)  # (a shutdown Error may follow once the client is gone)
    assert usage.exit.exit_status == 2 and usage.stderr
    assert len(replies) == 21 and all(replies), repr(replies)


def decode_stream(data: bytes) -> list[object]:
    return feed(make_framer("length", Role.CLIENT), [data])


def _instant(name: str, run: Callable[[Sequence[str], BuiltinOutput, object], Exit]) -> dict[str, Builtin]:
    return {**BUILTINS, name: Builtin(name, name, run)}  # type: ignore[arg-type]


def _reply_to(monkeypatch: pytest.MonkeyPatch, builtins: dict[str, Builtin], argv: tuple[str, ...]) -> list[bytes]:
    """The sends of a handler's reply to ``argv`` (an instant built-in of ``builtins``), in memory."""
    monkeypatch.setattr(executor_module, "BUILTINS", builtins)
    sink = SinkConnection()
    handler = ConnectionHandler(sink, Executor(Policy()), ServiceConfig(), ServerLog(quiet=True))
    handler.feed(make_framer("length", Role.CLIENT).encode(Request(1, argv, " ".join(argv))))
    request = handler.take_request()
    assert request is not None
    handler.run_request(request)
    return sink.sent


def test_an_instant_builtins_output_and_exit_go_in_order_in_one_send(monkeypatch: pytest.MonkeyPatch) -> None:
    def chatty(argv: Sequence[str], output: BuiltinOutput, interruption: object) -> Exit:
        output.write_stdout(b"one\n")
        output.write_stderr(b"two\n")
        output.write_stdout(b"three\n")
        return ending(4)

    sent = _reply_to(monkeypatch, _instant("chatty", chatty), ("chatty",))
    assert len(sent) == 1
    replies = decode_stream(sent[0])
    assert replies[:3] == [Output(1, STDOUT, b"one\n"), Output(1, STDERR, b"two\n"), Output(1, STDOUT, b"three\n")]
    assert type(replies[3]) is Exit and replies[3].exit_status == 4 and replies[3].stdout_bytes == 10
    assert len(replies) == 4
    echoed = decode_stream(b"".join(_reply_to(monkeypatch, BUILTINS, ("echo", "hi"))))
    assert echoed[0] == Output(1, STDOUT, b"hi\n") and type(echoed[1]) is Exit and len(echoed) == 2


def test_output_before_a_builtins_refusal_goes_before_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def half(argv: Sequence[str], output: BuiltinOutput, interruption: object) -> Exit:
        output.write_stdout(b"partial\n")
        raise PolicyError("refused halfway")

    replies = decode_stream(b"".join(_reply_to(monkeypatch, _instant("half", half), ("half",))))
    assert replies == [Output(1, STDOUT, b"partial\n"), Error(1, ErrorCode.COMMAND_REFUSED, "refused halfway")]


def test_the_executor_answers_with_the_exit_for_the_request() -> None:
    received: list[tuple[int, bytes]] = []
    executor = Executor(Policy(command_timeout=0.2))
    echoed = executor.run(["echo", "hi"], lambda stream, data: received.append((stream, data)), request_id=7)
    assert type(echoed) is Exit and echoed.request_id == 7 and echoed.exit_status == 0
    assert echoed.stdout_bytes == 3 and received == [(STDOUT, b"hi\n")]
    assert echoed.command_timeout == 0.0 and echoed.output_cap == 0  # only the limits that stopped it
    slept = executor.run(["sleep", "5"], lambda stream, data: None, request_id=8)
    assert slept.request_id == 8 and slept.timed_out and slept.signal == 15 and slept.command_timeout == 0.2
    capped = Executor(Policy(output_cap=10)).run(["blob", "100"], lambda stream, data: None, request_id=9)
    assert capped.truncated and capped.output_cap == 10 and capped.stdout_bytes == 10


def test_an_instant_builtin_run_at_once_answers_as_run_does() -> None:
    executor = Executor(Policy(output_cap=4))
    chunks: list[tuple[int, bytes]] = []
    at_once = executor.run_instant(BUILTINS["upper"], ["upper", "abcdef"], lambda *chunk: chunks.append(chunk),
                                   digest=True, request_id=5)
    ran = executor.run(["upper", "abcdef"], lambda *chunk: chunks.append(chunk), digest=True, request_id=5)
    assert chunks == [(STDOUT, b"ABCD"), (STDOUT, b"ABCD")]  # the cap holds on both ways
    assert (at_once.request_id, at_once.exit_status, at_once.truncated, at_once.output_cap, at_once.stdout_sha256) == (
        ran.request_id, ran.exit_status, ran.truncated, ran.output_cap, ran.stdout_sha256)
    assert at_once.truncated and at_once.output_cap == 4 and len(at_once.stdout_sha256) == 32
    for timeout in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(PolicyError, match="the timeout must be a positive number of seconds"):
            executor.run_instant(BUILTINS["echo"], ["echo", "hi"], lambda *chunk: None, timeout)


def test_a_builtin_looked_up_by_the_caller_is_not_looked_up_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "BUILTINS", CountingBuiltins(BUILTINS))
    executor = Executor(Policy())
    CountingBuiltins.lookups = 0
    builtin = executor.builtin_for(["upper", "a"])
    assert builtin is BUILTINS["upper"]
    chunks: list[bytes] = []
    ended = executor.run(["upper", "a"], lambda stream, data: chunks.append(data), builtin=builtin)
    assert ended.exit_status == 0 and chunks == [b"A\n"] and CountingBuiltins.lookups == 1
    assert Executor(Policy(unsafe_shell=True)).builtin_for(["echo"]) is None  # the shell runs everything there


def test_the_selector_loop_looks_at_idle_deadlines_on_a_schedule_not_per_request(
        monkeypatch: pytest.MonkeyPatch) -> None:
    looks: list[ConnectionHandler] = []
    deadline = ConnectionHandler.deadline

    def counted(self: ConnectionHandler) -> float:
        looks.append(self)
        return deadline(self)

    monkeypatch.setattr(ConnectionHandler, "deadline", counted)
    idle_count, requests = 50, 500
    with serve_in_thread("tcp4://127.0.0.1:0", model="selector", quiet=True) as running:
        idle = [connect(running.address) for _ in range(idle_count)]
        try:
            with Client(running.address, read_timeout=10) as client:
                client.run("echo warm")
                wait_until(lambda: len(running.server.handlers) == idle_count + 1, 10)
                looks.clear()
                started = time.monotonic()
                for _ in range(requests):
                    client.run("echo x")
                elapsed = time.monotonic() - started
                idle_looks = sum(1 for handler in looks if handler.connection.peer_address != client_peer(client))
        finally:
            for connection in idle:
                connection.close()
    # each look at the deadlines visits every idle connection once; they come every DEADLINE_SCAN_INTERVAL
    scans = elapsed / DEADLINE_SCAN_INTERVAL + 5
    assert idle_looks <= idle_count * scans, (idle_looks, elapsed)
    assert idle_looks < idle_count * requests, (idle_looks, elapsed)  # a look per request (the old loop: two) would reach this


def client_peer(client: Client) -> str:
    """The client's own address as the server names its peer."""
    return client.connection.local_address


class CallCounter(WrappedConnection):
    """Passes sends and receives on (in place where the inner connection receives so) and counts them."""

    def __init__(self, inner: Connection) -> None:
        super().__init__(inner)
        self.sends = self.receives = 0

    def send(self, data: bytes, timeout: float | None = None) -> None:
        self.sends += 1
        self.inner.send(data, timeout)

    def receive(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        self.receives += 1
        return self.inner.receive(max_bytes, timeout)

    def receive_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        self.receives += 1
        return self.inner.receive_into(buffer, timeout)


@pytest.mark.parametrize("transport", ["tcp4://127.0.0.1:0", "unix://"])
def test_a_client_request_whose_reply_fits_is_one_send_and_one_receive(transport: str, tmp_path: object) -> None:
    address = transport if transport.startswith("tcp4") else f"unix://{tmp_path}/s"
    with serve_in_thread(address, model="threaded", quiet=True) as running:
        counter = CallCounter(connect(running.address, 5.0))
        with Client(running.address, read_timeout=10, connection=counter) as client:
            for number in range(30):  # past the first bytes the client keeps to name a framing, and beyond
                assert client.run(("echo", "x" * 15, str(number))).stdout == f"{'x' * 15} {number}\n".encode()
    # the server answers a built-in in one send (test above): the reply is one receive, the request one send
    assert (counter.sends, counter.receives) == (30, 30)
