"""One conformance suite run over every transport: tcp4, tcp6, unix, unix-seqpacket, memory."""

from __future__ import annotations

import random
import select
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from netlab.errors import (
    BrokenError,
    ClosedError,
    ConnectionRefused,
    ConnectTimeout,
    ReadTimeout,
    WriteTimeout,
)
from netlab.transport import Connection, Listener, connect, listen

from .conftest import TransportCase

LARGE_PAYLOAD_SIZE = 10 * 1024 * 1024
#: Seqpacket sends whole messages, so large payloads go in chunks the receiver takes whole.
CHUNK_SIZE = 65536


def receive_exactly(connection: Connection, size: int, timeout: float = 10.0) -> bytes:
    """Receive until ``size`` bytes arrived; fails on early end of stream or after ``timeout``."""
    deadline = time.monotonic() + timeout
    parts: list[bytes] = []
    received = 0
    while received < size:
        assert time.monotonic() < deadline, f"only {received} of {size} bytes arrived within {timeout} s"
        max_bytes = CHUNK_SIZE if connection.preserves_boundaries else min(CHUNK_SIZE, size - received)
        chunk = connection.receive(max_bytes, timeout)
        assert chunk, f"end of stream after {received} of {size} bytes"
        parts.append(chunk)
        received += len(chunk)
    return b"".join(parts)


def receive_into_exactly(connection: Connection, size: int, timeout: float = 10.0) -> bytes:
    """Like :func:`receive_exactly`, through ``receive_into`` and one reused buffer."""
    deadline = time.monotonic() + timeout
    buffer = bytearray(CHUNK_SIZE)
    parts: list[bytes] = []
    received = 0
    while received < size:
        assert time.monotonic() < deadline, f"only {received} of {size} bytes arrived within {timeout} s"
        view = memoryview(buffer)
        if not connection.preserves_boundaries:
            view = view[: min(CHUNK_SIZE, size - received)]
        count = connection.receive_into(view, timeout)
        assert count, f"end of stream after {received} of {size} bytes"
        parts.append(bytes(buffer[:count]))
        received += count
    return b"".join(parts)


def send_payload(connection: Connection, payload: bytes) -> None:
    """Send ``payload``: in one send on streams, as CHUNK_SIZE messages where boundaries hold."""
    if not connection.preserves_boundaries:
        connection.send(payload, timeout=30.0)
        return
    for offset in range(0, len(payload), CHUNK_SIZE):
        connection.send(payload[offset : offset + CHUNK_SIZE], timeout=30.0)


def wait_until_readable(connection: Connection) -> None:
    """Wait (bounded) until data is queued for ``connection``; memory data is queued at once."""
    if connection.fileno() >= 0:
        readable, _, _ = select.select([connection.fileno()], [], [], 5.0)
        assert readable, "the data never arrived"


def test_connect_and_exchange_small_messages(
    case: TransportCase, listener: Listener, pair: tuple[Connection, Connection]
) -> None:
    client, server = pair
    client.send(b"ping")
    assert receive_exactly(server, 4) == b"ping"
    server.send(b"pong")
    assert receive_exactly(client, 4) == b"pong"
    assert client.peer_address == str(listener.address)
    assert server.local_address and server.peer_address and client.local_address
    assert client.preserves_boundaries is case.preserves_boundaries
    assert server.preserves_boundaries is case.preserves_boundaries


def test_connect_accepts_a_url_string(listener: Listener) -> None:
    with connect(str(listener.address), timeout=5.0) as client, listener.accept(timeout=5.0) as server:
        client.send(b"x")
        assert receive_exactly(server, 1) == b"x"


@pytest.mark.parametrize("how", ["receive", "receive_into"])
def test_large_payload_arrives_byte_exact_both_ways(how: str, pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    receive = receive_exactly if how == "receive" else receive_into_exactly
    payload = random.Random(6969).randbytes(LARGE_PAYLOAD_SIZE)
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(send_payload, client, payload)
        assert receive(server, LARGE_PAYLOAD_SIZE, timeout=60.0) == payload
        sending.result(timeout=30.0)
        sending = pool.submit(send_payload, server, payload)
        assert receive(client, LARGE_PAYLOAD_SIZE, timeout=60.0) == payload
        sending.result(timeout=30.0)


def test_message_boundaries_hold_only_where_promised(case: TransportCase, pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    for message in (b"one", b"two", b"three"):
        client.send(message)
    if case.preserves_boundaries:
        assert [server.receive(timeout=5.0) for _ in range(3)] == [b"one", b"two", b"three"]
    else:
        assert receive_exactly(server, 11) == b"onetwothree"


def test_half_close_lets_the_peer_answer(pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    client.send(b"request")
    client.shutdown_write()
    assert receive_exactly(server, 7) == b"request"
    assert server.receive(timeout=5.0) == b""
    server.send(b"reply")
    server.close()
    assert receive_exactly(client, 5) == b"reply"
    assert client.receive(timeout=5.0) == b""
    with pytest.raises(ClosedError):
        client.send(b"more")


def test_close_gives_the_peer_end_of_stream(pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    client.send(b"last words")
    client.close()
    assert receive_exactly(server, 10) == b"last words"
    assert server.receive(timeout=5.0) == b""


def test_peer_reset_is_broken_error(pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    client.send(b"never read")
    wait_until_readable(server)
    server.abort()  # closing with unread data resets on every transport (RST over TCP)
    with pytest.raises(BrokenError):
        client.receive(timeout=5.0)
    with pytest.raises(BrokenError):
        client.send(b"anyone there?", timeout=5.0)


def test_connect_to_a_closed_listener_is_refused(url: str) -> None:
    with listen(url) as gone:
        address = gone.address
    with pytest.raises(ConnectionRefused):
        connect(address, timeout=2.0)


def test_connect_times_out_on_a_full_accept_queue(url: str) -> None:
    """listen(0) admits exactly one connection; the next connect waits the whole timeout."""
    timeout = 0.5
    with listen(url, backlog=0) as full:
        admitted = [connect(full.address, timeout=5.0)]
        started = time.monotonic()
        with pytest.raises(ConnectTimeout):
            admitted.append(connect(full.address, timeout=timeout))
        waited = time.monotonic() - started
        for connection in admitted:
            connection.close()
    assert len(admitted) == 1  # backlog 0 admits backlog + 1 = 1
    assert waited >= timeout * 0.8, f"gave up after {waited:.3f} s instead of waiting about {timeout} s"


def test_a_waiting_connect_succeeds_once_the_server_accepts(url: str) -> None:
    with listen(url, backlog=0) as full:
        first = connect(full.address, timeout=5.0)
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(connect, full.address, 10.0)
            done, _ = wait([waiting], timeout=0.2)
            assert not done, f"connect to a full queue did not wait: {waiting.exception()!r}"
            accepted = full.accept(timeout=5.0)
            second = waiting.result(timeout=15.0)
        second.send(b"in")
        later = full.accept(timeout=5.0)
        assert receive_exactly(later, 2) == b"in"
        for connection in (first, accepted, second, later):
            connection.close()


def test_read_timeout_leaves_the_connection_usable(pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    with pytest.raises(ReadTimeout) as caught:
        client.receive(timeout=0.05)
    assert isinstance(caught.value, TimeoutError)
    server.send(b"late")
    assert receive_exactly(client, 4) == b"late"
    with pytest.raises(ReadTimeout):
        client.receive(timeout=0)


def test_accept_times_out(listener: Listener) -> None:
    with pytest.raises(ReadTimeout):
        listener.accept(timeout=0.05)


def test_write_timeout_when_the_peer_does_not_read(pair: tuple[Connection, Connection]) -> None:
    client, _server = pair
    chunk = b"\0" * (CHUNK_SIZE if client.preserves_boundaries else 1024 * 1024)
    with pytest.raises(WriteTimeout):
        for _ in range(500):  # bounded: kernel buffers hold far less than 500 chunks
            client.send(chunk, timeout=0.1)


def test_use_after_close_is_closed_error(pair: tuple[Connection, Connection], listener: Listener) -> None:
    client, _server = pair
    client.close()
    client.close()  # idempotent
    with pytest.raises(ClosedError):
        client.send(b"x")
    with pytest.raises(ClosedError):
        client.receive(timeout=1.0)
    with pytest.raises(ClosedError):
        client.shutdown_write()
    listener.close()
    listener.close()
    with pytest.raises(ClosedError):
        listener.accept(timeout=1.0)


def test_close_from_another_thread_ends_a_blocked_receive(pair: tuple[Connection, Connection]) -> None:
    client, _server = pair
    with ThreadPoolExecutor(max_workers=1) as pool:
        receiving = pool.submit(client.receive, 100, 10.0)
        client.close()
        with pytest.raises(ClosedError):
            receiving.result(timeout=10.0)


def test_close_from_another_thread_ends_a_blocked_accept(listener: Listener) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        accepting = pool.submit(listener.accept, 10.0)
        listener.close()
        with pytest.raises(ClosedError):
            accepting.result(timeout=10.0)


def test_send_parts_arrive_as_one_write(pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    parts = [b"head", b"", random.Random(17).randbytes(CHUNK_SIZE - 8), b"tail"]
    server.send_parts(parts, timeout=10.0)
    assert receive_into_exactly(client, CHUNK_SIZE) == b"".join(parts)
    server.close()
    assert client.receive_into(memoryview(bytearray(16)), timeout=5.0) == 0


def test_receive_into_times_out_and_leaves_the_buffer_alone(pair: tuple[Connection, Connection]) -> None:
    client, server = pair
    buffer = bytearray(b"untouched")
    with pytest.raises(ReadTimeout):
        client.receive_into(memoryview(buffer), timeout=0.05)
    assert buffer == b"untouched"
    server.send(b"late")
    assert receive_into_exactly(client, 4) == b"late"
