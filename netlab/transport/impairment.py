"""Seeded, deterministic network impairments for UDP sockets, without kernel modules.

How this works: an :class:`Impairment` says what to do (loss, duplication,
reordering with a depth, delay with jitter, corruption) and which path to
impair (what a socket sends, receives, or both). An :class:`ImpairedLink` is
one impaired path: every datagram is ``submit``-ted with the current time and
comes out of ``release(now)`` when it is due, possibly never, twice, damaged,
late, or after ``depth`` later datagrams overtook it. Decisions come from
:class:`netlab.fate.FateDrawer` (the one impairment model, seeded), so the
same datagrams meet the same fate on every run.
The UDP transport puts links between its state machines and its socket; tc
netem is not needed (and missing on some kernels).

CLI syntax parsed by :func:`parse_impairment`::

    loss=5%,dup=1%,reorder=5%,depth=3,delay=10ms,jitter=2ms,corrupt=0.1%,seed=7,path=both
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from netlab.errors import UsageError
from netlab.fate import Chances, FateDrawer, LinkCounters
from netlab.units import parse_duration, parse_percent

PATHS = ("send", "receive", "both")
_PERCENT_KEYS = {
    "loss": "loss",
    "dup": "duplicate",
    "reorder": "reorder",
    "corrupt": "corrupt",
}
_TIME_KEYS = {"delay": "delay", "jitter": "jitter"}
#: How long a held-back (reordered) datagram waits at most for ``depth`` others to pass it.
REORDER_HOLD_LIMIT = 0.010


@dataclass(frozen=True, kw_only=True)
class Impairment(Chances):
    """What to do to datagrams: the link's :class:`~netlab.fate.Chances` (probabilities are
    fractions, 0.05 = 5%; a reordered datagram is held back until ``depth`` later ones passed it),
    and these settings of its own.

    Attributes:
        depth: how many later datagrams overtake a held-back one.
        seed: seed of the random generator (same seed, same decisions).
        path: ``send``, ``receive`` or ``both`` (which socket path to impair).
    """

    depth: int = 3
    seed: int = 0
    path: str = "send"

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(
                    f"impairment {name}={value:g} is out of range: use 0% to 100%"
                )
        if self.delay < 0 or self.jitter < 0:
            raise UsageError("impairment delay and jitter must not be negative")
        if self.jitter > self.delay:
            raise UsageError(
                f"jitter {self.jitter:g} s exceeds delay {self.delay:g} s: add a delay of at least the jitter"
            )
        if self.depth < 1:
            raise UsageError(f"reorder depth {self.depth} must be 1 or more")
        if self.path not in PATHS:
            raise UsageError(
                f"impairment path {self.path!r} is unknown: use one of {', '.join(PATHS)}"
            )

    @property
    def impairs_send(self) -> bool:
        """True when the sending path is impaired."""
        return self.impaired and self.path in ("send", "both")

    @property
    def impairs_receive(self) -> bool:
        """True when the receiving path is impaired."""
        return self.impaired and self.path in ("receive", "both")


def parse_impairment(text: str) -> Impairment:
    """Parse ``loss=5%,dup=1%,reorder=5%,depth=3,delay=10ms,jitter=2ms,corrupt=0.1%,seed=7,path=send``.

    Args:
        text: comma-separated key=value pairs; an empty string means no impairment.
    Returns:
        The :class:`Impairment`.
    Raises:
        UsageError: unknown key, repeated key, or a bad value, with what to write instead.
    """
    values: dict[str, float | int | str] = {}
    known = ", ".join([*_PERCENT_KEYS, "depth", *_TIME_KEYS, "seed", "path"])
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, raw = item.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if not separator or not raw:
            raise UsageError(
                f"impairment item {item!r} needs a value: write key=value, e.g. loss=5%"
            )
        value: float | int | str
        if key in _PERCENT_KEYS:
            name, value = _PERCENT_KEYS[key], _parse_percent(key, raw)
        elif key in _TIME_KEYS:
            name, value = _TIME_KEYS[key], _parse_duration(key, raw)
        elif key in ("seed", "depth"):
            name, value = key, _parse_integer(key, raw)
        elif key == "path":
            name, value = key, raw.lower()
        else:
            raise UsageError(f"unknown impairment key {key!r}: use {known}")
        if name in values:
            raise UsageError(f"impairment key {key!r} is given twice: keep one")
        values[name] = value
    return Impairment(**values)  # type: ignore[arg-type]


def _parse_percent(key: str, raw: str) -> float:
    try:
        value = parse_percent(raw)
    except ValueError as exc:
        raise UsageError(f"{key}={exc}") from None
    if not 0.0 <= value <= 100.0:
        raise UsageError(f"{key}={raw} is out of range: use 0% to 100%")
    return value / 100.0


def _parse_duration(key: str, raw: str) -> float:
    try:
        return parse_duration(raw, bare=None)
    except ValueError as exc:
        raise UsageError(f"{key}={exc}") from None


def _parse_integer(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise UsageError(
            f"{key}={raw!r} is not a whole number: write e.g. {key}=7"
        ) from None


class _Held:
    """A datagram held back until ``remaining`` later ones overtook it (or ``deadline``)."""

    __slots__ = ("datagram", "deadline", "destination", "remaining")

    def __init__(
        self, remaining: int, deadline: float, datagram: bytes, destination: object
    ) -> None:
        self.remaining = remaining
        self.deadline = deadline
        self.datagram = datagram
        self.destination = destination


@dataclass
class ImpairedLink:
    """One impaired path: datagrams go in with ``submit`` and come out of ``release``."""

    impairment: Impairment
    stats: LinkCounters = field(default_factory=LinkCounters)

    def __post_init__(self) -> None:
        self._fates = FateDrawer(self.impairment.seed)
        self._scheduled: list[tuple[float, int, bytes, object]] = []
        self._held: deque[_Held] = deque()
        self._order = 0

    def submit(self, datagram: bytes, now: float, destination: object = None) -> None:
        """Hand one datagram to the path at time ``now``; ``destination`` travels with it.

        Its fate is drawn by :class:`~netlab.fate.FateDrawer`; a reordered copy
        is held until ``depth`` later datagrams passed it.
        """
        impairment = self.impairment
        fate = self._fates.draw(impairment, len(datagram))
        self.stats.count(fate)
        for copy in fate.copies:
            data = copy.apply(datagram)
            if copy.reordered:
                deadline = now + impairment.delay + REORDER_HOLD_LIMIT
                self._held.append(_Held(impairment.depth, deadline, data, destination))
                continue
            when = now + copy.wait
            self._schedule(when, data, destination)
            self._overtake(when)

    def release(self, now: float) -> list[tuple[bytes, object]]:
        """The ``(datagram, destination)`` pairs due by ``now``, in the order they leave the path."""
        held = self._held
        while held and held[0].deadline <= now:
            entry = held.popleft()
            self._schedule(now, entry.datagram, entry.destination)
        scheduled = self._scheduled
        due: list[tuple[bytes, object]] = []
        while scheduled and scheduled[0][0] <= now:
            _, _, datagram, destination = heapq.heappop(scheduled)
            due.append((datagram, destination))
        self.stats.sent += len(due)
        return due

    def next_release(self) -> float | None:
        """When the next datagram is due (None: nothing is waiting)."""
        times = []
        if self._scheduled:
            times.append(self._scheduled[0][0])
        if self._held:
            times.append(self._held[0].deadline)
        return min(times) if times else None

    def _overtake(self, when: float) -> None:
        """A datagram leaving at ``when`` passed the held-back ones; those passed ``depth`` times follow it."""
        if not self._held:
            return
        still_held: deque[_Held] = deque()
        for entry in self._held:
            entry.remaining -= 1
            if entry.remaining <= 0:
                self._schedule(when, entry.datagram, entry.destination)
            else:
                still_held.append(entry)
        self._held = still_held

    def _schedule(self, when: float, datagram: bytes, destination: object) -> None:
        self._order += 1
        heapq.heappush(self._scheduled, (when, self._order, datagram, destination))
