"""The one way to start a command server: in this thread, in a thread, or in a child process.

How this works:

- :func:`build_server` turns a listener and the service's settings into a
  server of one model, optionally drained by SIGTERM and SIGINT. ``netlab
  serve`` builds its server this way and serves in its own thread.
- :func:`server_in_thread` listens (or takes a listener), serves on a
  background thread for the length of a ``with`` block and stops it, bounded,
  afterwards; its log is kept in memory (:class:`LogLines`). Scenarios,
  captures, walkthroughs, the benchmarks and the tests start servers this way.
- :class:`ChildServer` runs ``netlab serve ...`` in a child process and reads
  the bound URL from its first stderr line. Every child netlab process
  (:func:`start_child`, :func:`run_netlab`) runs this interpreter on the
  installed package, in an empty temporary working directory: ``python -m``
  puts the working directory first on the module path, so a ``netlab/`` folder
  there would otherwise be imported instead of netlab. Relative entries of
  PYTHONPATH are made absolute first, so they keep naming what they named.
  A child never reads the user's own config file (``~/.config/netlab/config.toml``
  or ``$NETLAB_CONFIG``): every child started here is an instrument (a test's
  server, a benchmark's server or peer) that must run with exactly the
  arguments it is given, so ``XDG_CONFIG_HOME`` points at its empty working
  directory. A user's own ``netlab`` commands never go through this module.

Every wait has a deadline; a child that does not stop on SIGTERM is killed.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import IO, Any

from netlab.errors import ReadTimeout, TransportError
from netlab.service.admission import StartupLimit
from netlab.service.executor import Executor
from netlab.service.handler import ServiceConfig
from netlab.service.log import ServerLog
from netlab.service.policy import Policy
from netlab.service.server import Server, make_server
from netlab.transport import listen
from netlab.transport.address import Address
from netlab.transport.base import Connection, Listener, WrappedListener

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
#: The first line ``netlab serve`` prints on stderr, followed by the bound URL.
SERVING_PREFIX = "netlab: serving on "
#: Lines read from a child server that failed to start, looking for why.
MOST_LAST_WORDS = 100
#: Variables a child netlab process never inherits (a token or the user's config would change what it does).
WITHHELD_VARIABLES = ("NETLAB_TOKEN", "NETLAB_CONFIG")


# -- in this thread and in a thread --------------------------------------------------


def build_server(
    listener: Listener,
    *,
    model: str = "threaded",
    policy: Policy | None = None,
    config: ServiceConfig | None = None,
    log: ServerLog | None = None,
    stop_on_signals: bool = False,
    **limits: Any,
) -> Server:
    """A server of ``model`` on ``listener``; the listener is closed if the server cannot be built.

    ``netlab serve`` builds its server here and serves in its own thread
    (``server.serve_forever()``), with ``stop_on_signals``.

    Args:
        listener: where connections come from.
        model: iterative, threaded or selector.
        policy: what commands may run (default: :class:`Policy`'s defaults).
        config: framing, token and connection deadlines (default: :class:`ServiceConfig`'s).
        log: where the server logs (default: text on stderr).
        stop_on_signals: make SIGTERM and SIGINT ask it to drain and stop (main thread only).
        limits: ``max_connections``, ``shutdown_grace``, ``workers`` (selector).
    Raises:
        UsageError: an unknown model or a bad policy.
    """
    try:
        server = make_server(model, listener, Executor(policy or Policy()), config or ServiceConfig(),
                             log or ServerLog(), **limits)
        if stop_on_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: server.request_shutdown())
    except BaseException:
        listener.close()  # even an interrupt before serving removes a UNIX socket file
        raise
    return server


class LogLines:
    """A text stream for :class:`ServerLog` that keeps every line, for reading back (thread-safe)."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        """Keep the non-empty lines of ``text``."""
        with self._lock:
            self._lines.extend(line for line in text.splitlines() if line)
        return len(text)

    def flush(self) -> None:
        """Nothing to flush: lines are kept as they are written."""

    @property
    def lines(self) -> list[str]:
        """A copy of the lines so far."""
        with self._lock:
            return list(self._lines)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The JSON log's events of one kind (``command``, ``connection``, ``warning``)."""
        events = []
        for line in self.lines:
            event = json.loads(line)
            if event.get("event") == kind:
                events.append(event)
        return events


class ServerThread:
    """A server serving on a background thread of this process.

    Attributes:
        server: the running server (``server.listener`` is what it accepts from).
        log: its log lines (JSON ones read back with :meth:`LogLines.events`).
    """

    def __init__(self, server: Server, log: LogLines, name: str = "netlab-server") -> None:
        """Start serving at once."""
        self.server = server
        self.log = log
        self.thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        """The URL clients connect to (port 0 resolved to the bound port)."""
        return str(self.server.listener.address)

    @property
    def log_lines(self) -> list[str]:
        """The server's log lines so far."""
        return self.log.lines

    def log_events(self, kind: str) -> list[dict[str, Any]]:
        """The server's JSON log events of one kind (start it with ``log_format="json"``)."""
        return self.log.events(kind)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Ask the server to drain and stop; wait at most ``timeout``. True once it stopped."""
        self.server.request_shutdown()
        self.thread.join(timeout)
        return not self.thread.is_alive()


@contextmanager
def server_in_thread(
    address: Address | str | Listener,
    *,
    model: str = "threaded",
    framing: str = "length",
    policy: Policy | None = None,
    backlog: int = 16,
    log_format: str = "text",
    quiet: bool = False,
    wrap_accepted: Callable[[Connection], Connection] | None = None,
    listen_options: Mapping[str, Any] | None = None,
    max_connections: int = 64,
    shutdown_grace: float = 5.0,
    workers: int | None = None,
    max_startups: StartupLimit | None = None,
    max_per_peer: int | None = None,
    stop_timeout: float = STOP_TIMEOUT,
    **config: Any,
) -> Iterator[ServerThread]:
    """Serve on a background thread for the length of a ``with`` block.

    Args:
        address: where to listen (``tcp4://127.0.0.1:0`` picks a port), or a
            listener already bound (it is closed when the server stops).
        model: iterative, threaded or selector.
        framing: the framing the server speaks.
        policy: what commands may run (default: :class:`Policy`'s defaults).
        backlog: the listen backlog.
        log_format, quiet: how the in-memory log is written.
        wrap_accepted: passes each accepted connection through this (a tap, a recorder).
        listen_options: transport options for ``listen`` (e.g. UDP's ``impairment``).
        max_connections, shutdown_grace, workers: the server's limits.
        max_startups, max_per_peer: its admission rules (see :mod:`netlab.service.admission`).
        stop_timeout: how long to wait for the server to stop at the end.
        config: other :class:`ServiceConfig` fields (``token``, ``idle_timeout``, ...).
    Yields:
        The running :class:`ServerThread`; ``.address`` is where to connect.
    Raises:
        BindError, AddressError, UsageError: it cannot listen or be built.
    """
    if isinstance(address, Listener):
        listener = address
    else:
        listener = listen(address, backlog, **(listen_options or {}))
    if wrap_accepted is not None:
        listener = WrappedListener(listener, wrap_accepted)
    limits: dict[str, Any] = {"max_connections": max_connections, "shutdown_grace": shutdown_grace,
                              "max_startups": max_startups, "max_per_peer": max_per_peer}
    if workers is not None:
        limits["workers"] = workers
    lines = LogLines()
    server = build_server(listener, model=model, policy=policy, config=ServiceConfig(framing=framing, **config),
                          log=ServerLog(lines, log_format=log_format, quiet=quiet), **limits)
    running = ServerThread(server, lines, name=f"netlab-{model}-server")
    try:
        yield running
    finally:
        running.stop(stop_timeout)


# -- in a child process ----------------------------------------------------------------


def netlab_argv(*arguments: str, module: str = "netlab") -> list[str]:
    """The argv that runs ``netlab ARGUMENTS...`` (or another netlab module) with this interpreter."""
    return [sys.executable, "-m", module, *arguments]


def child_environment(changes: Mapping[str, str] | None = None, *, config_home: str | None = None) -> dict[str, str]:
    """The environment of a child netlab process: ours, without a token or the user's config, PYTHONPATH
    made absolute.

    Args:
        changes: variables to set last (a test of the config file may name its own here).
        config_home: the child's ``XDG_CONFIG_HOME``, a directory without a ``netlab/config.toml``
            (the child's empty working directory); None: one empty directory made for this process.
    """
    environment = {name: value for name, value in os.environ.items() if name not in WITHHELD_VARIABLES}
    environment["XDG_CONFIG_HOME"] = config_home or _empty_config_home()
    search_path = environment.get("PYTHONPATH")
    if search_path:
        entries = [os.path.abspath(entry) for entry in search_path.split(os.pathsep) if entry]
        environment["PYTHONPATH"] = os.pathsep.join(entries)
    environment.update(changes or {})
    return environment


_config_home: list[str] = []


def _empty_config_home() -> str:
    """An empty directory, made once for this process and removed when it exits."""
    if not _config_home:
        directory = tempfile.mkdtemp(prefix="netlab-config-")
        atexit.register(shutil.rmtree, directory, True)
        _config_home.append(directory)
    return _config_home[0]


class ChildProcess:
    """A netlab module running in a child process, in its own empty working directory.

    Attributes:
        process: the child (its pipes as asked).
        directory: its working directory, removed by :meth:`stop`.
    """

    def __init__(
        self,
        arguments: Sequence[str],
        *,
        module: str = "netlab",
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.DEVNULL,
        stderr: int | None = subprocess.DEVNULL,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``python -m MODULE ARGUMENTS...``."""
        self.directory = tempfile.mkdtemp(prefix="netlab-child-")
        try:
            self.process = subprocess.Popen(
                netlab_argv(*arguments, module=module), stdin=stdin, stdout=stdout, stderr=stderr,
                cwd=self.directory, env=child_environment(environment, config_home=self.directory),
            )
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def read_line(self, stream: IO[bytes] | None, timeout: float) -> str | None:
        """The next line the child writes on ``stream`` (its stdout or stderr), waiting at most ``timeout``.

        Returns None when no whole line came in time or the child closed the stream.
        """
        assert stream is not None
        collected = bytearray()
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    return None
                byte = os.read(stream.fileno(), 1)  # one at a time: nothing after the line is taken
                if not byte:
                    return None
                if byte == b"\n":
                    return collected.decode(errors="replace")
                collected += byte

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the child while it runs (e.g. SIGTERM or SIGINT, to test how it stops)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def communicate(self, timeout: float) -> tuple[bytes, bytes]:
        """Wait at most ``timeout`` for the child to exit; its whole stdout and stderr (empty where not piped).

        Raises:
            subprocess.TimeoutExpired: it still runs (stop it with :meth:`stop`).
        """
        stdout, stderr = self.process.communicate(timeout=timeout)
        return stdout or b"", stderr or b""

    def stop(self, timeout: float = STOP_TIMEOUT, *, kill: bool = False) -> int | None:
        """:meth:`end` the child, then :meth:`release` what it held; return its exit status."""
        status = self.end(timeout, kill=kill)
        self.release()
        return status

    def end(self, timeout: float = STOP_TIMEOUT, *, kill: bool = False) -> int | None:
        """SIGTERM the child (SIGKILL when it lingers, or at once with ``kill``) and reap it.

        Returns:
            Its exit status (None when it could not be reaped in time).
        """
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def release(self) -> None:
        """Close the pipes to the child and remove its working directory."""
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_child(arguments: Sequence[str], **options: Any) -> ChildProcess:
    """Start a netlab module in a child process (see :class:`ChildProcess`)."""
    return ChildProcess(arguments, **options)


def run_netlab(*arguments: str, timeout: float = 60.0, environment: Mapping[str, str] | None = None,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``netlab ARGUMENTS...`` to completion (bounded) in an empty directory, ``stdin`` piped as its
    input (None: /dev/null); capture its output."""
    with tempfile.TemporaryDirectory(prefix="netlab-child-") as directory:
        return subprocess.run(netlab_argv(*arguments), stdin=subprocess.DEVNULL if stdin is None else None,
                              input=stdin, capture_output=True, timeout=timeout, cwd=directory,
                              env=child_environment(environment, config_home=directory))


class ChildServer:
    """``netlab serve ARGUMENTS...`` in a child process; the URL comes from its first stderr line.

    Its stderr is read on a thread from then on (so a chatty log never blocks
    it) and kept in :attr:`lines` unless ``keep_lines`` is False.

    Attributes:
        url: the address the server is bound to.
        lines: its stderr lines after the first.
    """

    def __init__(self, *arguments: str, keep_lines: bool = True, graceful: bool = False,
                 startup_timeout: float = STARTUP_TIMEOUT, environment: Mapping[str, str] | None = None) -> None:
        """Start the server and wait (bounded) until it says where it serves.

        ``graceful``: :meth:`close` sends SIGTERM (SIGKILL only when it lingers) instead of SIGKILL.

        Raises:
            TransportError: it printed something else first, or nothing in time.
        """
        self.child = start_child(("serve", *arguments), stderr=subprocess.PIPE, environment=environment)
        self.process = self.child.process
        self.lines: list[str] = []
        self._keep_lines = keep_lines
        self._graceful = graceful
        self._sigterm_sent = False
        self._lines_changed = threading.Condition()
        first = self.child.read_line(self.process.stderr, startup_timeout)
        if first is None or not first.startswith(SERVING_PREFIX):
            said = [first] if first else []
            if first is not None:  # it speaks, so it is exiting: its last words explain why
                deadline = time.monotonic() + STOP_TIMEOUT
                while len(said) < MOST_LAST_WORDS and (remaining := deadline - time.monotonic()) > 0:
                    line = self.child.read_line(self.process.stderr, remaining)
                    if line is None:
                        break
                    said.append(line)
            self.child.stop(kill=True)
            said = [line for line in said if line and line.strip()]
            raise TransportError(f"netlab serve did not start: {said[-1].strip()}" if said else
                                 f"netlab serve printed nothing within {startup_timeout:g} s")
        self.url = first[len(SERVING_PREFIX):].split(" ", 1)[0]
        self._drainer = threading.Thread(target=self._drain, name="netlab-child-stderr", daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        pending = b""
        with suppress(OSError, ValueError):
            while True:
                chunk = os.read(stream.fileno(), 65536)
                if not chunk:
                    break
                if not self._keep_lines:
                    continue
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
        """Block until a stderr line containing ``needle`` appears; return it.

        Raises:
            ReadTimeout: no such line within ``timeout``.
        """
        with self._lines_changed:
            found = self._lines_changed.wait_for(
                lambda: next((line for line in self.lines if needle in line), None), timeout
            )
        if not found:
            raise ReadTimeout(f"no server log line containing {needle!r} within {timeout:g} s: {self.lines}")
        return found

    def send_sigterm(self) -> None:
        """Ask the server to drain and stop, once (a second SIGTERM may land after
        Python restored the default handler at exit, and kill it)."""
        if not self._sigterm_sent and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self._sigterm_sent = True

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """Send SIGTERM (unless sent already) and return the exit status, bounded.

        Raises:
            ReadTimeout: it did not stop in time (it is killed).
        """
        self.send_sigterm()
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise ReadTimeout(f"netlab serve did not stop within {timeout:g} s after SIGTERM") from None
        self._drainer.join(timeout)
        self.close()
        return status

    def close(self) -> None:
        """Kill the server if it still runs, and release its pipes and directory."""
        self._sigterm_sent = True
        self.child.end(kill=not self._graceful)
        if self._drainer.is_alive():
            self._drainer.join(STOP_TIMEOUT)  # it reads until the child's end closes stderr
        self.child.release()

    def __enter__(self) -> ChildServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
