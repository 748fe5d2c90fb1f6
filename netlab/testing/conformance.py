"""One conformance suite every transport and every wrapper must pass.

How this works (as trio's ``testing.check_two_way_stream``): a
:class:`ConformanceKit` says how to listen and connect on one transport,
with its options and an optional wrapper around every connection (the tap,
the slicer) or a seeded impairment under it; each ``check_*`` function takes a
kit and asserts one promise of the :class:`~netlab.transport.base.Connection`
interface: connect, exchange, large payloads both ways, boundaries where
promised, half-close, end of stream, reset, refusal, a full accept queue,
timeouts, use after close, close from another thread, gathered sends.
:data:`CHECKS` lists them; :func:`standard_kits` builds the kits netlab's own
tests run (``tests/transport/test_conformance.py``), and a new transport or
wrapper passes the suite by adding a kit.

The checks raise AssertionError (and use ``pytest.raises``): they are meant to
run under pytest.
"""

from __future__ import annotations

import random
import select
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from netlab.errors import BrokenError, ClosedError, ConnectionRefused, ConnectTimeout, ReadTimeout, WriteTimeout
from netlab.testing.transports import TRANSPORT_CASES, unavailable_reason
from netlab.transport import connect, listen
from netlab.transport.address import Address
from netlab.transport.base import Connection, Listener, WrappedListener
from netlab.transport.impairment import Impairment
from netlab.transport.slicer import SlicingConnection
from netlab.transport.tap import TappedConnection, TapRecorder

LARGE_PAYLOAD_SIZE = 10 * 1024 * 1024
#: Where boundaries hold, large payloads go as messages of this size, which the receiver takes whole.
CHUNK_SIZE = 65536
#: Sequenced UDP settings that recover from loss in tens of milliseconds, not seconds.
FAST_UDP = {"rto_floor": 0.02, "initial_rto": 0.2}
#: The impairment kit: both ends lose, duplicate and reorder what they receive, the same way every run.
IMPAIRMENT = Impairment(loss=0.03, duplicate=0.02, reorder=0.03, seed=7, path="receive")


@dataclass
class ConformanceKit:
    """How the checks get listeners and connections of one transport, maybe wrapped.

    Attributes:
        name: the kit's name in test ids (``tcp4``, ``tap/unix-seqpacket``).
        transport: the scheme under test.
        directory: a private, short directory for UNIX socket files.
        options: transport options for both ``listen`` and ``connect``.
        wrap: wraps every connection on both ends (None: the bare transport).
        large_payload_size: the size the large-payload check moves each way.
    """

    name: str
    transport: str
    directory: str = "/tmp"
    options: Mapping[str, Any] = field(default_factory=dict)
    wrap: Callable[[Connection], Connection] | None = None
    large_payload_size: int = LARGE_PAYLOAD_SIZE
    _urls: int = 0

    @property
    def preserves_boundaries(self) -> bool:
        """Whether one send arrives as one receive through this kit."""
        return TRANSPORT_CASES[self.transport].preserves_boundaries and not self.slices

    @property
    def slices(self) -> bool:
        """Whether the kit's wrapper cuts sends into pieces."""
        return self.name.startswith("slicer")

    def url(self) -> str:
        """A fresh address to listen on."""
        self._urls += 1
        return TRANSPORT_CASES[self.transport].make_url(self.directory, f"conformance-{self._urls}.sock")

    def listen(self, url: str | None = None, backlog: int = 128) -> Listener:
        """Listen on ``url`` (default: a fresh one); accepted connections are wrapped."""
        listener = listen(url or self.url(), backlog, **self.options)
        return listener if self.wrap is None else WrappedListener(listener, self.wrap)

    def connect(self, address: Address | str, timeout: float | None) -> Connection:
        """Connect with the kit's options; the connection is wrapped."""
        connection = connect(address, timeout, **self.options)
        return connection if self.wrap is None else self.wrap(connection)

    @contextmanager
    def listening(self) -> Iterator[Listener]:
        """A listener for the length of the block."""
        with self.listen() as listener:
            yield listener

    @contextmanager
    def pair(self, listener: Listener | None = None) -> Iterator[tuple[Connection, Connection]]:
        """(client, server): a connected pair, on ``listener`` or a fresh one; both closed afterwards."""
        with self.listening() if listener is None else _as_is(listener) as bound:
            client = self.connect(bound.address, 5.0)
            try:
                server = bound.accept(timeout=5.0)
            except BaseException:
                client.close()
                raise
            try:
                yield client, server
            finally:
                client.close()
                server.close()


@contextmanager
def _as_is(listener: Listener) -> Iterator[Listener]:
    yield listener


def standard_kits(directory: str) -> list[ConformanceKit]:
    """Every transport bare, and every wrapper over the transports it applies to.

    Sequenced UDP and the slicer move a quarter of the large payload: the
    checks are of correctness, and these are the slow paths.
    """

    def options(transport: str) -> dict[str, Any]:
        return dict(FAST_UDP) if transport.startswith("udp") else {}

    def large(transport: str) -> int:
        return LARGE_PAYLOAD_SIZE // 4 if transport.startswith("udp") else LARGE_PAYLOAD_SIZE

    kits = [ConformanceKit(name, name, directory, options(name), large_payload_size=large(name))
            for name in TRANSPORT_CASES]
    for inner in ("tcp4", "unix-seqpacket", "udp"):
        kits.append(ConformanceKit(f"tap/{inner}", inner, directory, options(inner),
                                   partial(TappedConnection, recorder=TapRecorder()), large(inner)))
    for inner in ("tcp4", "unix"):
        slicer = partial(SlicingConnection, rng=random.Random(11), min_size=1, max_size=CHUNK_SIZE, delay=0)
        kits.append(ConformanceKit(f"slicer/{inner}", inner, directory, wrap=slicer,
                                   large_payload_size=LARGE_PAYLOAD_SIZE // 4))
    kits.append(ConformanceKit("impairment/udp", "udp", directory, {**FAST_UDP, "impairment": IMPAIRMENT},
                               large_payload_size=LARGE_PAYLOAD_SIZE // 4))
    return kits


def kit_unavailable_reason(kit: ConformanceKit) -> str | None:
    """Why ``kit`` cannot run on this machine (IPv6 off), or None."""
    return unavailable_reason(kit.transport)


# -- helpers ---------------------------------------------------------------------


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


def assert_then_end_of_stream(connection: Connection, data: bytes) -> None:
    """``data`` arrives on ``connection``, then end of stream (the peer shut down writing or closed)."""
    assert receive_exactly(connection, len(data)) == data
    assert connection.receive(timeout=5.0) == b""


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


# -- the checks ------------------------------------------------------------------


def check_connect_and_exchange_small_messages(kit: ConformanceKit) -> None:
    """A connection carries a few bytes both ways; both ends know their addresses and boundaries."""
    with kit.listening() as listener, kit.pair(listener) as (client, server):
        client.send(b"ping")
        assert receive_exactly(server, 4) == b"ping"
        server.send(b"pong")
        assert receive_exactly(client, 4) == b"pong"
        assert client.peer_address == str(listener.address)
        assert server.local_address and server.peer_address and client.local_address
        assert client.preserves_boundaries is kit.preserves_boundaries
        assert server.preserves_boundaries is kit.preserves_boundaries


def check_connect_accepts_a_url_string(kit: ConformanceKit) -> None:
    """``connect`` takes the listener's address as text too."""
    with kit.listening() as listener:
        with kit.connect(str(listener.address), 5.0) as client, listener.accept(timeout=5.0) as server:
            client.send(b"x")
            assert receive_exactly(server, 1) == b"x"


def _check_large_payload(kit: ConformanceKit, receive: Callable[[Connection, int, float], bytes]) -> None:
    payload = random.Random(6969).randbytes(kit.large_payload_size)
    with kit.pair() as (client, server), ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(send_payload, client, payload)
        assert receive(server, len(payload), 60.0) == payload
        sending.result(timeout=30.0)
        sending = pool.submit(send_payload, server, payload)
        assert receive(client, len(payload), 60.0) == payload
        sending.result(timeout=30.0)


def check_large_payload_arrives_byte_exact_both_ways(kit: ConformanceKit) -> None:
    """Megabytes arrive byte-exact each way, through ``receive``."""
    _check_large_payload(kit, receive_exactly)


def check_large_payload_arrives_byte_exact_through_receive_into(kit: ConformanceKit) -> None:
    """Megabytes arrive byte-exact each way, through ``receive_into`` and one reused buffer."""
    _check_large_payload(kit, receive_into_exactly)


def check_message_boundaries_hold_only_where_promised(kit: ConformanceKit) -> None:
    """Three sends are three receives where boundaries hold; on a stream, the same bytes in order."""
    with kit.pair() as (client, server):
        for message in (b"one", b"two", b"three"):
            client.send(message)
        if kit.preserves_boundaries:
            assert [server.receive(timeout=5.0) for _ in range(3)] == [b"one", b"two", b"three"]
        else:
            assert receive_exactly(server, 11) == b"onetwothree"


def check_half_close_lets_the_peer_answer(kit: ConformanceKit) -> None:
    """After ``shutdown_write`` the peer reads end of stream and can still answer."""
    with kit.pair() as (client, server):
        client.send(b"request")
        client.shutdown_write()
        assert_then_end_of_stream(server, b"request")
        server.send(b"reply")
        server.close()
        assert_then_end_of_stream(client, b"reply")
        with pytest.raises(ClosedError):
            client.send(b"more")


def check_close_gives_the_peer_end_of_stream(kit: ConformanceKit) -> None:
    """What was sent before ``close`` arrives, then end of stream."""
    with kit.pair() as (client, server):
        client.send(b"last words")
        client.close()
        assert_then_end_of_stream(server, b"last words")


def check_peer_reset_is_broken_error(kit: ConformanceKit) -> None:
    """An aborted peer is BrokenError on both receive and send."""
    with kit.pair() as (client, server):
        client.send(b"never read")
        wait_until_readable(server)
        server.abort()  # closing with unread data resets on every transport (RST over TCP)
        with pytest.raises(BrokenError):
            client.receive(timeout=5.0)
        with pytest.raises(BrokenError):
            client.send(b"anyone there?", timeout=5.0)


def check_connect_to_a_closed_listener_is_refused(kit: ConformanceKit) -> None:
    """Nothing listens any more: ConnectionRefused, not a timeout."""
    with kit.listen() as gone:
        address = gone.address
    with pytest.raises(ConnectionRefused):
        kit.connect(address, 2.0)


def check_connect_times_out_on_a_full_accept_queue(kit: ConformanceKit) -> None:
    """listen(0) admits exactly one connection; the next connect waits the whole timeout."""
    timeout = 0.5
    with kit.listen(backlog=0) as full:
        admitted = [kit.connect(full.address, 5.0)]
        started = time.monotonic()
        with pytest.raises(ConnectTimeout):
            admitted.append(kit.connect(full.address, timeout))
        waited = time.monotonic() - started
        for connection in admitted:
            connection.close()
    assert len(admitted) == 1  # backlog 0 admits backlog + 1 = 1
    assert waited >= timeout * 0.8, f"gave up after {waited:.3f} s instead of waiting about {timeout} s"


def check_a_waiting_connect_succeeds_once_the_server_accepts(kit: ConformanceKit) -> None:
    """A connect waiting on a full queue completes once the server accepts."""
    with kit.listen(backlog=0) as full:
        first = kit.connect(full.address, 5.0)
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(kit.connect, full.address, 10.0)
            done, _ = wait([waiting], timeout=0.2)
            assert not done, f"connect to a full queue did not wait: {waiting.exception()!r}"
            accepted = full.accept(timeout=5.0)
            second = waiting.result(timeout=15.0)
        second.send(b"in")
        later = full.accept(timeout=5.0)
        assert receive_exactly(later, 2) == b"in"
        for connection in (first, accepted, second, later):
            connection.close()


def check_read_timeout_leaves_the_connection_usable(kit: ConformanceKit) -> None:
    """ReadTimeout (also a TimeoutError) leaves the connection as it was."""
    with kit.pair() as (client, server):
        with pytest.raises(ReadTimeout) as caught:
            client.receive(timeout=0.05)
        assert isinstance(caught.value, TimeoutError)
        server.send(b"late")
        assert receive_exactly(client, 4) == b"late"
        with pytest.raises(ReadTimeout):
            client.receive(timeout=0)


def check_accept_times_out(kit: ConformanceKit) -> None:
    """An accept with nobody connecting is ReadTimeout."""
    with kit.listening() as listener, pytest.raises(ReadTimeout):
        listener.accept(timeout=0.05)


def check_write_timeout_when_the_peer_does_not_read(kit: ConformanceKit) -> None:
    """Sending to a peer that never reads ends in WriteTimeout, not a hang."""
    with kit.pair() as (client, _server):
        chunk = b"\0" * (CHUNK_SIZE if client.preserves_boundaries else 1024 * 1024)
        with pytest.raises(WriteTimeout):
            for _ in range(500):  # bounded: buffers hold far less than 500 chunks
                client.send(chunk, timeout=0.1)


def check_use_after_close_is_closed_error(kit: ConformanceKit) -> None:
    """Closing is idempotent; what comes after is ClosedError, for connections and listeners."""
    with kit.listening() as listener, kit.pair(listener) as (client, _server):
        client.close()
        client.close()
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


def check_close_from_another_thread_ends_a_blocked_receive(kit: ConformanceKit) -> None:
    """``close`` from another thread wakes a blocked receive with ClosedError."""
    with kit.pair() as (client, _server), ThreadPoolExecutor(max_workers=1) as pool:
        receiving = pool.submit(client.receive, 100, 10.0)
        client.close()
        with pytest.raises(ClosedError):
            receiving.result(timeout=10.0)


def check_close_from_another_thread_ends_a_blocked_accept(kit: ConformanceKit) -> None:
    """``close`` from another thread wakes a blocked accept with ClosedError."""
    with kit.listening() as listener, ThreadPoolExecutor(max_workers=1) as pool:
        accepting = pool.submit(listener.accept, 10.0)
        listener.close()
        with pytest.raises(ClosedError):
            accepting.result(timeout=10.0)


def check_send_parts_arrive_as_one_write(kit: ConformanceKit) -> None:
    """``send_parts`` sends the parts' concatenation as one write (empty parts included)."""
    with kit.pair() as (client, server):
        parts = [b"head", b"", random.Random(17).randbytes(CHUNK_SIZE - 8), b"tail"]
        server.send_parts(parts, timeout=10.0)
        assert receive_into_exactly(client, CHUNK_SIZE) == b"".join(parts)
        server.close()
        assert client.receive_into(memoryview(bytearray(16)), timeout=5.0) == 0


def check_receive_into_times_out_and_leaves_the_buffer_alone(kit: ConformanceKit) -> None:
    """A ``receive_into`` that times out writes nothing into the buffer."""
    with kit.pair() as (client, server):
        buffer = bytearray(b"untouched")
        with pytest.raises(ReadTimeout):
            client.receive_into(memoryview(buffer), timeout=0.05)
        assert buffer == b"untouched"
        server.send(b"late")
        assert receive_into_exactly(client, 4) == b"late"


def check_an_empty_send_is_not_the_end_of_the_stream(kit: ConformanceKit) -> None:
    """Sending no bytes ends nothing: the next bytes still arrive, and only close reads as end of stream."""
    with kit.pair() as (client, server):
        client.send(b"")
        client.send(b"after")
        assert receive_exactly(server, 5) == b"after"
        client.close()
        assert server.receive(timeout=5.0) == b""


#: The whole suite, in the order it runs.
CHECKS: tuple[Callable[[ConformanceKit], None], ...] = tuple(
    check for name, check in sorted(globals().items()) if name.startswith("check_") and callable(check)
)
