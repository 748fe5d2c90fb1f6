"""A TPACKET_V3 receive ring: the kernel writes frames into memory shared with netlab.

How this works (packet(7), the kernel's Documentation/networking/packet_mmap):
``PACKET_VERSION = TPACKET_V3`` and ``PACKET_RX_RING`` with a ``tpacket_req3``
give the socket a ring of blocks, mapped into this process with ``mmap``. The
kernel fills one block at a time with frames (each a ``tpacket3_hdr``, then the
frame at ``tp_mac``) and hands the block over by setting its ``block_status`` to
``TP_STATUS_USER`` when it is full or ``retire_ms`` after its first frame. We
read the blocks in order, copy each frame's bytes and timestamp out (nothing
else is parsed here: dissection happens later, off the hot loop), and give the
block back (``TP_STATUS_KERNEL``). There is no system call per frame, only a
``poll`` when the next block is not ready. When every block is still ours the
kernel drops frames and counts them in PACKET_STATISTICS; a larger ring rides
out longer bursts.
"""

from __future__ import annotations

import mmap
import select
import socket
import struct

SOL_PACKET = getattr(socket, "SOL_PACKET", 263)
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
#: struct tpacket_req3: block size, block count, frame size, frame count, retire timeout (ms),
#: private area size, feature word.
_REQUEST = struct.Struct("=7I")
#: struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status, num_pkts,
#: offset_to_first_pkt (the rest, lengths and timestamps, is not needed).
_BLOCK_HEADER = struct.Struct("=5I")
_BLOCK_STATUS_OFFSET = 8
_RELEASE = struct.Struct("=I")
#: struct tpacket3_hdr up to tp_mac: next offset, seconds, nanoseconds, captured length, wire length, status, mac.
_FRAME_HEADER = struct.Struct("=6IH")
#: The nominal frame size of a V3 ring (frames are packed at their real size; the kernel only checks this).
FRAME_SIZE = 2048
DEFAULT_BLOCK_SIZE = 1 << 20
RETIRE_MS = 20


class PacketRing:
    """A TPACKET_V3 receive ring on a packet socket that is not bound yet (bind after, so no frame is missed).

    Args:
        packet_socket: an AF_PACKET socket.
        size: the ring's total size in bytes (rounded down to whole blocks, at least two).
        retire_ms: how long the kernel waits before handing over a block that is not full.
    Raises:
        OSError: the kernel has no TPACKET_V3 or refused the ring (memory, limits).
    """

    def __init__(self, packet_socket: socket.socket, size: int, retire_ms: int = RETIRE_MS) -> None:
        page = mmap.PAGESIZE
        self.block_size = DEFAULT_BLOCK_SIZE if size >= 4 * DEFAULT_BLOCK_SIZE else max(
            page, min(DEFAULT_BLOCK_SIZE, 1 << (max(size // 4, page).bit_length() - 1)))
        self.block_count = max(2, size // self.block_size)
        self.retire_ms = retire_ms
        packet_socket.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frames = self.block_size // FRAME_SIZE * self.block_count  # blocks are at least a page, > FRAME_SIZE
        packet_socket.setsockopt(SOL_PACKET, PACKET_RX_RING, _REQUEST.pack(
            self.block_size, self.block_count, FRAME_SIZE, frames, retire_ms, 0, 0))
        self._memory = mmap.mmap(packet_socket.fileno(), self.block_size * self.block_count,
                                 mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._poll = select.poll()
        self._poll.register(packet_socket.fileno(), select.POLLIN | select.POLLERR)
        self._next_block = 0

    @property
    def size(self) -> int:
        """The ring's size in bytes."""
        return self.block_size * self.block_count

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the next block to be handed over; True when it is."""
        if self._ready():
            return True
        self._poll.poll(max(0, int(timeout * 1000)))
        return self._ready()

    def take(self, into: list, limit: int) -> int:
        """Append ``(time, frame bytes)`` for every frame of the blocks handed over, up to ``limit`` frames.

        Each block read is given back to the kernel, including any frames past ``limit``.

        Returns:
            How many frames were appended.
        """
        memory, block_size, unpack_block, unpack_frame = self._memory, self.block_size, \
            _BLOCK_HEADER.unpack_from, _FRAME_HEADER.unpack_from
        taken = 0
        while self._ready():
            start = self._next_block * block_size
            _, _, _, count, offset = unpack_block(memory, start)
            offset += start
            for _ in range(min(count, limit - taken)):
                next_offset, seconds, nanoseconds, captured, _, _, mac = unpack_frame(memory, offset)
                into.append((seconds + nanoseconds * 1e-9, memory[offset + mac:offset + mac + captured]))
                offset += next_offset
            taken += min(count, limit - taken)
            _RELEASE.pack_into(memory, start + _BLOCK_STATUS_OFFSET, TP_STATUS_KERNEL)
            self._next_block = (self._next_block + 1) % self.block_count
        return taken

    def close(self) -> None:
        """Unmap the ring (the socket is closed by its owner)."""
        self._memory.close()

    def _ready(self) -> bool:
        status, = _RELEASE.unpack_from(self._memory, self._next_block * self.block_size + _BLOCK_STATUS_OFFSET)
        return bool(status & TP_STATUS_USER)
