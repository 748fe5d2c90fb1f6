"""A real command server running in this process, for captures and walkthroughs.

How this works: :func:`running_server` listens on an address (port 0 picks an
ephemeral port), runs one of the service's server models on a thread, yields
the server (``server.listener.address`` is where it listens) and shuts it down
on exit, waiting a bounded time for it to stop. Connections it accepts can be
wrapped in :class:`TappedConnection` so the syscall tap sees the server side.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netlab.service.executor import Executor
from netlab.service.handler import ServiceConfig
from netlab.service.log import ServerLog
from netlab.service.policy import Policy
from netlab.service.server import Server, make_server
from netlab.transport import listen
from netlab.transport.base import Connection, Listener
from netlab.transport.tap import TappedConnection, TapRecorder

STOP_TIMEOUT = 10.0


class TappedListener(Listener):
    """A listener whose accepted connections record every send and recv to a tap."""

    def __init__(self, inner: Listener, recorder: TapRecorder, label: str = "server") -> None:
        """Wrap ``inner``; accepted connections are labelled ``label``."""
        self.inner = inner
        self.recorder = recorder
        self.label = label
        self.address = inner.address

    def accept(self, timeout: float | None = None) -> Connection:
        """Accept from the inner listener and wrap the connection in the tap."""
        return TappedConnection(self.inner.accept(timeout), self.recorder, self.label)

    def close(self) -> None:
        """Close the inner listener."""
        self.inner.close()

    def fileno(self) -> int:
        """The inner listener's descriptor."""
        return self.inner.fileno()


@contextmanager
def running_server(
    address: str,
    *,
    framing: str = "length",
    model: str = "threaded",
    backlog: int = 16,
    recorder: TapRecorder | None = None,
    **listen_options: Any,
) -> Iterator[Server]:
    """Run a command server on a thread for the duration of a ``with`` block.

    Args:
        address: where to listen, e.g. ``tcp4://127.0.0.1:0`` or ``unix:///tmp/x/s.sock``.
        framing: the framing the server speaks.
        model: iterative, threaded or selector.
        backlog: the listen backlog.
        recorder: when given, the server's connections are tapped into it.
        listen_options: transport options for ``listen`` (e.g. ``impairment`` for UDP).
    Yields:
        The running server; ``server.listener.address`` is the bound address.
    Raises:
        BindError, AddressError: the address cannot be listened on.
    """
    listener: Listener = listen(address, backlog, **listen_options)
    if recorder is not None:
        listener = TappedListener(listener, recorder)
    config = ServiceConfig(framing=framing, idle_timeout=30.0)
    server = make_server(model, listener, Executor(Policy()), config, ServerLog(io.StringIO(), quiet=True),
                         shutdown_grace=1.0)
    thread = threading.Thread(target=server.serve_forever, name="netlab-experiment-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.request_shutdown()
        server.stopped.wait(STOP_TIMEOUT)
