"""Sequenced UDP through a running server of every model, with a peer whose every byte is ours.

A :class:`RawPeer` speaks the wire format of docs/udp-sequencing.md over a
plain socket, so a test can send what a netlab client never would: a number
repeated with other bytes, a whole session replayed, handshakes left half done.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from netlab.proto.seq.cookie import COOKIE_SIZE
from netlab.proto.seq.wire import (
    FLAG_MESSAGE_END,
    HEADER_SIZE,
    DatagramType,
    Header,
    decode_header,
    encode,
)
from netlab.service.client import Client
from netlab.service.server import MODELS
from netlab.testing import serve_in_thread, wait_until
from netlab.transport.address import parse_address

CLIENT_INITIAL = 1000


class RawPeer:
    """A hand-driven sequenced-UDP client on a plain UDP socket (loopback only)."""

    def __init__(self, url: str, connection_id: int = 0x5EED, source_port: int = 0) -> None:
        address = parse_address(url)
        self.connection_id = connection_id
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", source_port))
        self.sock.connect((address.host, address.port))
        self.sent: list[bytes] = []
        self.server_initial = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, kind: DatagramType, sequence: int, payload: bytes = b"", flags: int = 0, acknowledgement: int | None = None) -> None:
        datagram = b"".join(
            encode(
                kind,
                flags,
                self.connection_id,
                sequence,
                self.server_initial if acknowledgement is None else acknowledgement,
                64,
                payload,
            )
        )
        self.sent.append(datagram)
        self.sock.send(datagram)

    def receive(self, timeout: float = 5.0) -> tuple[Header, bytes] | None:
        """The next datagram from the server, or None when none arrives in ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ConnectionRefusedError):
            return None
        header = decode_header(memoryview(data))
        return header, data[header.payload_offset :]

    def receive_until(self, kind: DatagramType, timeout: float = 5.0) -> tuple[Header, bytes] | None:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            reply = self.receive(remaining)
            if reply is None:
                return None
            if reply[0].type == kind:
                return reply
        return None

    def handshake(self) -> None:
        """INITIAL -> RETRY -> COOKIE_ECHO -> ACCEPT; keeps the server's initial sequence number."""
        self.send(DatagramType.INITIAL, CLIENT_INITIAL, bytes(1200 - HEADER_SIZE), acknowledgement=0)
        retry = self.receive_until(DatagramType.RETRY)
        assert retry is not None, "no RETRY"
        cookie = retry[1][:COOKIE_SIZE]
        self.send(DatagramType.COOKIE_ECHO, CLIENT_INITIAL, cookie, acknowledgement=0)
        accept = self.receive_until(DatagramType.ACCEPT)
        assert accept is not None, "no ACCEPT"
        self.server_initial = accept[0].sequence


@pytest.fixture
def peers() -> Iterator[list[RawPeer]]:
    made: list[RawPeer] = []
    yield made
    for peer in made:
        peer.close()


def still_serves(url: str) -> bytes:
    with Client(url, read_timeout=10, connect_timeout=10) as client:
        return client.run("echo still here").stdout


@pytest.mark.parametrize("model", MODELS)
def test_a_peer_that_breaks_sequencing_ends_only_its_own_connection(model: str, peers: list[RawPeer]) -> None:
    with serve_in_thread("udp://127.0.0.1:0", model=model) as running:
        peer = RawPeer(running.address)
        peers.append(peer)
        peer.handshake()
        peer.send(DatagramType.DATA, CLIENT_INITIAL, b"\x00\x00", FLAG_MESSAGE_END)
        peer.send(DatagramType.DATA, CLIENT_INITIAL, b"\xff\xff", FLAG_MESSAGE_END)
        assert peer.receive_until(DatagramType.RESET) is not None, "the server did not reset the broken connection"
        assert still_serves(running.address) == b"still here\n"
        assert running.thread.is_alive()

        def logged() -> list[str]:
            return [line for line in running.log_lines if "broke the sequencing protocol" in line]

        wait_until(logged, what="a log line about the broken connection")
        assert len(logged()) == 1, logged()
        assert "Traceback" not in "\n".join(running.log_lines)
