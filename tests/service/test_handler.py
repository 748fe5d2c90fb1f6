"""How the connection handler cuts its writes: only where a transport limits message size."""

from __future__ import annotations

import pytest

from netlab.service.handler import MESSAGE_SEND_SIZE, send_data
from netlab.transport.base import Connection


class RecordingConnection(Connection):
    """Records each send; a message transport with ``limit`` when given one."""

    def __init__(self, limit: int | None) -> None:
        self.preserves_boundaries = limit is not None
        self.max_message_size = limit
        self.sent: list[bytes] = []

    def send(self, data: bytes, timeout: float | None = None) -> None:
        self.sent.append(data)

    def receive(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        raise AssertionError("not used")

    def shutdown_write(self) -> None:
        pass

    def close(self) -> None:
        pass

    def fileno(self) -> int:
        return -1


@pytest.mark.parametrize(
    ("limit", "size", "pieces"),
    [
        (None, 1_000_000, [1_000_000]),  # a byte stream: one write
        (16 * 2**20, 300_000, [300_000]),  # udp: under its limit, one message (no half-empty datagrams)
        (212_960, 200_000, [200_000]),  # seqpacket, under its limit
        (212_960, 300_000, [MESSAGE_SEND_SIZE] * 4 + [300_000 - 4 * MESSAGE_SEND_SIZE]),  # over: cut
    ],
    ids=["stream", "udp", "seqpacket-fits", "seqpacket-cut"],
)
def test_data_is_cut_only_past_the_transports_message_limit(limit: int | None, size: int, pieces: list[int]) -> None:
    connection = RecordingConnection(limit)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    send_data(connection, data, timeout=1.0)
    assert [len(piece) for piece in connection.sent] == pieces
    assert b"".join(connection.sent) == data
