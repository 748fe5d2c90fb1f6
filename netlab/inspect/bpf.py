"""Classic BPF programs for the capture socket: the kernel keeps only the packets asked for.

How this works: :func:`port_filter_program` assembles, without libpcap, the
program tcpdump would compile for ``(tcp or udp) and port P`` over Ethernet
(IPv4 and IPv6), optionally also refusing the frames the interface sends
(``PACKET_OUTGOING``: on loopback each packet passes twice, and the arriving
copy is the one kept). The program returns the snapshot length for a wanted
frame and 0 for any other, so unwanted frames never reach the socket's buffer
or ring and are not counted in its PACKET_STATISTICS. :func:`attach_filter`
installs it with ``SO_ATTACH_FILTER``; the same program serves the ring and the
plain ``recvmsg`` paths. Loads past the end of a short frame make the kernel
return 0, so no length checks are needed. Non-first IPv4 fragments carry no
ports and are refused when ports are asked for (as tcpdump does).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterable

#: Opcodes (linux/bpf_common.h), each a class | size | mode or class | operation | source.
LOAD_HALF_ABSOLUTE = 0x28  # ldh [k]
LOAD_BYTE_ABSOLUTE = 0x30  # ldb [k]
LOAD_WORD_ABSOLUTE = 0x20  # ld [k] (also the ancillary data at SKF_AD_OFF + n)
LOAD_HALF_INDEXED = 0x48  # ldh [x + k]
LOAD_INDEX_IP_HEADER_LENGTH = 0xB1  # ldx 4 * ([k] & 0xf)
JUMP_IF_EQUAL = 0x15  # jeq #k
JUMP_IF_BITS_SET = 0x45  # jset #k
RETURN_CONSTANT = 0x06  # ret #k
#: The packet type of the frame (sll_pkttype), an ancillary load: SKF_AD_OFF (-0x1000) + SKF_AD_PKTTYPE (4).
ANCILLARY_PACKET_TYPE = (-0x1000 + 4) & 0xFFFFFFFF
PACKET_OUTGOING = 4
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
IPV4_FRAGMENT_OFFSET_MASK = 0x1FFF
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_INSTRUCTION = struct.Struct("=HBBI")
#: struct sock_fprog { unsigned short len; struct sock_filter *filter; } with native alignment.
_PROGRAM = struct.Struct("@HP")

Instruction = tuple[int, int, int, int]
_Jump = int | str  # a relative offset or a label


def port_filter_program(
    protocols: Iterable[int], ports: Iterable[int], snapshot_length: int, *, skip_outgoing: bool
) -> list[Instruction]:
    """The program keeping IPv4/IPv6 frames of ``protocols`` to or from one of ``ports`` (any port if empty).

    Args:
        protocols: IP protocol numbers (6 TCP, 17 UDP); at least one.
        ports: ports at either end; empty keeps every port.
        snapshot_length: how many bytes of a wanted frame to keep.
        skip_outgoing: refuse the frames the interface sends (loopback shows each packet twice).
    Returns:
        (code, jump-if-true, jump-if-false, k) instructions, as ``struct sock_filter``.
    """
    protocols, ports = sorted(set(protocols)), sorted(set(ports))
    if not protocols:
        raise ValueError("a capture filter needs at least one IP protocol")
    code: list[tuple[int, _Jump, _Jump, int]] = []
    labels: dict[str, int] = {}

    def emit(opcode: int, k: int, if_true: _Jump = 0, if_false: _Jump = 0) -> None:
        code.append((opcode, if_true, if_false, k))

    def match_any(values: list[int], found: str, otherwise: str) -> None:
        for index, value in enumerate(values):
            emit(JUMP_IF_EQUAL, value, found, otherwise if index == len(values) - 1 else 0)

    if skip_outgoing:
        emit(LOAD_WORD_ABSOLUTE, ANCILLARY_PACKET_TYPE)
        emit(JUMP_IF_EQUAL, PACKET_OUTGOING, "reject", 0)
    emit(LOAD_HALF_ABSOLUTE, 12)
    emit(JUMP_IF_EQUAL, ETHERTYPE_IPV4, "ipv4", 0)
    emit(JUMP_IF_EQUAL, ETHERTYPE_IPV6, "ipv6", "reject")
    for family in ("ipv4", "ipv6"):
        labels[family] = len(code)
        emit(LOAD_BYTE_ABSOLUTE, 23 if family == "ipv4" else 20)
        match_any(protocols, f"{family}-ports" if ports else "accept", "reject")
        if not ports:
            continue
        labels[f"{family}-ports"] = len(code)
        if family == "ipv4":
            emit(LOAD_HALF_ABSOLUTE, 20)
            emit(JUMP_IF_BITS_SET, IPV4_FRAGMENT_OFFSET_MASK, "reject", 0)
            emit(LOAD_INDEX_IP_HEADER_LENGTH, 14)
            source, destination, load = 14, 16, LOAD_HALF_INDEXED
        else:
            source, destination, load = 54, 56, LOAD_HALF_ABSOLUTE  # netlab sends no extension headers
        emit(load, source)
        match_any(ports, "accept", f"{family}-destination")
        labels[f"{family}-destination"] = len(code)
        emit(load, destination)
        match_any(ports, "accept", "reject")
    labels["accept"] = len(code)
    emit(RETURN_CONSTANT, snapshot_length)
    labels["reject"] = len(code)
    emit(RETURN_CONSTANT, 0)
    return [(opcode, _offset(labels, index, if_true), _offset(labels, index, if_false), k)
            for index, (opcode, if_true, if_false, k) in enumerate(code)]


def _offset(labels: dict[str, int], index: int, target: _Jump) -> int:
    """A jump target as the kernel wants it: instructions to skip after ``index`` (0-255)."""
    if isinstance(target, int):
        return target
    offset = labels[target] - index - 1
    if not 0 <= offset <= 255:
        raise ValueError(f"too many ports for one capture filter (a jump of {offset} instructions)")
    return offset


def attach_filter(packet_socket: socket.socket, program: list[Instruction]) -> None:
    """Install ``program`` on ``packet_socket`` (SO_ATTACH_FILTER; the kernel copies it).

    Raises:
        OSError: the kernel refused the program.
    """
    instructions = b"".join(_INSTRUCTION.pack(*instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(instructions, len(instructions))
    packet_socket.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                             _PROGRAM.pack(len(program), ctypes.addressof(buffer)))
