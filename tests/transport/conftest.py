"""Fixtures shared by the transport tests: one parametrized case per transport."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from netlab.transport import Connection, Listener, connect, listen
from netlab.transport.address import ipv6_loopback_available


@dataclass(frozen=True)
class TransportCase:
    """How to make a fresh listening address for one transport."""

    name: str
    make_url: Callable[[str], str]  # given a private temporary directory
    preserves_boundaries: bool
    is_socket: bool


CASES = {
    "tcp4": TransportCase("tcp4", lambda directory: "tcp4://127.0.0.1:0", False, True),
    "tcp6": TransportCase("tcp6", lambda directory: "tcp6://[::1]:0", False, True),
    "unix": TransportCase("unix", lambda directory: f"unix://{directory}/stream.sock", False, True),
    "unix-seqpacket": TransportCase(
        "unix-seqpacket", lambda directory: f"unix-seqpacket://{directory}/seqpacket.sock", True, True
    ),
    "memory": TransportCase("memory", lambda directory: "memory://", False, False),
}


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A private temporary directory with a short path (sun_path holds only 107 bytes)."""
    directory = tempfile.mkdtemp(prefix="nl-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> TransportCase:
    """Each transport in turn; tcp6 is skipped when ::1 is unavailable."""
    if request.param == "tcp6" and not ipv6_loopback_available():
        pytest.skip("IPv6 loopback (::1) is unavailable on this machine")
    return CASES[request.param]


@pytest.fixture
def url(case: TransportCase, short_tmp: str) -> str:
    """A fresh address URL for the current transport (port 0 / new path / new name)."""
    return case.make_url(short_tmp)


@pytest.fixture
def listener(url: str) -> Iterator[Listener]:
    """A listener on the current transport, closed after the test."""
    with listen(url) as bound:
        yield bound


@pytest.fixture
def pair(listener: Listener) -> Iterator[tuple[Connection, Connection]]:
    """(client, server): a connected pair over the current transport."""
    client = connect(listener.address, timeout=5.0)
    server = listener.accept(timeout=5.0)
    yield client, server
    client.close()
    server.close()
