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

Each of them describes its link as :class:`Chances` with settings of its own
added, and counts what the fates did in :class:`LinkCounters`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, kw_only=True)
class Chances:
    """What a link does to packets: the six settings every impaired link in netlab has.

    The UDP transport's :class:`~netlab.transport.impairment.Impairment`, the
    lab's :class:`~netlab.lab.spec.LinkSpec` and the fake network's
    :class:`~netlab.testing.network.LinkImpairment` are chances with settings
    of their own added.

    Attributes:
        loss: chance a packet is dropped (0..1).
        duplicate: chance a packet is sent twice.
        reorder: chance a copy is reordered (what that means is the caller's).
        corrupt: chance one bit of a copy is flipped.
        delay: fixed one-way delay in seconds.
        jitter: the delay varies uniformly by up to this many seconds either way.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0

    @property
    def impaired(self) -> bool:
        """True when packets are delayed, dropped, duplicated, reordered or corrupted."""
        return any((self.loss, self.duplicate, self.reorder, self.corrupt, self.delay, self.jitter))


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


@dataclass
class LinkCounters:
    """What an impaired link did: packets that reached it, copies that left it, and what their fates did.

    :meth:`count` adds one packet's fate; who sends the copies counts ``sent``.
    """

    received: int = 0
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0

    def count(self, fate: Fate) -> None:
        """Count one packet that reached the link and the fate drawn for it."""
        self.received += 1
        if fate.lost:
            self.dropped += 1
            return
        self.duplicated += fate.duplicated
        for copy in fate.copies:
            self.corrupted += copy.bit is not None
            self.reordered += copy.reordered


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
