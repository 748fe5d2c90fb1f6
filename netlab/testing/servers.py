"""Command servers for tests: in a thread (checked to stop) or as ``netlab serve`` in a child.

How this works: both come from the service's one launcher
(:mod:`netlab.service.launch`); :func:`serve_in_thread` adds the check a test
wants, that the server really stopped. :func:`read_connection_error` reads a
server's connection-level Error with a bare client session.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netlab.proto.framing import Role, make_framer
from netlab.proto.messages import NEED_DATA, Error
from netlab.proto.session import Session
from netlab.service.launch import ChildProcess, ChildServer, ServerThread, run_netlab, server_in_thread, start_child
from netlab.transport.base import Connection

__all__ = ["ChildProcess", "ChildServer", "ServerThread", "read_connection_error", "run_netlab", "run_netlab_text",
           "serve_in_thread", "start_child"]


@contextmanager
def serve_in_thread(address: Any, **settings: Any) -> Iterator[ServerThread]:
    """Run a server in a thread for the ``with`` block; fail the test if it does not stop.

    ``settings`` are those of :func:`~netlab.service.launch.server_in_thread`:
    the model, framing, policy, limits and ServiceConfig fields.
    """
    with server_in_thread(address, **settings) as running:
        yield running
    assert not running.thread.is_alive(), "the server did not stop within the timeout"


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


def run_netlab_text(*arguments: str, stdin: str | None = None, timeout: float = 60.0,
                    environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """:func:`~netlab.service.launch.run_netlab` with its input and output as text (UTF-8)."""
    data = None if stdin is None else stdin.encode()
    completed = run_netlab(*arguments, timeout=timeout, environment=environment, stdin=data)
    stdout, stderr = (data.decode(errors="replace") for data in (completed.stdout, completed.stderr))
    return subprocess.CompletedProcess(completed.args, completed.returncode, stdout, stderr)
