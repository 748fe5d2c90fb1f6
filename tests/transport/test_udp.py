"""The sequenced UDP transport over real loopback sockets (127.0.0.1 and ::1 only)."""

from __future__ import annotations

import random
import select
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from netlab.errors import (
    BrokenError,
    ClosedError,
    ConnectionRefused,
    ConnectTimeout,
    ReadError,
    ReadTimeout,
    UsageError,
    WriteTimeout,
)
from netlab.proto.seq import FAST_FLOOR, SequencingConfig, SequencingConnection
from netlab.proto.seq.cookie import CookieIssuer
from netlab.proto.seq.wire import DatagramType, encode
from netlab.transport import connect, listen
from netlab.transport.address import ipv6_loopback_available
from netlab.transport.impairment import Impairment
from netlab.transport.udp import (
    UdpConnection,
    UdpListener,
    UdpOptions,
    connect_udp,
    listen_udp,
)

FAST = UdpOptions(rto_floor=FAST_FLOOR, initial_rto=0.2)


@pytest.fixture
def listener() -> Iterator[UdpListener]:
    bound = listen("udp://127.0.0.1:0", options=FAST)
    assert isinstance(bound, UdpListener)
    yield bound
    bound.close()


@pytest.fixture
def pair(listener: UdpListener) -> Iterator[tuple[UdpConnection, UdpConnection]]:
    client = connect_udp(listener.address, 5.0, options=FAST)
    server = listener.accept(timeout=5.0)
    yield client, server
    client.close()
    server.close()


def test_messages_keep_their_boundaries_both_ways(
    pair: tuple[UdpConnection, UdpConnection],
) -> None:
    client, server = pair
    assert client.preserves_boundaries and server.preserves_boundaries
    assert client.max_message_size == server.max_message_size == SequencingConfig().max_message_size
    for message in (b"one", b"two", b"three"):
        client.send(message)
    assert [server.receive(timeout=5.0) for _ in range(3)] == [b"one", b"two", b"three"]
    server.send(b"reply")
    assert client.receive(timeout=5.0) == b"reply"
    assert client.peer_address == server.local_address
    assert server.peer_address == client.local_address


def test_a_message_larger_than_a_datagram_arrives_whole(
    pair: tuple[UdpConnection, UdpConnection],
) -> None:
    client, server = pair
    message = random.Random(2).randbytes(256 * 1024 + 17)
    client.send(message, timeout=10.0)
    assert server.receive(1024, timeout=10.0) == message  # never cut to max_bytes
    assert client.statistics().data_datagrams_sent > 200


def test_receive_into_takes_a_whole_message_or_says_it_does_not_fit(
    pair: tuple[UdpConnection, UdpConnection],
) -> None:
    client, server = pair
    buffer = bytearray(4096)
    client.send(b"fits", timeout=5.0)
    assert server.receive_into(memoryview(buffer), timeout=5.0) == 4 and buffer[:4] == b"fits"
    client.send(bytes(5000), timeout=5.0)
    with pytest.raises(ReadError, match="5000-byte message .* does not fit the 4096-byte receive buffer"):
        server.receive_into(memoryview(buffer), timeout=5.0)


def test_url_registry_serves_udp_and_the_statistics_are_filled(
    listener: UdpListener,
) -> None:
    with (
        connect(str(listener.address), timeout=5.0) as client,
        listener.accept(timeout=5.0) as server,
    ):
        client.send(b"x" * 3000)
        assert server.receive(timeout=5.0) == b"x" * 3000
        server.send(b"y")
        assert client.receive(timeout=5.0) == b"y"
        assert isinstance(client, UdpConnection)
        stats = client.statistics()
    assert stats.messages_sent == 1 and stats.messages_delivered == 1
    assert stats.datagrams_sent >= 3 and stats.bytes_sent > 3000
    assert stats.srtt is not None and stats.rto >= FAST_FLOOR
    assert stats.elapsed > 0 and stats.goodput > 0


def test_several_clients_share_one_server_socket(listener: UdpListener) -> None:
    clients = [connect_udp(listener.address, 5.0, options=FAST) for _ in range(5)]
    servers = [listener.accept(timeout=5.0) for _ in clients]
    for index, client in enumerate(clients):
        client.send(f"client {index}".encode())
    by_peer = {server.peer_address: server for server in servers}
    for index, client in enumerate(clients):
        server = by_peer[client.local_address]
        assert server.receive(timeout=5.0) == f"client {index}".encode()
        server.send(f"back to {index}".encode())
        assert client.receive(timeout=5.0) == f"back to {index}".encode()
    for connection in clients + servers:
        connection.close()
    assert listener.statistics().connections_accepted == 5


@pytest.mark.skipif(
    not ipv6_loopback_available(),
    reason="IPv6 loopback (::1) is unavailable on this machine",
)
def test_udp6_over_ipv6_loopback() -> None:
    with (
        listen("udp6://[::1]:0", options=FAST) as bound,
        connect(bound.address, timeout=5.0) as client,
    ):
        server = bound.accept(timeout=5.0)
        client.send(b"over v6")
        assert server.receive(timeout=5.0) == b"over v6"
        assert server.peer_address.startswith("udp6://[::1]:")
        server.close()


def test_connect_to_a_closed_port_is_refused_by_icmp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A handshake timeout would raise ConnectTimeout; only ICMP gives ConnectionRefused.
    with pytest.raises(ConnectionRefused):
        connect(f"udp://127.0.0.1:{port}", timeout=5.0)


def test_connect_times_out_when_nobody_answers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, so no ICMP, but never answers
        with pytest.raises(ConnectTimeout, match="is a netlab udp server listening there"):
            connect_udp(f"udp://127.0.0.1:{silent.getsockname()[1]}", 0.3)


def test_garbage_oversized_and_damaged_datagrams_do_not_stop_the_server(
    listener: UdpListener,
) -> None:
    host, port = listener.address.host, listener.address.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        attacker.connect((host, port))
        rng = random.Random(9)
        for size in (0, 1, 20, 35, 36, 100, 999):
            attacker.send(rng.randbytes(size))
        attacker.send(bytes(5000))  # larger than the 1200-byte datagram size
        header, payload = encode(DatagramType.INITIAL, 0, 5, 1, 0, 10, bytes(1164))
        damaged = bytearray(header + payload)
        damaged[40] ^= 1
        attacker.send(bytes(damaged))
        with (
            connect_udp(listener.address, 5.0, options=FAST) as client,
            listener.accept(timeout=5.0) as server,
        ):
            client.send(b"still serving")
            assert server.receive(timeout=5.0) == b"still serving"
    stats = listener.statistics()
    assert stats.oversized == 1
    assert stats.checksum_failures >= 1
    assert stats.garbage + stats.checksum_failures >= 5


def test_half_close_close_and_reset(pair: tuple[UdpConnection, UdpConnection]) -> None:
    client, server = pair
    client.send(b"request")
    client.shutdown_write()
    assert server.receive(timeout=5.0) == b"request"
    assert server.receive(timeout=5.0) == b""
    with pytest.raises(ClosedError):
        client.send(b"more")
    server.send(b"reply")
    server.close()
    assert client.receive(timeout=5.0) == b"reply"
    assert client.receive(timeout=5.0) == b""


def test_abort_is_broken_error_for_the_peer(
    pair: tuple[UdpConnection, UdpConnection],
) -> None:
    client, server = pair
    client.send(b"never read")
    server.abort()
    with pytest.raises(BrokenError):
        client.receive(timeout=5.0)
    with pytest.raises(BrokenError):
        client.send(b"anyone?", timeout=5.0)


def test_close_from_another_thread_ends_a_blocked_receive(
    pair: tuple[UdpConnection, UdpConnection],
) -> None:
    client, _ = pair
    with ThreadPoolExecutor(max_workers=1) as pool:
        receiving = pool.submit(client.receive, 100, 10.0)
        client.close()
        with pytest.raises(ClosedError):
            receiving.result(timeout=10.0)


def test_write_timeout_when_the_peer_does_not_read(listener: UdpListener) -> None:
    options = UdpOptions(rto_floor=FAST_FLOOR, window=32, send_buffer_size=256 * 1024)
    with (
        connect_udp(listener.address, 5.0, options=options) as client,
        listener.accept(timeout=5.0),
        pytest.raises(WriteTimeout),
    ):
        for _ in range(100):  # bounded: 32 datagrams of window + 256 KiB of buffer
            client.send(b"\0" * 65536, timeout=0.2)


def test_fileno_is_readable_exactly_while_a_message_waits(
    pair: tuple[UdpConnection, UdpConnection],
) -> None:
    client, server = pair
    assert select.select([server.fileno()], [], [], 0)[0] == []
    client.send(b"wake up")
    assert select.select([server.fileno()], [], [], 5.0)[0] == [server.fileno()]
    assert server.receive(timeout=0) == b"wake up"
    assert select.select([server.fileno()], [], [], 0)[0] == []


def test_listener_fileno_is_readable_when_a_connection_waits(
    listener: UdpListener,
) -> None:
    assert select.select([listener.fileno()], [], [], 0)[0] == []
    with connect_udp(listener.address, 5.0, options=FAST):
        assert select.select([listener.fileno()], [], [], 5.0)[0] == [listener.fileno()]
        listener.accept(timeout=0).close()


def test_accept_queue_beyond_backlog_makes_connect_time_out() -> None:
    with listen_udp("udp://127.0.0.1:0", backlog=0, options=FAST) as full:
        first = connect_udp(full.address, 5.0, options=FAST)
        with pytest.raises(ConnectTimeout) as refused:
            connect_udp(full.address, 0.5, options=FAST)
        # The server is there (it sent a cookie): the message must not ask whether one listens.
        assert "accept queue is full" in str(refused.value) and "listening there" not in str(refused.value)
        first.close()
        assert full.statistics().accept_queue_drops >= 1


def test_server_learns_of_a_vanished_client_from_icmp(listener: UdpListener) -> None:
    """A client that disappears without FIN: the server's next send meets ICMP port unreachable."""
    config = SequencingConfig()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.settimeout(5.0)
        raw.connect((listener.address.host, listener.address.port))
        machine = SequencingConnection.connect(config, 0.0)
        for _ in range(2):  # INITIAL -> RETRY, COOKIE_ECHO -> ACCEPT
            for header, payload in machine.datagrams_to_send():
                raw.send(header + bytes(payload))
            machine.receive_datagram(raw.recv(65536), 0.0)
        assert machine.is_established
        for header, payload in machine.datagrams_to_send():  # the ACK that confirms the handshake
            raw.send(header + bytes(payload))
        server = listener.accept(timeout=5.0)
    # The raw socket is closed: its port is gone.
    server.send(b"anyone home?")
    with pytest.raises(BrokenError):
        server.receive(timeout=10.0)
    assert listener.statistics().icmp_errors >= 1
    server.close()


def test_ten_mebibytes_through_ten_percent_loss_on_both_sides(
    listener: UdpListener,
) -> None:
    lossy = UdpOptions(
        payload_size=8192,
        window=128,
        rto_floor=FAST_FLOOR,
        initial_rto=0.2,
        retry_limit=20,
        impairment=Impairment(loss=0.10, seed=7),
    )
    with listen_udp(
        "udp://127.0.0.1:0", options=replace_seed(lossy, 8)
    ) as lossy_listener:
        client = connect_udp(lossy_listener.address, 10.0, options=lossy)
        server = lossy_listener.accept(timeout=10.0)
        rng = random.Random(4)
        messages = [rng.randbytes(rng.randrange(1, 200_000)) for _ in range(100)]
        total = sum(map(len, messages))
        while total < 10 * 1024 * 1024:
            messages.append(rng.randbytes(200_000))
            total += 200_000
        received: list[bytes] = []

        def read_all() -> None:
            while len(received) < len(messages):
                received.append(server.receive(timeout=30.0))

        reader = threading.Thread(target=read_all)
        reader.start()
        for message in messages:
            client.send(message, timeout=30.0)
        reader.join(timeout=120.0)
        assert not reader.is_alive(), "the transfer did not finish"
        assert received == messages
        sent, got = client.statistics(), server.statistics()
        assert sent.retransmits > 0
        assert got.payload_bytes_delivered == total
        client.close()
        server.close()


def test_options_are_validated() -> None:
    with pytest.raises(UsageError):
        listen("udp://127.0.0.1:0", options=UdpOptions(), colour="blue")
    with pytest.raises(UsageError):
        UdpOptions.build(payload_size=10)


def replace_seed(options: UdpOptions, seed: int) -> UdpOptions:
    assert options.impairment is not None
    return UdpOptions.build(
        options, impairment=Impairment(**{**options.impairment.__dict__, "seed": seed})
    )


def test_cookie_issuer_is_per_listener() -> None:
    """Two listeners never accept each other's cookies (each has its own secret)."""
    first, second = CookieIssuer(), CookieIssuer()
    cookie = first.make(("127.0.0.1", 1), 1, 0.0)
    assert first.verify(cookie, ("127.0.0.1", 1), 1, 0.0)
    assert not second.verify(cookie, ("127.0.0.1", 1), 1, 0.0)


@pytest.mark.parametrize(("client_size", "server_size"), [(9000, 1200), (1200, 9000)])
def test_ends_with_different_datagram_limits_agree_on_the_smaller(client_size: int, server_size: int) -> None:
    with listen_udp("udp://127.0.0.1:0", options=FAST, payload_size=server_size) as bound:
        client = connect_udp(bound.address, 5.0, options=FAST, payload_size=client_size)
        server = bound.accept(timeout=5.0)
        try:
            assert client.message_fragment_size == server.message_fragment_size == 1200 - 36
            message = bytes(range(256)) * 400  # 102,400 bytes, many fragments
            client.send(message, timeout=10.0)
            assert server.receive(timeout=10.0) == message
            server.send(message, timeout=10.0)
            assert client.receive(timeout=10.0) == message
            assert bound.statistics().oversized == 0
            assert client.endpoint_statistics().oversized == 0
        finally:
            client.close()
            server.close()


def test_an_empty_message_is_not_the_end_of_the_stream(pair: tuple[UdpConnection, UdpConnection]) -> None:
    client, server = pair
    client.send(b"")
    client.send(b"after")
    assert server.receive(timeout=5.0) == b"after"
    client.shutdown_write()
    assert server.receive(timeout=5.0) == b""  # only FIN ends it


def test_a_handshake_the_client_never_confirms_is_not_accepted_and_ends_with_the_listener() -> None:
    listener = listen_udp("udp://127.0.0.1:0", options=FAST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.settimeout(5.0)
        raw.connect((listener.address.host, listener.address.port))
        machine = SequencingConnection.connect(SequencingConfig(), 0.0)
        for _ in range(2):  # INITIAL -> RETRY, COOKIE_ECHO -> ACCEPT, and no confirming ACK
            for header, payload in machine.datagrams_to_send():
                raw.send(header + bytes(payload))
            machine.receive_datagram(raw.recv(65536), 0.0)
        assert machine.is_established
        with pytest.raises(ReadTimeout):
            listener.accept(timeout=0.3)
        assert listener.statistics().connections_accepted == 0
        listener.close()
        assert listener.wait_stopped(5.0)  # the half-open connection did not keep the socket open
        for _ in range(20):  # repeated ACCEPTs may come first; then the RESET tells the client
            machine.receive_datagram(raw.recv(65536), 0.0)
            if machine.error is not None:
                break
        assert isinstance(machine.error, BrokenError)
