"""Experiment ``timeouts``: which error each kind of waiting gives, and after how long (measured).

How this works, per transport; each case is timed from the call to the error:

- ``nothing listening``: connect to a port that was just closed (TCP: RST at
  once, ECONNREFUSED; UDP: the ICMP port-unreachable arrives as ECONNREFUSED
  on the next call) or a socket path that does not exist (UNIX: ENOENT, no
  such socket file, which is not a refusal). One untimed attempt goes first,
  so the time is the kernel's answer, not the first call's one-off cost
  (imports, resolver, cold caches: about a millisecond).
- ``full backlog``: a listener with backlog 0 holding one unaccepted client;
  connect with ``connect_timeout`` (TCP: the SYN is dropped, so a timeout;
  UNIX: this connect is blocking, so it waits for room, then gives up; a
  non-blocking one would get EAGAIN at once, as the backlog table shows;
  UDP: the server answers the INITIAL with a cookie but drops the echo, so
  the handshake times out saying the accept queue is full).
- ``slow command``: a running server, ``sleep`` longer than the client's
  ``read_timeout``.
- ``idle connection``: a server with ``idle_timeout``; the client connects,
  waits until the server speaks or hangs up, then tries a command. The client
  writes first, so where the server has already closed (UNIX) the write fails
  with EPIPE, a broken pipe, while the server's idle message still sits
  unread in the client's receive buffer; the note says how many bytes.
- ``command timeout``: a server with ``command_timeout``; ``sleep`` longer.

Against a remote target (``netlab run --target``) the slow command runs
there (with a 1 s command limit asked in the request, so the target does not
keep sleeping) and the command timeout is the one the request asks for (a
request may lower the target's own limit); the other three cases need a
closed port, a listener or the idle limit of a server netlab sets up itself,
so their rows say ``skipped`` and why.

The outcome column is the netlab error class the caller catches, with the
kernel's errno when one caused it (or the reply the service sent), the note
its message; "after" is measured around
the one call that waits (server start and stop are not counted).
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import NetlabError
from netlab.scenario.charts import BARS, Chart
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext
from netlab.scenario.experiments.common import (
    ALL_TRANSPORTS,
    client_for,
    listen_url,
    milliseconds,
    on_client,
    placed_service,
    require_transport,
    served,
    service_url,
)
from netlab.scenario.target import not_on_target
from netlab.service.client import Client
from netlab.transport import connect, listen

MESSAGE_LENGTH = 200
#: The cases that need a server or a port netlab sets up itself, with why (a remote target skips them).
LOCAL_CASES = {
    "nothing listening": "it needs a port netlab has just closed on the server host",
    "full backlog": "it needs a listener netlab fills on the server host",
    "idle connection": "it needs the idle timeout of a server netlab starts (the target's is its own)",
}
#: Against a target, the slow command asks to be killed after this long, so the target does not keep sleeping.
TARGET_SLEEP_LIMIT = 1.0


@dataclass
class TimeoutRow:
    """One way of waiting on one transport."""

    transport: str = field(metadata={"key": True})
    case: str = field(metadata={"key": True})
    bound_s: float | None = field(default=None, metadata={"heading": "bound s"})
    outcome: str = ""
    after_ms: float | None = field(default=None, metadata={"heading": "after ms"})
    note: str = ""


def run(parameters: Mapping[str, Any], context: RunContext) -> list[TimeoutRow]:
    """Provoke each kind of wait on one transport and time the error."""
    transport = parameters["transport"]
    require_transport(transport, context.network)
    cases: list[tuple[str, float | None, Callable[[], tuple[str, float]]]] = [
        ("nothing listening", parameters["connect_timeout"], lambda: _nothing_listening(transport, parameters, context)),  # noqa: E501
        ("full backlog", parameters["connect_timeout"], lambda: _full_backlog(transport, parameters, context)),
        ("slow command", parameters["read_timeout"], lambda: _slow_command(transport, parameters, context)),
        ("idle connection", parameters["idle_timeout"], lambda: _idle_connection(transport, parameters, context)),
        ("command timeout", parameters["command_timeout"], lambda: _command_timeout(transport, parameters, context)),
    ]
    rows = []
    for case, bound, action in cases:
        context.check()
        if context.target is not None and case in LOCAL_CASES:
            rows.append(TimeoutRow(transport, case, bound, "skipped", None,
                                   not_on_target(LOCAL_CASES[case])))
            continue
        outcome, elapsed = action()
        name, _, message = outcome.partition(": ")
        rows.append(TimeoutRow(transport, case, bound, name, milliseconds(elapsed), _shorten(message)))
    return rows


def _timed(call: Callable[[], str]) -> tuple[str, float]:
    """Run the one call that waits; return its outcome (or error) and how long it took."""
    started = time.monotonic()
    try:
        outcome = call()
    except NetlabError as exc:
        outcome = f"{type(exc).__name__}{_errno_of(exc)}: {exc}"
    return outcome, time.monotonic() - started


def _errno_of(error: BaseException) -> str:
    """`` (ENOENT)`` when an OSError with an errno caused ``error``, else ''."""
    cause: BaseException | None = error
    for _ in range(4):  # bounded: causes may chain through a wrapper or two
        cause = cause.__cause__ if cause is not None else None
        if isinstance(cause, OSError) and cause.errno is not None and cause.errno in errno.errorcode:
            return f" ({errno.errorcode[cause.errno]})"
    return ""


def _connected(connection: Any) -> str:
    connection.close()
    return "connected: something answered"


def _nothing_listening(transport: str, parameters: Mapping[str, Any], context: RunContext) -> tuple[str, float]:
    if transport.startswith("unix"):
        url = listen_url(transport, context.work_directory, "missing")
    else:
        family = socket.AF_INET6 if transport.endswith("6") else socket.AF_INET
        kind = socket.SOCK_DGRAM if transport.startswith("udp") else socket.SOCK_STREAM
        host = context.network.server_host(transport)
        with context.network.server(), socket.socket(family, kind) as probe:  # a port that was free a moment ago
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        url = f"{transport}://{f'[{host}]' if ':' in host else host}:{port}"

    def attempt() -> str:
        return _connected(on_client(context, lambda: connect(url, timeout=parameters["connect_timeout"])))

    _timed(attempt)  # untimed: the first call's one-off costs
    return _timed(attempt)


def _full_backlog(transport: str, parameters: Mapping[str, Any], context: RunContext) -> tuple[str, float]:
    with context.network.server():
        listener = listen(service_url(transport, context), 0)
    with listener:
        waiting = []
        try:
            for _ in range(2):  # backlog 0 admits one; the second attempt must find it full
                try:
                    waiting.append(on_client(context, lambda: connect(
                        listener.address, timeout=0 if transport.startswith("unix") else 0.2)))
                except NetlabError:
                    break
            return _timed(lambda: _connected(on_client(context, lambda: connect(
                listener.address, timeout=parameters["connect_timeout"]))))
        finally:
            for connection in waiting:
                connection.close()


def _slow_command(transport: str, parameters: Mapping[str, Any], context: RunContext) -> tuple[str, float]:
    limit = TARGET_SLEEP_LIMIT if context.target is not None else 0.0  # 0: the server's own (1 s here)
    with served(context, service_url(transport, context), command_timeout=1.0) as endpoint:
        with client_for(context, endpoint, read_timeout=parameters["read_timeout"]) as client:
            sleep = ("sleep", f"{parameters['read_timeout'] * 3:g}")
            return _timed(lambda: f"reply: exit {client.run(sleep, timeout=limit).exit.exit_status}")


def _idle_connection(transport: str, parameters: Mapping[str, Any], context: RunContext) -> tuple[str, float]:
    idle = parameters["idle_timeout"]
    with placed_service(context, service_url(transport, context), idle_timeout=idle) as service:
        with on_client(context, lambda: Client(service.address, read_timeout=idle * 4)) as client:

            def wait_then_ask() -> str:
                readable, _, _ = select.select([client.connection.fileno()], [], [], idle * 4)
                if not readable:
                    return f"nothing: the server said nothing within {idle * 4:g} s"
                client.run(("echo", "still there?"))
                return "reply: the connection was still open"

            outcome, elapsed = _timed(wait_then_ask)
            name, _, message = outcome.partition(": ")
            if name.endswith(" (EPIPE)"):
                outcome = f"{name}: a broken pipe: the client wrote first{_unread(client.connection)}; {message}"
            return outcome, elapsed


def _unread(connection: Any) -> str:
    """How many bytes the peer left unread in our receive buffer (its last message), as a note fragment."""
    try:
        waiting = connection.receive(65536, 0.1)
    except NetlabError:
        return ""
    return f", while the server's message ({len(waiting)} bytes) was still unread" if waiting else ""


def _command_timeout(transport: str, parameters: Mapping[str, Any], context: RunContext) -> tuple[str, float]:
    limit = parameters["command_timeout"]
    asked = limit if context.target is not None else 0.0  # a target's own limit is its own: the request lowers it
    with served(context, service_url(transport, context), command_timeout=limit) as endpoint:
        with client_for(context, endpoint, read_timeout=limit * 8) as client:

            def sleep_too_long() -> str:
                exit_message = client.run(("sleep", f"{limit * 4:g}"), timeout=asked).exit
                status = f"signal {exit_message.signal}" if exit_message.signal is not None else (
                    f"exit {exit_message.exit_status}")
                return f"Exit: {status}{', timed out' if exit_message.timed_out else ''} (a reply, not an exception)"

            return _timed(sleep_too_long)


def _shorten(message: str) -> str:
    return message if len(message) <= MESSAGE_LENGTH else message[: MESSAGE_LENGTH - 3] + "..."


EXPERIMENT = Experiment(
    name="timeouts",
    summary="every way of waiting: which netlab error it raises and after how long",
    parameters=(
        Parameter("transport", str, "tcp4", "which transport", choices=ALL_TRANSPORTS),
        Parameter("connect_timeout", float, 0.5, "client connect timeout, s", minimum=0.01, maximum=30, unit="s"),
        Parameter("read_timeout", float, 0.3, "client read timeout, s", minimum=0.01, maximum=30, unit="s"),
        Parameter("idle_timeout", float, 0.5, "server idle timeout, s", minimum=0.01, maximum=30, unit="s"),
        Parameter("command_timeout", float, 0.5, "server command timeout, s", minimum=0.01, maximum=30, unit="s"),
    ),
    row_type=TimeoutRow,
    run=run,
    method=__doc__ or "",
    local_only="",
    charts=(
        Chart("elapsed", "How long each kind of waiting took before its error", BARS, x=("case",),
              y=("after_ms",), series=("transport",), log_y=True),
    ),
)
