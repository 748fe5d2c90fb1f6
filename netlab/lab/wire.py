"""The netlab wire: forwards Ethernet frames between two interfaces, delaying, dropping, duplicating them.

How this works: where the kernel has no ``sch_netem``, the router namespace
holds this process instead of a bridge. It opens one AF_PACKET socket per
interface (it sees every frame that arrives there, ignores its own output) and
for each frame asks the direction's :class:`Impairment` what to do: drop it,
send one or two copies, each after its delay, a copy possibly with one bit
flipped. Copies wait in a heap ordered by due time and leave through the other
interface's AF_PACKET socket, so they pass that interface's queue discipline
(the TBF or HTB shaper) like any other frame; a shaper that is full refuses
the frame (ENOBUFS) and the wire counts it as a queue drop.

The random choices come from ``random.Random(seed)``, one stream per
direction, and every frame draws the same numbers whatever the settings, so a
run with the same seed and the same frames makes the same choices. The
interfaces' offloads are off (see topology.py), so each frame is one real
packet with a finished checksum.

Run as ``python -m netlab.lab.wire CONFIG_JSON``; it prints ``ready`` when its
sockets are bound, stops on SIGTERM/SIGINT, and then writes its counters as
JSON to the ``stats`` file named in the configuration.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import heapq
import json
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from netlab.fate import FateDrawer, LinkCounters
from netlab.lab.spec import LinkSpec

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
ETHERNET_HEADER = 14
SOCKET_BUFFER = 8 * 1024 * 1024
MAX_HELD_FRAMES = 50_000
FRAMES_PER_WAKEUP = 256
IDLE_WAIT = 0.5
PR_SET_PDEATHSIG = 1


@dataclass
class DirectionCounters(LinkCounters):
    """What the wire did to one direction's frames: the link's counts, and frames it could not send."""

    queue_drops: int = 0
    held_drops: int = 0


class Impairment:
    """One direction's impairments (a LinkSpec's delay, jitter, loss, duplicate, reorder, corrupt) and its
    seeded random stream (:class:`~netlab.fate.FateDrawer`); :attr:`counters` say what it did."""

    def __init__(self, link: LinkSpec, seed: int) -> None:
        """``link`` gives the settings (rate, MTU and queue are the shaper's, not the wire's)."""
        self.link = link
        self.counters = DirectionCounters()
        self._fates = FateDrawer(seed)

    def decide(self, frame: bytes) -> list[tuple[float, bytes]]:
        """What to do with one frame: a list of (seconds to wait, bytes to send); empty to drop it.

        Every call draws the same count of random numbers, so the choices for
        frame N depend only on the seed and N, not on which settings are on.
        A reordered copy skips the delay (it overtakes earlier frames); a
        corrupted one has one bit flipped past the Ethernet header.
        """
        fate = self._fates.draw(self.link, max(0, len(frame) - ETHERNET_HEADER))
        self.counters.count(fate)
        return [(0.0 if copy.reordered else copy.wait, copy.apply(frame, ETHERNET_HEADER)) for copy in fate.copies]


def open_packet_socket(interface: str) -> socket.socket:
    """An AF_PACKET socket bound to ``interface`` that sees arriving frames only."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # kernels before 4.20: outgoing frames are skipped by their packet type below
    for option, forced in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
    sock.bind((interface, ETH_P_ALL))
    sock.setblocking(False)
    return sock


class Wire:
    """Forwards frames between two packet sockets through two :class:`Impairment` s."""

    def __init__(self, left: socket.socket, right: socket.socket,
                 left_to_right: Impairment, right_to_left: Impairment) -> None:
        """``left_to_right`` impairs frames arriving on ``left`` and leaving through ``right``."""
        self._routes = {left.fileno(): (right, left_to_right), right.fileno(): (left, right_to_left)}
        self._sockets = [left, right]
        self._held: list[tuple[float, int, int, bytes]] = []
        self._order = 0
        self.running = True

    def serve(self) -> None:
        """Forward until :attr:`running` turns False (a signal handler clears it)."""
        while self.running:
            now = time.monotonic()
            wait = max(0.0, self._held[0][0] - now) if self._held else IDLE_WAIT
            try:
                readable, _, _ = select.select(self._sockets, [], [], wait)
            except InterruptedError:
                continue
            for sock in readable:
                self._receive(sock)
            self._release(time.monotonic())

    def _receive(self, sock: socket.socket) -> None:
        out, impairment = self._routes[sock.fileno()]
        for _ in range(FRAMES_PER_WAKEUP):
            try:
                frame, address = sock.recvfrom(65_536)
            except (BlockingIOError, InterruptedError):
                return
            if address[2] == PACKET_OUTGOING:
                continue
            now = time.monotonic()
            for wait, data in impairment.decide(frame):
                if wait <= 0 and not self._held:
                    self._send(out, impairment, data)
                elif len(self._held) >= MAX_HELD_FRAMES:
                    impairment.counters.held_drops += 1
                else:
                    self._order += 1
                    heapq.heappush(self._held, (now + wait, self._order, out.fileno(), data))

    def _release(self, now: float) -> None:
        while self._held and self._held[0][0] <= now:
            _, _, fileno, data = heapq.heappop(self._held)
            out = self._sockets[0] if self._sockets[0].fileno() == fileno else self._sockets[1]
            other = self._sockets[1] if out is self._sockets[0] else self._sockets[0]
            self._send(out, self._routes[other.fileno()][1], data)

    @staticmethod
    def _send(out: socket.socket, impairment: Impairment, data: bytes) -> None:
        try:
            out.send(data)
            impairment.counters.sent += 1
        except OSError as exc:
            if exc.errno in (errno.ENOBUFS, errno.EAGAIN):
                impairment.counters.queue_drops += 1  # the shaper's queue is full: a real drop
            elif exc.errno not in (errno.ENETDOWN, errno.ENXIO, errno.EMSGSIZE):
                raise


def main(argv: list[str]) -> int:
    """Entry point: ``python -m netlab.lab.wire CONFIG_JSON``."""
    config: dict[str, Any] = json.loads(argv[0])
    if config.get("parent"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != config["parent"]:
            return 0  # the run that started us is already gone
    if config.get("namespace"):
        from netlab.lab.namespace import enter_for_good

        enter_for_good(config["namespace"])
    left = open_packet_socket(config["left"])
    right = open_packet_socket(config["right"])
    to_right = Impairment(LinkSpec(**config["left_to_right"]["link"]), config["left_to_right"]["seed"])
    to_left = Impairment(LinkSpec(**config["right_to_left"]["link"]), config["right_to_left"]["seed"])
    wire = Wire(left, right, to_right, to_left)

    def stop(signum: int, frame: object) -> None:
        wire.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    try:
        wire.serve()
    finally:
        stats = {"left_to_right": to_right.counters.__dict__, "right_to_left": to_left.counters.__dict__}
        if config.get("stats"):
            with open(config["stats"] + ".tmp", "w", encoding="utf-8") as stream:
                json.dump(stats, stream)
            os.replace(config["stats"] + ".tmp", config["stats"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
