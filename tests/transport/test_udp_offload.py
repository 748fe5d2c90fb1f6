"""UDP segmentation offload (GSO on send, GRO on receive) and every way it falls back."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator

import pytest

from netlab.proto.seq import FAST_FLOOR
from netlab.transport.address import ipv6_loopback_available
from netlab.transport.impairment import Impairment
from netlab.transport.udp import UdpConnection, UdpListener, UdpOptions, connect_udp, listen_udp
from netlab.transport.udp import endpoint as endpoint_module
from netlab.transport.udp.options import ListenerStatistics
from netlab.transport.udp.sockets import (
    can_segment,
    enable_coalesced_reads,
    is_loopback,
    read_batch,
    send_segmented,
    set_receive_timeout,
)

FAST = UdpOptions(rto_floor=FAST_FLOOR, initial_rto=0.2)
#: Bytes of a bulk message: many full 1,200-byte datagrams, and a short last one.
BULK = bytes(range(256)) * 1000 + b"tail"
needs_gso = pytest.mark.skipif(not can_segment(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)),
                               reason="this kernel has no UDP_SEGMENT (Linux >= 4.18)")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The datagram count of every segmented send the endpoints make."""
    made: list[int] = []
    real = endpoint_module.send_segmented

    def counting(sock: socket.socket, parts: list[bytes | memoryview], size: int, peer: object) -> None:
        made.append(len(parts) // 2)
        real(sock, parts, size, peer)

    monkeypatch.setattr(endpoint_module, "send_segmented", counting)
    yield made


def _transfer(options: UdpOptions, address: str = "udp://127.0.0.1:0") -> tuple[UdpListener, UdpConnection, UdpConnection]:
    """Send BULK from the server's connection to the client; return the three (still open)."""
    listener = listen_udp(address, options=options)
    client = connect_udp(listener.address, 5.0, options=options)
    server = listener.accept(timeout=5.0)
    server.send(BULK, timeout=10.0)
    assert client.receive(timeout=10.0) == BULK
    return listener, client, server


def _close(*things: UdpListener | UdpConnection) -> None:
    for thing in things:
        thing.close()


@needs_gso
@pytest.mark.parametrize("address", [
    "udp://127.0.0.1:0",
    pytest.param("udp6://[::1]:0", marks=pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")),
])
def test_bulk_goes_out_in_segmented_sends_and_arrives_whole(calls: list[int], address: str) -> None:
    listener, client, server = _transfer(FAST, address)
    try:
        assert listener._endpoint.segmenting and client._endpoint.coalesced
        assert calls and max(calls) > 1  # several datagrams per system call
        assert max(calls) * 1200 <= 65507
        sent = server.statistics().datagrams_sent
        assert listener._endpoint.stats.segmentation_refused == 0
    finally:
        _close(client, server, listener)
    assert sum(calls) <= sent  # every segment is a datagram the machine sent


@pytest.mark.parametrize("refusal", [errno.EIO, errno.EINVAL, errno.ENOPROTOOPT])
def test_a_refused_segmented_send_falls_back_to_one_datagram_per_send(
    monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    refused: list[int] = []

    def refuse(sock: socket.socket, parts: list[bytes | memoryview], size: int, peer: object) -> None:
        refused.append(len(parts) // 2)
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(endpoint_module, "can_segment", lambda sock: True)
    monkeypatch.setattr(endpoint_module, "send_segmented", refuse)
    listener, client, server = _transfer(FAST)
    try:
        assert len(refused) == 1  # tried once, then never again on this endpoint
        assert not listener._endpoint.segmenting
        assert listener._endpoint.stats.segmentation_refused == 1
        assert server.statistics().retransmits == 0  # the refused run went out datagram by datagram at once
    finally:
        _close(client, server, listener)


def test_a_kernel_without_segmentation_sends_one_datagram_per_send(
    monkeypatch: pytest.MonkeyPatch, calls: list[int]
) -> None:
    monkeypatch.setattr(endpoint_module, "can_segment", lambda sock: False)
    monkeypatch.setattr(endpoint_module, "enable_coalesced_reads", lambda sock: False)
    _assert_one_datagram_per_send(FAST, calls)


def test_no_segmentation_towards_a_peer_off_loopback(monkeypatch: pytest.MonkeyPatch, calls: list[int]) -> None:
    """Over a lab's links a run would cross netem and the netlab wire as one packet: each datagram goes alone."""
    monkeypatch.setattr(endpoint_module, "is_loopback", lambda sockaddr: False)
    listener, client, server = _transfer(FAST)
    try:
        assert not client._endpoint.segmenting
        assert calls == []
    finally:
        _close(client, server, listener)


@pytest.mark.parametrize(
    ("sockaddr", "loopback"),
    [
        (("127.0.0.1", 1), True),
        (("127.5.6.7", 1), True),
        (("::1", 1, 0, 0), True),
        (("::ffff:127.0.0.1", 1, 0, 0), True),
        (("10.0.0.2", 1), False),
        (("fd00::2", 1, 0, 0), False),
        (("128.0.0.1", 1), False),
    ],
)
def test_which_peers_are_on_loopback(sockaddr: tuple[object, ...], loopback: bool) -> None:
    assert is_loopback(sockaddr) is loopback


@pytest.mark.parametrize(
    "options",
    [
        UdpOptions(rto_floor=FAST_FLOOR, initial_rto=0.2, segment_offload=False),
        UdpOptions(rto_floor=FAST_FLOOR, initial_rto=0.2, payload_size=60_000),  # two never fit one send
        UdpOptions(rto_floor=FAST_FLOOR, initial_rto=0.2,
                   impairment=Impairment(duplicate=0.01, seed=3)),  # the impairment sees each datagram
    ],
    ids=["off", "60000-byte datagrams", "impaired"],
)
def test_no_segmentation_when_off_too_large_or_impaired(options: UdpOptions, calls: list[int]) -> None:
    _assert_one_datagram_per_send(options, calls)


def _assert_one_datagram_per_send(options: UdpOptions, calls: list[int]) -> None:
    """A transfer with ``options``: neither end segments nor coalesces, and no segmented send was made."""
    listener, client, server = _transfer(options)
    try:
        assert not listener._endpoint.segmenting and not client._endpoint.coalesced
        assert calls == []
    finally:
        _close(client, server, listener)


def _coalescing_pair() -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    set_receive_timeout(receiver, 5000)  # blocking, as the endpoint's: the first read waits, the rest do not
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    return sender, receiver


@needs_gso
def test_a_coalesced_read_is_split_into_the_datagrams_sent() -> None:
    sender, receiver = _coalescing_pair()
    with sender, receiver:
        assert enable_coalesced_reads(receiver)
        datagrams = [bytes([index]) * 1200 for index in range(20)] + [b"short"]
        send_segmented(sender, list(datagrams), 1200, None)
        stats = ListenerStatistics()
        batch, errors = read_batch(receiver, 1200, 0, stats, coalesced=True)
    assert errors == []
    assert [data for data, _ in batch] == datagrams
    assert stats.datagrams_received == 21 and stats.bytes_received == 20 * 1200 + 5


@needs_gso
def test_coalesced_datagrams_larger_than_the_limit_are_counted_and_dropped() -> None:
    sender, receiver = _coalescing_pair()
    with sender, receiver:
        assert enable_coalesced_reads(receiver)
        send_segmented(sender, [bytes(1500)] * 4, 1500, None)
        sender.send(b"x" * 100)
        stats = ListenerStatistics()
        batch, _ = read_batch(receiver, 1200, 0, stats, coalesced=True)
        if not batch:
            batch, _ = read_batch(receiver, 1200, 0, stats, coalesced=True)
    assert stats.oversized == 4
    assert [data for data, _ in batch] == [b"x" * 100]


def test_a_plain_datagram_on_a_coalescing_socket_is_one_datagram() -> None:
    sender, receiver = _coalescing_pair()
    with sender, receiver:
        enable_coalesced_reads(receiver)  # with or without GRO: a lone datagram is itself
        sender.send(b"y" * 700)
        stats = ListenerStatistics()
        batch, errors = read_batch(receiver, 1200, 0, stats, coalesced=True)
    assert errors == [] and [data for data, _ in batch] == [b"y" * 700]
    assert stats.datagrams_received == 1
