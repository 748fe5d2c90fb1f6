"""TCP specifics: socket options, bind errors, RST on abort, the timeout=0 answer."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from netlab.errors import BindError, BrokenError, ConnectionRefused, ConnectTimeout
from netlab.transport import Connection, Listener, connect, listen
from netlab.transport.address import ipv6_loopback_available
from netlab.transport.tcp import TcpConnection

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="IPv6 loopback (::1) is unavailable")


def socket_option(descriptor_owner: Connection | Listener, level: int, option: int) -> int:
    """Read a socket option through a duplicate of the public descriptor."""
    with socket.socket(fileno=os.dup(descriptor_owner.fileno())) as duplicate:
        return duplicate.getsockopt(level, option)


@pytest.fixture
def tcp_listener() -> Iterator[Listener]:
    with listen("tcp4://127.0.0.1:0") as bound:
        yield bound


def test_port_zero_binds_an_ephemeral_port(tcp_listener: Listener) -> None:
    assert tcp_listener.address.port not in (None, 0)
    assert tcp_listener.address.host == "127.0.0.1"


def test_every_connection_has_nodelay_and_the_listener_reuseaddr(tcp_listener: Listener) -> None:
    with connect(tcp_listener.address) as client, tcp_listener.accept(timeout=5.0) as server:
        assert isinstance(client, TcpConnection) and isinstance(server, TcpConnection)
        assert socket_option(client, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert socket_option(server, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert socket_option(tcp_listener, socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1


@needs_ipv6
def test_tcp6_listener_is_ipv6_only() -> None:
    with listen("tcp6://[::1]:0") as bound:
        assert socket_option(bound, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert str(bound.address).startswith("tcp6://[::1]:")


def test_a_port_in_use_is_a_bind_error(tcp_listener: Listener) -> None:
    with pytest.raises(BindError, match="is in use — is another netlab server running"):
        listen(tcp_listener.address)


def test_a_foreign_address_is_a_bind_error() -> None:
    with pytest.raises(BindError, match="not an address of this machine"):
        listen("tcp4://192.0.2.1:0")  # TEST-NET-1: never configured here; bind sends nothing


def test_refused_message_names_the_address(tcp_listener: Listener) -> None:
    address = tcp_listener.address
    tcp_listener.close()
    with pytest.raises(ConnectionRefused, match=rf"nothing listens on {address} — is the server running\?"):
        connect(address, timeout=2.0)


def test_abort_sends_rst_even_with_nothing_unread(tcp_listener: Listener) -> None:
    with connect(tcp_listener.address) as client, tcp_listener.accept(timeout=5.0) as server:
        server.abort()
        with pytest.raises(BrokenError):
            client.receive(timeout=5.0)


def test_plain_close_is_a_clean_end_of_stream(tcp_listener: Listener) -> None:
    with connect(tcp_listener.address) as client, tcp_listener.accept(timeout=5.0) as server:
        server.close()
        assert client.receive(timeout=5.0) == b""


def test_timeout_zero_reports_the_immediate_answer(tcp_listener: Listener) -> None:
    """Over loopback the handshake finishes inside connect(): accepted, refused and dropped differ at once."""
    with listen("tcp4://127.0.0.1:0", backlog=0) as full:
        admitted = connect(full.address, timeout=0)
        with pytest.raises(ConnectTimeout, match="at once"):
            connect(full.address, timeout=0)  # the SYN was dropped: no answer yet
        admitted.close()
    address = tcp_listener.address
    tcp_listener.close()
    with pytest.raises(ConnectionRefused):
        connect(address, timeout=0)


def test_connection_addresses_are_urls(tcp_listener: Listener) -> None:
    with connect(tcp_listener.address) as client, tcp_listener.accept(timeout=5.0) as server:
        assert client.local_address == server.peer_address
        assert client.peer_address == server.local_address == str(tcp_listener.address)
        assert client.local_address.startswith("tcp4://127.0.0.1:")


def test_host_names_are_resolved() -> None:
    with (
        listen("tcp4://localhost:0") as bound,
        connect(f"tcp4://localhost:{bound.address.port}") as client,
        bound.accept(timeout=5.0),
    ):
        assert client.peer_address == f"tcp4://127.0.0.1:{bound.address.port}"
