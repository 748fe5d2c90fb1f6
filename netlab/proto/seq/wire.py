"""The wire format of netlab's sequenced UDP: one fixed header, SACK blocks, payload.

How this works: every datagram starts with the same 36-byte header, written in
network byte order (big-endian)::

    offset size field
     0     1    type            1 INITIAL, 2 RETRY, 3 COOKIE_ECHO, 4 ACCEPT,
                                5 DATA, 6 ACK, 7 PING, 8 RESET
     1     1    flags           0x01 MESSAGE_END  last fragment of a message
                                0x02 FIN          no more data from the sender
                                                  (occupies a sequence number)
                                0x04 ACK_NOW      the receiver must answer at once
     2     1    sack_count      number of 8-byte SACK blocks after the header (0-255)
     3     1    version         always 1; any other value is dropped
     4     8    connection_id   chosen by the client, the same in both directions
    12     8    sequence        DATA/FIN: this datagram's sequence number;
                                INITIAL/COOKIE_ECHO/ACCEPT: the sender's initial one;
                                other types: the next number the sender will use
    20     8    acknowledgement cumulative: the next sequence number expected from
                                the peer (everything below has arrived)
    28     4    window          datagrams the sender will still accept beyond
                                ``acknowledgement`` (flow control)
    32     4    checksum        CRC32 (zlib.crc32, the IEEE 802.3 polynomial) of
                                payload + bytes 0..31 + SACK blocks, i.e.
                                ``zlib.crc32(datagram[36 + 8 * sack_count:]
                                + datagram[:32] + datagram[36:36 + 8 * sack_count])``
    36     8*n  SACK blocks     n = sack_count, each ``offset`` (4 bytes) and
                                ``length`` (4 bytes): the peer holds sequence
                                numbers [acknowledgement + offset,
                                acknowledgement + offset + length)
    36+8n  ...  payload         DATA: one fragment of a message; RETRY: the
                                cookie; INITIAL: the sender's largest datagram
                                (4 bytes), then zero padding to 1200 bytes in
                                all; COOKIE_ECHO: the cookie, then the sender's
                                largest datagram (4 bytes); ACCEPT: the sender's
                                largest datagram (4 bytes)

Sequence numbers are 64-bit on the wire and compared with serial arithmetic
(RFC 1982): the receiver rebuilds the full number as the one nearest to the
number it expects, so a connection may start just below 2**64 and wrap. The
checksum covers the payload first so that the receiver gets a digest of the
payload alone (``zlib.crc32(payload)``) for free while checking it; the
sequencing layer keeps that digest to spot a replay that reuses a delivered
sequence number with different bytes.

The CRC32 comes from zlib-ng (a pinned dependency: the same polynomial and
values, computed with carry-less multiply: about 1 us per 60,000 bytes instead
of 9 us) and from the standard zlib where zlib-ng cannot be installed.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

try:
    from zlib_ng.zlib_ng import crc32
except ImportError:
    from zlib import crc32

VERSION = 1
HEADER_SIZE = 36
SACK_BLOCK_SIZE = 8
#: Bytes 0..31 of the header: everything before the checksum.
HEAD = struct.Struct("!BBBBQQQI")
#: The whole fixed header, checksum included: one unpack per received datagram.
HEADER = struct.Struct("!BBBBQQQII")
SACK_BLOCK = struct.Struct("!II")
_unpack_header = HEADER.unpack_from
CHECKSUM_OFFSET = 32
MASK_64 = (1 << 64) - 1
HALF_64 = 1 << 63
MAX_WINDOW = (1 << 32) - 1
#: Largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP); IPv6 allows 65527.
MAX_DATAGRAM_SIZE = 65507
#: The handshake field that announces the largest datagram its sender accepts
#: (like QUIC's max_udp_payload_size transport parameter).
DATAGRAM_LIMIT = struct.Struct("!I")


class DatagramType(enum.IntEnum):
    """The ``type`` byte."""

    INITIAL = 1
    RETRY = 2
    COOKIE_ECHO = 3
    ACCEPT = 4
    DATA = 5
    ACK = 6
    PING = 7
    RESET = 8


#: The lowest and highest type as plain ints (comparing IntEnum members costs a lookup each).
_FIRST_TYPE = int(DatagramType.INITIAL)
_LAST_TYPE = int(DatagramType.RESET)

FLAG_MESSAGE_END = 0x01
FLAG_FIN = 0x02
FLAG_ACK_NOW = 0x04

#: A datagram ready for ``socket.sendmsg``: the header (with SACK blocks) and the payload.
Datagram = tuple[bytes, "bytes | memoryview"]


class Header(NamedTuple):
    """A decoded header; ``sequence`` and ``acknowledgement`` are the 64-bit wire values."""

    type: int
    flags: int
    connection_id: int
    sequence: int
    acknowledgement: int
    window: int
    sack_blocks: tuple[tuple[int, int], ...]
    payload_offset: int
    payload_checksum: int


class MalformedDatagram(Exception):
    """Raised by :func:`decode_header` for a datagram that is not ours or is damaged."""

    def __init__(self, reason: str, *, checksum_failure: bool = False) -> None:
        super().__init__(reason)
        self.checksum_failure = checksum_failure


def encode(
    datagram_type: int,
    flags: int,
    connection_id: int,
    sequence: int,
    acknowledgement: int,
    window: int,
    payload: bytes | memoryview = b"",
    sack_blocks: bytes = b"",
    payload_checksum: int | None = None,
) -> Datagram:
    """Build one datagram.

    Args:
        datagram_type: a :class:`DatagramType` value.
        flags: FLAG_* bits.
        connection_id: 64-bit connection id.
        sequence: full sequence number (reduced to 64 bits here).
        acknowledgement: full cumulative acknowledgement (reduced to 64 bits).
        window: receive window in datagrams (capped at 2**32 - 1).
        payload: the payload, sent as a separate buffer (no copy).
        sack_blocks: already packed SACK blocks (see :func:`pack_sack_blocks`).
        payload_checksum: ``zlib.crc32(payload)`` if the caller has it already.
    Returns:
        ``(header, payload)`` for ``sendmsg``; ``b"".join`` gives the datagram.
    """
    head = HEAD.pack(
        datagram_type,
        flags,
        len(sack_blocks) // SACK_BLOCK_SIZE,
        VERSION,
        connection_id,
        sequence & MASK_64,
        acknowledgement & MASK_64,
        window if window < MAX_WINDOW else MAX_WINDOW,
    )
    checksum = crc32(payload) if payload_checksum is None else payload_checksum
    checksum = crc32(head, checksum)
    if sack_blocks:
        checksum = crc32(sack_blocks, checksum)
        return head + checksum.to_bytes(4, "big") + sack_blocks, payload
    return head + checksum.to_bytes(4, "big"), payload


def pack_sack_blocks(blocks: list[tuple[int, int]], acknowledgement: int) -> bytes:
    """Pack ``[start, end)`` ranges of full sequence numbers relative to ``acknowledgement``."""
    return b"".join(
        SACK_BLOCK.pack(start - acknowledgement, end - start) for start, end in blocks
    )


def unpack_fields(data: bytes | memoryview) -> tuple[int, int, int, int, int, int, int, int, int]:
    """Read a datagram's fixed header and check its shape (not its checksum).

    The one parser of the header: :func:`decode_header` and the connection's
    per-datagram path both use it.

    Args:
        data: the whole datagram.
    Returns:
        ``(type, flags, sack_count, connection_id, sequence, acknowledgement,
        window, checksum, payload_offset)`` with 64-bit wire values.
    Raises:
        MalformedDatagram: too short, unknown version or type, or SACK blocks
            that do not fit.
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise MalformedDatagram(
            f"{size} bytes is shorter than the {HEADER_SIZE}-byte header"
        )
    (
        datagram_type,
        flags,
        sack_count,
        version,
        connection_id,
        sequence,
        acknowledgement,
        window,
        checksum,
    ) = _unpack_header(data)
    if version != VERSION:
        raise MalformedDatagram(f"unknown version {version}")
    if not _FIRST_TYPE <= datagram_type <= _LAST_TYPE:
        raise MalformedDatagram(f"unknown datagram type {datagram_type}")
    payload_offset = HEADER_SIZE + sack_count * SACK_BLOCK_SIZE
    if payload_offset > size:
        raise MalformedDatagram(f"{sack_count} SACK blocks do not fit in {size} bytes")
    return (
        datagram_type,
        flags,
        sack_count,
        connection_id,
        sequence,
        acknowledgement,
        window,
        checksum,
        payload_offset,
    )


def decode_header(view: memoryview) -> Header:
    """Parse and verify a datagram's header and checksum.

    Args:
        view: the whole datagram.
    Returns:
        The :class:`Header`; the payload is ``view[header.payload_offset:]``.
    Raises:
        MalformedDatagram: too short, unknown version or type, or a bad checksum
            (``checksum_failure`` set).
    """
    (
        datagram_type,
        flags,
        sack_count,
        connection_id,
        sequence,
        acknowledgement,
        window,
        checksum,
        payload_offset,
    ) = unpack_fields(view)
    payload_checksum = crc32(view[payload_offset:])
    if not verify_checksum(view, payload_checksum, payload_offset, checksum):
        raise MalformedDatagram("checksum mismatch", checksum_failure=True)
    sack_blocks = unpack_sack_blocks(view, payload_offset) if sack_count else ()
    return Header(
        datagram_type,
        flags,
        connection_id,
        sequence,
        acknowledgement,
        window,
        sack_blocks,
        payload_offset,
        payload_checksum,
    )


def unpack_sack_blocks(data: bytes | memoryview, payload_offset: int) -> tuple[tuple[int, int], ...]:
    """The ``(offset, length)`` SACK blocks between the header and ``payload_offset``."""
    return tuple(SACK_BLOCK.iter_unpack(data[HEADER_SIZE:payload_offset]))


def verify_checksum(
    datagram: bytes | memoryview, payload_checksum: int, payload_offset: int, checksum: int
) -> bool:
    """True when ``checksum`` (the header's) matches the datagram, given the payload's own CRC32."""
    computed = crc32(datagram[:CHECKSUM_OFFSET], payload_checksum)
    if payload_offset > HEADER_SIZE:
        computed = crc32(datagram[HEADER_SIZE:payload_offset], computed)
    return computed == checksum


def unwrap_sequence(wire_value: int, expected: int) -> int:
    """Rebuild a full sequence number from its 64-bit wire value (RFC 1982 serial arithmetic).

    Args:
        wire_value: the 64-bit number on the wire.
        expected: a full sequence number near the true one (e.g. the next expected).
    Returns:
        The full number congruent to ``wire_value`` modulo 2**64 nearest to ``expected``.
    """
    difference = (wire_value - expected) & MASK_64
    if difference >= HALF_64:
        difference -= 1 << 64
    return expected + difference


def split_segments(payload: bytes) -> list[bytes]:
    """The datagrams in one UDP payload: itself, or the datagrams of one segmented send.

    A sender using UDP segmentation offload (GSO) hands the kernel several
    datagrams of one size (the last may be shorter) in one buffer; on loopback
    a packet capture sees that buffer as one UDP packet. Every datagram in it
    is whole, header and checksum included, so the size is found where the
    first datagram's checksum holds and the next header (same version and
    connection id) begins. A payload that is one valid datagram, or that no
    such size splits, is returned as it is.
    """
    if len(payload) < 2 * HEADER_SIZE or payload[3] != VERSION or _valid(payload):
        return [payload]
    connection_id = payload[4:12]
    found = payload.find(connection_id, HEADER_SIZE + 4)
    while found >= 0:
        size = found - 4
        if payload[size + 3] == VERSION and _valid(payload[:size]):
            return [payload[start : start + size] for start in range(0, len(payload), size)]
        found = payload.find(connection_id, found + 1)
    return [payload]


def _valid(datagram: bytes) -> bool:
    """True when ``datagram`` parses and its checksum holds."""
    try:
        decode_header(memoryview(datagram))
    except (MalformedDatagram, struct.error):
        return False
    return True
