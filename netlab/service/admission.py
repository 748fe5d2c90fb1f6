"""Who may connect and try to authenticate: the server's defences against floods and guessing.

How this works, after OpenSSH's sshd:

- :class:`StartupLimit` is ``MaxStartups start:rate:full``. A connection is
  *starting up* until it authenticates (with a token) or sends its first
  whole request (without one). With ``start`` or more starting up, a new
  connection is dropped with probability ``rate`` %, rising linearly to 100 %
  at ``full``: a flood of idle or slow connections cannot take every slot,
  and a real client that retries gets in.
- A per-peer limit (``max_per_peer``, sshd's PerSourceMaxStartups) caps the
  connections one peer host holds while they start up, so one host cannot
  fill the startup slots alone; its authenticated connections count only
  against ``max_connections``.
- :class:`AuthThrottle` is a per-peer failure penalty: after
  :data:`FREE_FAILURES` wrong answers from one host, its next answers are not
  even checked until a delay has passed (1 s, doubling up to
  :data:`MAX_PENALTY`); the refused answer says how long to wait. A success
  clears the host's record. Nothing here sleeps, so no server loop stalls.

Peers are told apart by host (``peer_host``): the address without its port.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from netlab.errors import UsageError

FREE_FAILURES = 3
FIRST_PENALTY = 1.0
MAX_PENALTY = 16.0
#: A host's failures are forgotten after this long without a new one.
FAILURE_MEMORY = 600.0
#: The most hosts remembered; the oldest are forgotten first.
MAX_REMEMBERED_HOSTS = 10_000


def peer_host(peer_address: str) -> str:
    """The host part of a peer address URL: ``tcp4://127.0.0.1:5000`` -> ``127.0.0.1``.

    Addresses without a port (UNIX peers) are their own host.
    """
    _, _, rest = peer_address.rpartition("://")
    if rest.startswith("["):
        return rest[1:].partition("]")[0]
    host, separator, port = rest.rpartition(":")
    return host if separator and port.isdigit() else rest


@dataclass(frozen=True)
class StartupLimit:
    """``start:rate:full``: random early drop of new connections while many are starting up."""

    start: int = 10
    rate: int = 30
    full: int = 100

    def __post_init__(self) -> None:
        if not (0 < self.start <= self.full and 0 <= self.rate <= 100):
            raise UsageError(f"a startup limit is START:RATE:FULL with 0 < START <= FULL and RATE 0..100, "
                             f"not {self}")

    @classmethod
    def parse(cls, text: str) -> StartupLimit:
        """Read ``10:30:100`` (or a single number N, meaning ``N:100:N``).

        Raises:
            UsageError: not of that form.
        """
        parts = text.split(":")
        try:
            numbers = [int(part) for part in parts]
        except ValueError:
            numbers = []
        if len(numbers) == 1:
            return cls(numbers[0], 100, numbers[0])
        if len(numbers) != 3:
            raise UsageError(f"--max-startups takes START:RATE:FULL such as 10:30:100, not {text!r}")
        return cls(*numbers)

    def drop_probability(self, starting: int) -> float:
        """The chance (0..1) that a new connection is dropped while ``starting`` connections start up."""
        if starting < self.start:
            return 0.0
        if starting >= self.full:
            return 1.0
        span = self.full - self.start
        return (self.rate + (100 - self.rate) * (starting - self.start) / span) / 100

    def drops(self, starting: int, chance: random.Random) -> bool:
        """Decide whether to drop a new connection now."""
        probability = self.drop_probability(starting)
        return probability >= 1.0 or (probability > 0.0 and chance.random() < probability)

    def __str__(self) -> str:
        return f"{self.start}:{self.rate}:{self.full}"


class AuthThrottle:
    """Per-peer-host penalty after failed authentication; thread-safe."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # host -> (consecutive failures, time of the last one)
        self._failures: dict[str, tuple[int, float]] = {}

    def wait_needed(self, host: str) -> float:
        """Seconds ``host`` must still wait before an answer of its is checked (0: check it now)."""
        with self._lock:
            record = self._failures.get(host)
        if record is None:
            return 0.0
        failures, last = record
        now = self._now()
        if now - last > FAILURE_MEMORY:
            return 0.0
        return max(0.0, last + penalty(failures) - now)

    def failed(self, host: str) -> None:
        """Count a wrong answer from ``host``."""
        now = self._now()
        with self._lock:
            failures, last = self._failures.pop(host, (0, now))
            if now - last > FAILURE_MEMORY:
                failures = 0
            self._failures[host] = (failures + 1, now)  # re-inserted: dict order is age order
            while len(self._failures) > MAX_REMEMBERED_HOSTS:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, host: str) -> None:
        """Forget ``host``'s failures."""
        with self._lock:
            self._failures.pop(host, None)

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator,no-any-return]


def penalty(failures: int) -> float:
    """Seconds a host waits after ``failures`` consecutive failures: 0 for the first few, then doubling."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(MAX_PENALTY, FIRST_PENALTY * 2 ** (failures - FREE_FAILURES))
