"""A packet's fate on a seeded impaired link: the one impairment model netlab uses (pure).

How this works: a :class:`FateDrawer` holds one ``random.Random(seed)``; for
every packet, :meth:`FateDrawer.draw` reads the link's chances (loss,
duplicate, reorder, corrupt as fractions; delay and jitter in seconds) and
returns a :class:`Fate`: lost, or one or two :class:`Copy` each with its wait,
whether it is reordered, and which bit (if any) to flip. Every packet draws
the same count of random numbers whatever the settings, so for one seed the
fate of packet N depends on N alone, and turning one setting on leaves the
other settings' choices unchanged.

What "reordered" means is the caller's to apply, as fits its medium:

- :mod:`netlab.transport.impairment` (UDP sockets) holds a reordered
  datagram until ``depth`` later ones passed it;
- :mod:`netlab.lab.wire` (frames between namespaces) sends it without the
  delay, so it overtakes earlier frames;
- :mod:`netlab.testing.network` (the fake network) delays it by up to an
  extra ``reorder_delay``, scaled by :attr:`Copy.spread`.
"""

from __future__ import annotations

import random
from typing import NamedTuple, Protocol


class Chances(Protocol):
    """What a link does to packets (a transport ``Impairment``, a lab ``LinkSpec``, ...)."""

    @property
    def loss(self) -> float:
        """Chance a packet is dropped (0..1)."""

    @property
    def duplicate(self) -> float:
        """Chance a packet is sent twice."""

    @property
    def reorder(self) -> float:
        """Chance a copy is reordered (what that means is the caller's)."""

    @property
    def corrupt(self) -> float:
        """Chance one bit of a copy is flipped."""

    @property
    def delay(self) -> float:
        """Fixed one-way delay in seconds."""

    @property
    def jitter(self) -> float:
        """The delay varies uniformly by up to this many seconds either way."""


class Copy(NamedTuple):
    """One copy of a packet that leaves the link.

    Attributes:
        wait: seconds from arrival until it leaves: the delay +- jitter, never negative.
        reordered: True when this copy is to be reordered.
        bit: which bit of the damageable bytes to flip (0 = the first byte's
            lowest bit), or None to leave the copy intact.
        spread: a uniform number in [0, 1) for a caller's own spreading (the
            same one that placed the jitter).
    """

    wait: float
    reordered: bool
    bit: int | None
    spread: float

    def apply(self, data: bytes, offset: int = 0) -> bytes:
        """``data`` with this copy's bit flipped, counting bits from byte ``offset``."""
        if self.bit is None:
            return data
        damaged = bytearray(data)
        damaged[offset + self.bit // 8] ^= 1 << (self.bit % 8)
        return bytes(damaged)


class Fate(NamedTuple):
    """What happens to one packet: the copies that leave (none when it is lost)."""

    copies: tuple[Copy, ...]

    @property
    def lost(self) -> bool:
        """True when no copy leaves."""
        return not self.copies

    @property
    def duplicated(self) -> bool:
        """True when two copies leave."""
        return len(self.copies) == 2


#: The fate of a lost packet.
LOST = Fate(())


class FateDrawer:
    """One seeded random stream deciding packets' fates, one packet per :meth:`draw`."""

    __slots__ = ("_random",)

    def __init__(self, seed: int) -> None:
        """Same seed, same fates for the same sequence of packets."""
        self._random = random.Random(seed)

    def draw(self, chances: Chances, damageable: int) -> Fate:
        """The fate of the next packet.

        Args:
            chances: the link's settings.
            damageable: how many of the packet's bytes may be corrupted
                (0: it is never corrupted).
        Returns:
            The :class:`Fate`; draws ten random numbers whatever the settings
            (two for the packet, four for each possible copy).
        """
        draw = self._random.random
        lose, twice = draw(), draw()
        first = (draw(), draw(), draw(), draw())
        second = (draw(), draw(), draw(), draw())
        if lose < chances.loss:
            return LOST
        if twice < chances.duplicate:
            return Fate((_copy(chances, damageable, *first), _copy(chances, damageable, *second)))
        return Fate((_copy(chances, damageable, *first),))


def _copy(chances: Chances, damageable: int, flip: float, where: float, skip: float, spread: float) -> Copy:
    """One copy from its four random numbers."""
    bit = int(where * damageable * 8) if flip < chances.corrupt and damageable > 0 else None
    wait = chances.delay + (2 * spread - 1) * chances.jitter
    return Copy(wait if wait > 0.0 else 0.0, skip < chances.reorder, bit, spread)
