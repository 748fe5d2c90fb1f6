"""Alternating rounds: every measurement of a run taken once per round, the order reversed every other round.

How this works: :func:`run_rounds` takes named measurements (the stdlib baselines,
netlab's cells, the peers) and runs each once per round, in the given order on
even rounds and reversed on odd ones, so a baseline and the cell compared with
it see the same drift of the machine. A ratio is taken within each round (the
cell's figure over its baseline's figure of the same round); :meth:`Rounds.ratio`
gives their median and their spread (lowest and highest). A measurement that
fails is not run again and its reason is kept; the ratios that need it are
missing, never made up.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import NetlabError

#: What a failed measurement may raise (anything else is a bug and propagates).
MEASUREMENT_ERRORS = (NetlabError, OSError)
DEFAULT_ROUNDS = 5


@dataclass(frozen=True)
class Spread:
    """The median of per-round values and their lowest and highest."""

    median: float
    low: float
    high: float
    rounds: int

    @property
    def relative(self) -> float:
        """The widest distance from the median, as a fraction of the median (0 for one round)."""
        if not self.median:
            return 0.0
        return max(self.median - self.low, self.high - self.median) / self.median


def spread(values: Sequence[float]) -> Spread:
    """The :class:`Spread` of ``values`` (at least one)."""
    return Spread(statistics.median(values), min(values), max(values), len(values))


@dataclass
class Rounds:
    """What :func:`run_rounds` measured: per name, one result per round, or why it failed."""

    results: dict[Hashable, list[Any]] = field(default_factory=dict)
    failures: dict[Hashable, Exception] = field(default_factory=dict)
    #: the order each round ran in (names), for the record and the tests
    orders: list[list[Hashable]] = field(default_factory=list)

    def values(self, name: Hashable, figure: Callable[[Any], float]) -> list[float] | None:
        """``figure`` of each round's result of ``name``; None when it failed or never ran."""
        if name in self.failures or name not in self.results:
            return None
        return [figure(result) for result in self.results[name]]

    def ratio(self, name: Hashable, base: Hashable, figure: Callable[[Any], float]) -> Spread | None:
        """The per-round ratio ``figure(name) / figure(base)``: median and spread (None when either is missing)."""
        measured, baseline = self.values(name, figure), self.values(base, figure)
        if not measured or not baseline:
            return None
        ratios = [value / base_value for value, base_value in zip(measured, baseline) if base_value > 0]
        return spread(ratios) if ratios else None

    def median(self, name: Hashable, figure: Callable[[Any], float]) -> float | None:
        values = self.values(name, figure)
        return statistics.median(values) if values else None


def run_rounds(measurements: Sequence[tuple[Hashable, Callable[[], Any]]], rounds: int = DEFAULT_ROUNDS,
               on_step: Callable[[int, Hashable], None] | None = None) -> Rounds:
    """Run every measurement once per round, alternating the order; keep results and failures by name.

    ``on_step(round, name)`` is called before each measurement (progress).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    measured = Rounds()
    for number in range(rounds):
        order = list(measurements) if number % 2 == 0 else list(reversed(measurements))
        measured.orders.append([])
        for name, measure in order:
            if name in measured.failures:
                continue
            if on_step is not None:
                on_step(number, name)
            measured.orders[-1].append(name)
            try:
                result = measure()
            except MEASUREMENT_ERRORS as exc:
                measured.failures[name] = exc
                measured.results.pop(name, None)
                continue
            measured.results.setdefault(name, []).append(result)
    return measured
