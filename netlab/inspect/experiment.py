"""A real command server running in this process, for captures and walkthroughs.

How this works: :func:`running_server` is the service's one launcher
(:func:`~netlab.service.launch.server_in_thread`) with the settings captures
want: a quiet log, a 30 s idle timeout, a short shutdown grace, and, when a
tap recorder is given, every accepted connection tapped (labelled ``server``)
so the syscall tap sees the server side.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netlab.service.launch import server_in_thread
from netlab.service.server import Server
from netlab.transport.base import Connection
from netlab.transport.tap import TappedConnection, TapRecorder

STOP_TIMEOUT = 10.0


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

    def tap(connection: Connection) -> Connection:
        assert recorder is not None
        return TappedConnection(connection, recorder, "server")

    with server_in_thread(address, model=model, framing=framing, backlog=backlog, quiet=True,
                          wrap_accepted=tap if recorder is not None else None, listen_options=listen_options,
                          idle_timeout=30.0, shutdown_grace=1.0, stop_timeout=STOP_TIMEOUT) as running:
        yield running.server
