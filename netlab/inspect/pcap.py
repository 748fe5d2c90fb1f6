"""Capture files that Wireshark and tshark open: pcapng (with the kernel's drop counts) or classic pcap.

How this works: the frames are written as they were captured, without
dissecting them, by a small block writer. pcapng (the default of ``netlab
capture``) holds a Section Header Block, one Interface Description Block
(Ethernet, what Linux loopback reports, with the interface's name), an Enhanced
Packet Block per frame (microsecond timestamps) and, when the capture's
statistics are given, an Interface Statistics Block: ``isb_starttime``,
``isb_endtime``, ``isb_ifrecv`` (frames the kernel queued for the socket),
``isb_ifdrop`` and ``isb_osdrop`` (frames it dropped: the ring or buffer was
full) and a comment saying the same in words; ``capinfos`` and Wireshark's
Capture File Properties show them. Classic pcap (``--pcap-format pcap``) has
nowhere to keep them. A file is written to a temporary name beside it and
renamed when whole. :func:`read_pcap` reads either format with scapy;
:func:`read_statistics` reads a pcapng file's statistics blocks back.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from scapy.error import Scapy_Exception
from scapy.plist import PacketList
from scapy.utils import rdpcap

from netlab.errors import UsageError
from netlab.files import atomic_file
from netlab.inspect.sniffer import SNAPSHOT_LENGTH, CapturedPacket, CaptureStatistics

DLT_EN10MB = 1
FORMATS = ("pcapng", "pcap")
PCAP_MAGIC = 0xA1B2C3D4
SECTION_HEADER = 0x0A0D0D0A
INTERFACE_DESCRIPTION = 1
INTERFACE_STATISTICS = 5
ENHANCED_PACKET = 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPTION_END, OPTION_COMMENT = 0, 1
SHB_USER_APPLICATION = 4
IF_NAME = 2
ISB_STARTTIME, ISB_ENDTIME, ISB_IFRECV, ISB_IFDROP, ISB_OSDROP = 2, 3, 4, 5, 7
_MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class FileStatistics:
    """One Interface Statistics Block read back: counts (None when absent) and its comment."""

    received: int | None
    dropped: int | None
    os_dropped: int | None
    comment: str | None


def write_pcap(path: str, packets: Sequence[CapturedPacket], *, file_format: str = "pcap",
               statistics: CaptureStatistics | None = None) -> int:
    """Write captured frames to a capture file (replacing it only once it is whole).

    Args:
        path: the file to write.
        packets: frames with their capture times.
        file_format: "pcapng" or "pcap" (classic; it cannot hold ``statistics``).
        statistics: the capture's kernel counters, written as a pcapng Interface Statistics Block.
    Returns:
        How many packets were written.
    Raises:
        UsageError: the file cannot be written (missing directory, permission, full disk).
    """
    if file_format not in FORMATS:
        raise ValueError(f"file_format must be one of {FORMATS}, got {file_format!r}")
    try:
        with atomic_file(path, buffering=1 << 20) as stream:
            if file_format == "pcapng":
                written = _write_pcapng(stream, packets, statistics)
            else:
                written = _write_classic(stream, packets)
    except OSError as exc:
        raise UsageError(f"cannot write the pcap file {path}: {exc.strerror or exc}; choose a writable path") from None
    return written


def _write_classic(stream: BinaryIO, packets: Sequence[CapturedPacket]) -> int:
    stream.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPSHOT_LENGTH, DLT_EN10MB))
    record = struct.Struct("<IIII")
    written = 0
    for stamp, data in packets:
        seconds, microseconds = divmod(round(stamp * _MICROSECONDS), _MICROSECONDS)
        stream.write(record.pack(seconds, microseconds, len(data), len(data)))
        stream.write(data)
        written += 1
    return written


def _write_pcapng(stream: BinaryIO, packets: Sequence[CapturedPacket], statistics: CaptureStatistics | None) -> int:
    section_options = [(SHB_USER_APPLICATION, b"netlab capture")]
    if statistics is not None:  # the capture comment capinfos and Wireshark show: the counters in words
        section_options.insert(0, (OPTION_COMMENT, _statistics_comment(statistics, len(packets)).encode()))
    stream.write(_block(SECTION_HEADER, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1), section_options))
    interface = statistics.interface if statistics is not None else "lo"
    stream.write(_block(INTERFACE_DESCRIPTION, struct.pack("<HHI", DLT_EN10MB, 0, SNAPSHOT_LENGTH),
                        [(IF_NAME, interface.encode())]))
    header = struct.Struct("<7I")
    written = 0
    for stamp, data in packets:
        padded = (len(data) + 3) & ~3
        total = header.size + padded + 4
        ticks = round(stamp * _MICROSECONDS)
        stream.write(header.pack(ENHANCED_PACKET, total, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)))
        stream.write(data)
        stream.write(b"\0" * (padded - len(data)))
        stream.write(struct.pack("<I", total))
        written += 1
    if statistics is not None:
        stream.write(_statistics_block(statistics, written))
    return written


def _statistics_comment(statistics: CaptureStatistics, written: int) -> str:
    return (f"netlab capture on {statistics.interface} through {statistics.method} "
            f"({statistics.buffer_size:,} bytes): {written:,} packets written; "
            f"{statistics.drop_summary()} (PACKET_STATISTICS)")


def _statistics_block(statistics: CaptureStatistics, written: int) -> bytes:
    start, end = (round(stamp * _MICROSECONDS) for stamp in (statistics.started, statistics.ended))
    options = [
        (OPTION_COMMENT, _statistics_comment(statistics, written).encode()),
        (ISB_STARTTIME, struct.pack("<II", start >> 32, start & 0xFFFFFFFF)),
        (ISB_ENDTIME, struct.pack("<II", end >> 32, end & 0xFFFFFFFF)),
        (ISB_IFRECV, struct.pack("<Q", statistics.kernel_packets)),
        (ISB_IFDROP, struct.pack("<Q", statistics.kernel_drops)),
        (ISB_OSDROP, struct.pack("<Q", statistics.kernel_drops)),
    ]
    return _block(INTERFACE_STATISTICS, struct.pack("<III", 0, end >> 32, end & 0xFFFFFFFF), options)


def _block(kind: int, body: bytes, options: list[tuple[int, bytes]]) -> bytes:
    """A pcapng block: type, total length, body, options (each padded to 4 bytes, then the end), total length."""
    encoded = b"".join(struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
                       for code, value in options)
    if options:
        encoded += struct.pack("<HH", OPTION_END, 0)
    total = 12 + len(body) + len(encoded)
    return struct.pack("<II", kind, total) + body + encoded + struct.pack("<I", total)


def read_statistics(path: str) -> list[FileStatistics]:
    """The Interface Statistics Blocks of a little-endian pcapng file (none for classic pcap).

    Raises:
        UsageError: the file cannot be read.
    """
    try:
        with open(path, "rb") as stream:
            content = stream.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(content) < 12 or struct.unpack_from("<I", content)[0] != SECTION_HEADER:
        return []
    found = []
    offset = 0
    while offset + 12 <= len(content):
        kind, total = struct.unpack_from("<II", content, offset)
        if total < 12 or offset + total > len(content):
            break
        if kind == INTERFACE_STATISTICS:
            options = _options(content[offset + 20:offset + total - 4])
            counts = {code: struct.unpack("<Q", options[code])[0] if len(options.get(code, b"")) == 8 else None
                      for code in (ISB_IFRECV, ISB_IFDROP, ISB_OSDROP)}
            comment = options.get(OPTION_COMMENT)
            found.append(FileStatistics(counts[ISB_IFRECV], counts[ISB_IFDROP], counts[ISB_OSDROP],
                                        comment.decode("utf-8", "replace") if comment is not None else None))
        offset += total
    return found


def _options(area: bytes) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(area):
        code, length = struct.unpack_from("<HH", area, offset)
        if code == OPTION_END:
            break
        options.setdefault(code, area[offset + 4:offset + 4 + length])
        offset += 4 + length + (-length % 4)
    return options


def read_pcap(path: str) -> PacketList:
    """Read a pcap or pcapng file with scapy (netlab layers dissect where ports are bound).

    Raises:
        UsageError: the file is missing, empty, or is not a pcap or pcapng file.
    """
    if not os.path.exists(path):
        raise UsageError(f"no such pcap file: {path}")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise UsageError(f"{path} is empty: give a pcap file written by 'netlab capture --pcap' or tcpdump -w")
    try:
        return rdpcap(path)
    except (OSError, ValueError, EOFError, Scapy_Exception) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).rstrip(".!") or type(exc).__name__
        raise UsageError(f"cannot read {path} as a pcap file ({reason}): give a pcap file written by "
                         "'netlab capture --pcap' or tcpdump -w") from None
