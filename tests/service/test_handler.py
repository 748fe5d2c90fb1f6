"""How the connection handler sizes its writes: cut only past a message limit, chunks that fill datagrams."""

from __future__ import annotations

import math

import pytest

from netlab.proto.framing import DEFAULT_MAX_FRAME, Role, make_framer
from netlab.proto.seq import FAST_FLOOR
from netlab.service.channel import MESSAGE_SEND_SIZE, send_data
from netlab.service.client import Client
from netlab.service.handler import output_chunk_size
from netlab.testing import serve_in_thread
from netlab.testing.transports import SinkConnection
from netlab.transport import connect
from netlab.transport.udp import UdpConnection, UdpOptions


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
    connection = SinkConnection(limit)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    send_data(connection, data, timeout=1.0)
    assert [len(piece) for piece in connection.sent] == pieces
    assert b"".join(connection.sent) == data


@pytest.mark.parametrize(
    ("limit", "max_frame", "framing", "chunk"),
    [
        (None, DEFAULT_MAX_FRAME, "length", 196608),  # a byte stream: three 64 KiB blocks, within max_frame
        (None, 100_000, "length", 100_000 - 9),  # a smaller max_frame bounds it
        (None, DEFAULT_MAX_FRAME, "line", 65536),  # a framing whose overhead varies: 64 KiB
        (212_992, DEFAULT_MAX_FRAME, "length", 65536),  # seqpacket (a message limit): 64 KiB
    ],
)
def test_stream_output_chunks_are_large_frames(limit: int | None, max_frame: int, framing: str, chunk: int) -> None:
    connection = SinkConnection(limit)
    framer = make_framer(framing, Role.SERVER, max_frame)
    assert output_chunk_size(connection, framer) == chunk
    if framer.output_overhead is not None:
        assert chunk + framer.output_overhead - 4 <= max_frame


@pytest.mark.parametrize(
    ("fragment", "framing", "chunk"),
    [
        (59964, "length", 59955),  # udp, 60,000-byte datagrams: one frame fills one datagram
        (1164, "length", 56 * 1164 - 9),  # udp, 1,200-byte datagrams: 56 full datagrams
        (65471, "length", 65462),  # the largest loopback datagram
        (59964, "line", 65536),  # a framing whose overhead varies: no cutting
    ],
)
def test_output_chunks_fill_whole_datagrams(fragment: int | None, framing: str, chunk: int) -> None:
    connection = SinkConnection(None)
    connection.message_fragment_size = fragment
    framer = make_framer(framing, Role.SERVER)
    assert output_chunk_size(connection, framer) == chunk
    if fragment is not None and framer.output_overhead is not None:
        assert (chunk + framer.output_overhead) % fragment == 0


def test_a_udp_blob_travels_one_datagram_per_frame() -> None:
    options = UdpOptions(payload_size=60_000, rto_floor=FAST_FLOOR, initial_rto=0.2)
    with serve_in_thread("udp://127.0.0.1:0", backlog=4, quiet=True, listen_options={"options": options}) as running:
        connection = connect(running.address, 5.0, options=options)
        assert isinstance(connection, UdpConnection)
        with Client(running.address, connection=connection, read_timeout=10.0) as client:
            before = connection.statistics().datagrams_received
            reply = client.run(["blob", "1000000"], keep_output=False, verify=True)
            datagrams = connection.statistics().datagrams_received - before
    assert reply.stdout_bytes == 1_000_000 and reply.verified
    frames = math.ceil(1_000_000 / 59_955)
    assert frames <= datagrams <= frames + 2  # the Exit (alone or with the last frame) and perhaps a PING
