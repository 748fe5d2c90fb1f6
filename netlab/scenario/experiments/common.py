"""Helpers the experiments share: addresses, availability checks, a service under test, percentiles.

How this works: :func:`listen_url` gives a loopback or temp-dir address for a
transport; :func:`require_transport` turns "IPv6 is off" or "the UDP
transport is not installed yet" into :class:`RunSkipped` with the reason.
:class:`RunningService` starts a real netlab command server (any model,
framing and limits) on its own thread for the length of a ``with`` block and
stops it, bounded, afterwards.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
from types import TracebackType
from typing import Any

from netlab.errors import AddressError
from netlab.scenario.experiments.base import RunSkipped
from netlab.service.executor import Executor
from netlab.service.handler import ServiceConfig
from netlab.service.log import ServerLog
from netlab.service.policy import Policy
from netlab.service.server import Server, make_server
from netlab.transport import listen, transport_for
from netlab.transport.address import ipv6_loopback_available
from netlab.transport.base import Listener

STREAM_TRANSPORTS = ("tcp4", "tcp6", "unix", "unix-seqpacket")
ALL_TRANSPORTS = STREAM_TRANSPORTS + ("udp",)
SERVER_STOP_TIMEOUT = 10.0


def listen_url(transport: str, work_directory: str, name: str = "service") -> str:
    """A fresh address for ``transport``: an ephemeral loopback port or a socket in the run's temp dir."""
    if transport in ("tcp4", "udp"):
        return f"{transport}://127.0.0.1:0"
    if transport in ("tcp6", "udp6"):
        return f"{transport}://[::1]:0"
    return f"{transport}://{os.path.join(work_directory, name + '.sock')}"


def require_transport(transport: str) -> None:
    """Raise RunSkipped when ``transport`` cannot run here (IPv6 off, transport module missing)."""
    if transport in ("tcp6", "udp6") and not ipv6_loopback_available():
        raise RunSkipped(f"{transport}: IPv6 loopback (::1) is not available on this machine")
    try:
        transport_for(transport)
    except AddressError as exc:
        raise RunSkipped(f"{transport} not available: {exc}") from None


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (fraction 0.5 = median); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def milliseconds(seconds: float | None) -> float | None:
    """Seconds to milliseconds, rounded to microseconds; None stays None."""
    return None if seconds is None else round(seconds * 1000, 3)


class RunningService:
    """A netlab command server on its own thread for the length of a ``with`` block.

    Attributes:
        listener: the listening endpoint (``listener.address`` is where to connect).
        server: the running server.
        log_stream: the server's JSON log lines (connections, commands).
    """

    def __init__(
        self,
        url: str,
        *,
        model: str = "threaded",
        framing: str = "length",
        backlog: int = 128,
        idle_timeout: float = 300.0,
        command_timeout: float = 30.0,
        request_deadline: float = 10.0,
        max_connections: int = 256,
        listener: Listener | None = None,
    ) -> None:
        """Listen on ``url`` (unless a ``listener`` is given) and prepare a server of the given model."""
        self.listener = listener if listener is not None else listen(url, backlog)
        self.log_stream = io.StringIO()
        policy = Policy(command_timeout=command_timeout, kill_grace=0.2)
        config = ServiceConfig(framing=framing, idle_timeout=idle_timeout, request_deadline=request_deadline)
        log = ServerLog(self.log_stream, log_format="json")
        self.server: Server = make_server(model, self.listener, Executor(policy), config, log,
                                          max_connections=max_connections, shutdown_grace=1.0)
        self._thread = threading.Thread(target=self.server.serve_forever, name="netlab-service", daemon=True)

    @property
    def address(self) -> str:
        """The URL clients connect to."""
        return str(self.listener.address)

    def __enter__(self) -> RunningService:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.server.request_shutdown()
        self._thread.join(SERVER_STOP_TIMEOUT)

    def log_events(self, kind: str) -> list[dict[str, Any]]:
        """The server's log events of one kind (``command``, ``connection``, ``warning``)."""
        events = []
        for line in self.log_stream.getvalue().splitlines():
            event = json.loads(line)
            if event.get("event") == kind:
                events.append(event)
        return events
