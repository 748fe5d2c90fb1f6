"""Standard pcap files: what Wireshark and tshark open.

How this works: scapy's :class:`PcapWriter` writes the classic libpcap format
with link type Ethernet (DLT_EN10MB, what Linux loopback reports) and each
packet's capture timestamp; :func:`read_pcap` reads one back with ``rdpcap``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from scapy.error import Scapy_Exception
from scapy.plist import PacketList
from scapy.utils import PcapWriter, rdpcap

from netlab.errors import UsageError
from netlab.inspect.sniffer import SNAPSHOT_LENGTH, CapturedPacket

DLT_EN10MB = 1


def write_pcap(path: str, packets: Iterable[CapturedPacket]) -> int:
    """Write captured packets to a pcap file (replacing it).

    Args:
        path: the file to write.
        packets: frames with their capture times.
    Returns:
        How many packets were written.
    Raises:
        UsageError: the file cannot be written (missing directory, permission).
    """
    written = 0
    try:
        with PcapWriter(path, linktype=DLT_EN10MB, snaplen=SNAPSHOT_LENGTH, sync=False) as writer:
            for packet in packets:
                writer.write(packet.dissect())
                written += 1
    except OSError as exc:
        raise UsageError(f"cannot write the pcap file {path}: {exc.strerror}; choose a writable path") from None
    return written


def read_pcap(path: str) -> PacketList:
    """Read a pcap file with scapy (netlab layers dissect where ports are bound).

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
