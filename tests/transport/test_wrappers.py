"""The tap and the slicer pass every property of the connection they wrap on."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from netlab.service.client import Client
from netlab.service.launch import server_in_thread
from netlab.testing import listen_url
from netlab.transport import connect
from netlab.transport.base import Connection
from netlab.transport.slicer import SlicingConnection
from netlab.transport.tap import TappedConnection, TapRecorder

WRAPPERS: dict[str, Callable[[Connection], Connection]] = {
    "tap": lambda inner: TappedConnection(inner, TapRecorder()),
    "slicer": lambda inner: SlicingConnection(inner, random.Random(1), 1000, 60_000, delay=0),
}


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("transport", ["tcp4", "unix", "unix-seqpacket", "udp", "memory"])
def test_a_wrapper_reports_the_inner_connections_limits(transport: str, wrapper: str, tmp_path: Path) -> None:
    with server_in_thread(listen_url(transport, tmp_path)) as running:
        with connect(running.address, 5.0) as inner:
            wrapped = WRAPPERS[wrapper](inner)
            assert wrapped.max_message_size == inner.max_message_size
            assert wrapped.message_fragment_size == inner.message_fragment_size
            assert wrapped.receives_in_place == inner.receives_in_place
            assert wrapped.preserves_boundaries == (inner.preserves_boundaries and wrapper == "tap")


@pytest.mark.parametrize("side", ["client", "server", "both"])
def test_a_tapped_seqpacket_connection_carries_messages_over_its_limit(side: str, tmp_path: Path) -> None:
    """A 220,000-byte request and a 300,000-byte reply: more than one seqpacket message holds."""
    recorder = TapRecorder()

    def tap(connection: Connection) -> Connection:
        return TappedConnection(connection, recorder, "server")

    with server_in_thread(listen_url("unix-seqpacket", tmp_path),
                          wrap_accepted=tap if side != "client" else None) as running:
        connection = connect(running.address, 5.0)
        assert connection.max_message_size is not None and connection.max_message_size < 220_000
        if side != "server":
            connection = TappedConnection(connection, recorder, "client")
        with Client(running.address, connection=connection, read_timeout=10) as client:
            assert client.run(("echo", "x" * 109_999)).stdout == b"x" * 109_999 + b"\n"
            reply = client.run(("blob", "300000"), verify=True)
    assert (reply.stdout_bytes, reply.verified) == (300_000, True)
    largest = max(event.size for event in recorder.events())
    assert 0 < largest <= connection.max_message_size
