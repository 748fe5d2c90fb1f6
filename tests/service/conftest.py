"""Shared fixtures for the command-service tests: servers in a thread or a child process.

How this works: :func:`serve_in_thread` starts any server model on a loopback
or temp-dir UNIX listener in a background thread and always shuts it down;
:class:`CliServer` runs ``python -m netlab serve`` as a child process, reads the
bound URL from its first stderr line, keeps draining stderr in a thread (so a
chatty log can never block it) and stops it with SIGTERM. Every wait has a
deadline.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netlab.proto.framing import Role, make_framer
from netlab.proto.messages import NEED_DATA, Error
from netlab.proto.session import Session
from netlab.service.executor import Executor
from netlab.service.handler import ServiceConfig
from netlab.service.log import ServerLog
from netlab.service.policy import Policy
from netlab.service.server import Server, make_server
from netlab.transport import listen
from netlab.transport.base import Connection

STREAM_TRANSPORTS = ("tcp4", "tcp6", "unix", "unix-seqpacket")
FRAMINGS = ("raw", "ack", "line", "length")
MODELS = ("iterative", "threaded", "selector")
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
SERVING_PREFIX = "netlab: serving on "


def ipv6_loopback_usable() -> bool:
    """True when a socket can bind ::1 here (containers often lack IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6_USABLE = ipv6_loopback_usable()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp directory with a short path, so UNIX socket paths fit in 107 bytes."""
    directory = Path(tempfile.mkdtemp(prefix="nl-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def listen_url(transport: str, directory: Path) -> str:
    """A loopback or temp-dir URL to listen on for ``transport`` (skips tcp6 without ::1)."""
    if transport == "tcp4":
        return "tcp4://127.0.0.1:0"
    if transport == "tcp6":
        if not IPV6_USABLE:
            pytest.skip("::1 is not usable on this machine (no IPv6 loopback)")
        return "tcp6://[::1]:0"
    return f"{transport}://{directory / 'netlab.sock'}"


@dataclass
class ThreadServer:
    """A server running in a background thread of the test process."""

    server: Server
    thread: threading.Thread
    address: str
    log_lines: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Shut down and wait (bounded) for the serving thread to end."""
        self.server.request_shutdown()
        self.thread.join(STOP_TIMEOUT)
        assert not self.thread.is_alive(), "the server did not stop within the timeout"


class _ListLog:
    """A text stream for ServerLog that keeps lines in a list."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, text: str) -> int:
        self.lines.extend(line for line in text.splitlines() if line)
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def serve_in_thread(
    url: str,
    *,
    model: str = "threaded",
    framing: str = "length",
    policy: Policy | None = None,
    backlog: int = 16,
    **settings: object,
) -> Iterator[ThreadServer]:
    """Run a server in a thread for the duration of the ``with`` block.

    ``settings`` are ServiceConfig fields (token, idle_timeout, ...) or server
    limits (max_connections, shutdown_grace).
    """
    limit_names = {"max_connections", "shutdown_grace", "workers"}
    limits = {name: value for name, value in settings.items() if name in limit_names}
    config = ServiceConfig(framing=framing, **{n: v for n, v in settings.items() if n not in limit_names})  # type: ignore[arg-type]
    lines: list[str] = []
    listener = listen(url, backlog)
    server = make_server(model, listener, Executor(policy or Policy()), config,
                         ServerLog(_ListLog(lines)), **limits)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, name=f"test-{model}-server", daemon=True)
    thread.start()
    running = ThreadServer(server, thread, str(listener.address), lines)
    try:
        yield running
    finally:
        running.stop()


def read_connection_error(connection: Connection, framing: str, timeout: float = 10.0) -> Error:
    """Read until the server's connection-level Error arrives (bounded by ``timeout``)."""
    session = Session(Role.CLIENT, make_framer(framing, Role.CLIENT))
    deadline = time.monotonic() + timeout
    while True:
        event = session.next_event()
        if event is NEED_DATA:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no connection-level error arrived in time"
            session.receive_data(connection.receive(65536, remaining))
            continue
        assert isinstance(event, Error), f"expected an Error, got {event!r}"
        return event


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` (for state no event announces) until true, bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


# -- child processes ------------------------------------------------------------


def netlab_command(*arguments: str) -> list[str]:
    """The argv that runs ``netlab ARGUMENTS...`` with this interpreter."""
    return [sys.executable, "-m", "netlab", *arguments]


def child_environment() -> dict[str, str]:
    """The environment for netlab child processes (no token leaking in)."""
    environment = dict(os.environ)
    environment.pop("NETLAB_TOKEN", None)
    return environment


class CliServer:
    """``netlab serve`` in a child process; the URL comes from its first stderr line."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen(
            netlab_command("serve", *arguments),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=child_environment(),
        )
        self.lines: list[str] = []
        self._sigterm_sent = False
        self._lines_changed = threading.Condition()
        first = self._read_first_line()
        if not first.startswith(SERVING_PREFIX):
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            raise AssertionError(f"netlab serve did not start: {first!r}")
        self.url = first[len(SERVING_PREFIX):].split(" ", 1)[0]
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _read_first_line(self) -> str:
        stream = self.process.stderr
        assert stream is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        collected = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            while b"\n" not in collected:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"netlab serve printed no first line within {STARTUP_TIMEOUT} s"
                if selector.select(remaining):
                    chunk = os.read(stream.fileno(), 4096)
                    if not chunk:
                        break
                    collected += chunk
        first, _, rest = collected.partition(b"\n")
        self.lines.extend(line for line in rest.decode(errors="replace").splitlines() if line)
        return first.decode(errors="replace")

    def _drain(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        pending = b""
        while True:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            with self._lines_changed:
                self.lines.extend(line.decode(errors="replace") for line in complete)
                self._lines_changed.notify_all()
        with self._lines_changed:
            if pending:
                self.lines.append(pending.decode(errors="replace"))
            self._lines_changed.notify_all()

    def wait_for_line(self, needle: str, timeout: float = 10.0) -> str:
        """Block until a stderr line containing ``needle`` appears; return it."""
        with self._lines_changed:
            found = self._lines_changed.wait_for(
                lambda: next((line for line in self.lines if needle in line), None), timeout
            )
        assert found, f"no server log line containing {needle!r} within {timeout} s: {self.lines}"
        return found

    def send_sigterm(self) -> None:
        """Ask the server to drain and stop, once (a second SIGTERM may land after
        Python restored the default handler at exit, and kill it)."""
        if not self._sigterm_sent and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self._sigterm_sent = True

    def terminate(self) -> int:
        """Send SIGTERM (unless sent already) and return the exit status, bounded."""
        self.send_sigterm()
        try:
            status = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            raise AssertionError("netlab serve did not stop within the timeout after SIGTERM") from None
        self._drainer.join(STOP_TIMEOUT)
        return status

    def __enter__(self) -> CliServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        if self.process.stderr is not None:
            self.process.stderr.close()


def run_netlab(*arguments: str, timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    """Run ``netlab ARGUMENTS...`` to completion (bounded) and capture its output."""
    return subprocess.run(
        netlab_command(*arguments),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        env=child_environment(),
    )
