"""What every experiment module provides: declared parameters, a run function, typed rows.

How this works: an experiment module defines ``EXPERIMENT = Experiment(...)``.
Its :class:`Parameter` list is the schema the scenario validator checks a YAML
file against (type, bounds, choices, default), so a new experiment gets
validation and ``--check`` for free. ``run(parameters, context)`` measures one
cell of the matrix and returns rows of the experiment's own dataclass; the
runner handles repeats, the time bound, rendering and saving. A run that
cannot happen here (IPv6 off, UDP transport not installed) raises
:class:`RunSkipped` with a reason, which is reported, not counted as a failure.

Two kinds of "it went wrong" are kept apart:

- the measured system failed (commands did not complete within the run's
  bound under 20 % loss, say): that is a result. The run raises
  :class:`RunIncomplete` with its rows and the reason; the table shows the
  rows and "did not complete: ...", and ``netlab run`` still exits 0;
- the experiment itself broke (an unexpected error, a run past its time
  bound): the run failed and ``netlab run`` exits 1.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netlab.lab.placement import LOOPBACK, Placement
from netlab.scenario.charts import Chart
from netlab.scenario.target import TARGET_FRAMING, Target
from netlab.units import parse_duration, parse_percent, parse_size

ParameterValue = int | float | str | bool | None


class RunSkipped(Exception):
    """This run cannot take place on this machine; the message says why."""


class RunIncomplete(Exception):
    """The measured system did not finish within the run's bound: a result, not an error.

    Attributes:
        rows: the rows measured so far (shown in the table like any result).
        reason: one line, e.g. ``did not complete: 0/30 in 10 s (...)``.
    """

    def __init__(self, reason: str, rows: Sequence[Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rows = list(rows)


def did_not_complete(done: int, total: int, seconds: float, cause: str) -> str:
    """The one wording of an incomplete run: ``did not complete: 0/30 in 10 s: <cause>``."""
    return f"did not complete: {done}/{total} in {seconds:.3g} s: {cause}"


class RunCancelled(Exception):
    """The runner asked the run to stop (its time bound passed or Ctrl-C)."""


@dataclass(frozen=True)
class Parameter:
    """One experiment parameter as a scenario file may set it.

    Attributes:
        name: the key in ``parameters:`` / ``matrix:``.
        kind: int, float, str or bool (float also accepts integers).
        default: the value used when the scenario does not set it.
        help: one line for ``--check`` and error messages.
        choices: allowed values (strings usually), or None for any.
        minimum: the smallest allowed number, or None.
        maximum: the largest allowed number, or None.
        nullable: whether ``null`` is allowed (meaning "not applicable").
        shares_seed: cells that differ only in this parameter get the same seed, so
            a comparison along it sees the same random choices (the same loss pattern).
        unit: ``s``, ``bytes`` or ``%`` when the value is a duration, a size or a
            percentage: a scenario may then write it with a unit (``500ms``,
            ``64KiB``, ``5%``; see :mod:`netlab.units`), a plain number being in this unit.
    """

    name: str
    kind: type
    default: ParameterValue
    help: str = ""
    choices: tuple[ParameterValue, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    shares_seed: bool = False
    unit: str = ""

    def convert(self, value: object) -> object:
        """A string with a unit (``500ms``, ``64KiB``, ``5%``) as a number in :attr:`unit`; else ``value``."""
        if not self.unit or not isinstance(value, str):
            return value
        parse: dict[str, Callable[[object], float]] = {"s": parse_duration, "bytes": parse_size, "%": parse_percent}
        try:
            number = parse[self.unit](value)
        except ValueError:
            return value
        return int(number) if self.kind is int and number == int(number) else float(number)

    def describe(self) -> str:
        """What is allowed, e.g. ``an integer >= 0`` or ``one of tcp4, unix``."""
        if self.choices is not None:
            allowed = "one of " + ", ".join(str(choice) for choice in self.choices)
        else:
            noun = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[self.kind]
            noun += {"s": " of seconds", "bytes": " of bytes", "%": " of percent"}.get(self.unit, "")
            bounds = []
            if self.minimum is not None:
                bounds.append(f">= {self.minimum:g}")
            if self.maximum is not None:
                bounds.append(f"<= {self.maximum:g}")
            allowed = noun + (" " + " and ".join(bounds) if bounds else "")
            example = {"s": "500ms", "bytes": "64KiB", "%": "5%"}.get(self.unit)
            if example:
                allowed += f" (or with a unit, e.g. {example})"
        return allowed + (" or null" if self.nullable else "")

    def accepts(self, value: object) -> bool:
        """True when ``value`` (as loaded from YAML) is a valid setting."""
        if value is None:
            return self.nullable
        if self.kind is bool:
            valid_type = isinstance(value, bool)
        elif self.kind is int:
            valid_type = isinstance(value, int) and not isinstance(value, bool)
        elif self.kind is float:
            valid_type = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            valid_type = isinstance(value, str)
        if not valid_type:
            return False
        if self.choices is not None and value not in self.choices:
            return False
        if self.minimum is not None and value < self.minimum:  # type: ignore[operator]
            return False
        if self.maximum is not None and value > self.maximum:  # type: ignore[operator]
            return False
        return True


@dataclass
class RunContext:
    """What the runner gives one run: its seed, its time bound, a place for files.

    Attributes:
        seed: this run's seed (the scenario seed, the cell and the repeat mixed).
        deadline: ``time.monotonic()`` by which the run must end.
        cancelled: set when the runner gives up on the run (time bound, Ctrl-C).
        work_directory: a private temporary directory for UNIX socket files.
        network: where the server and the client go (loopback, or two namespaces).
        target: the remote ``netlab serve`` to measure against instead of a server started here
            (``netlab run --target``), or None.
    """

    seed: int
    deadline: float
    cancelled: threading.Event
    work_directory: str
    network: Placement = LOOPBACK
    target: Target | None = None
    random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def remaining(self) -> float:
        """Seconds left before the deadline (never below 0)."""
        return max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """Raise :class:`RunCancelled` when the run should stop; call it inside loops."""
        if self.cancelled.is_set() or time.monotonic() >= self.deadline:
            raise RunCancelled("the run was stopped: its time bound passed or it was interrupted")


RunFunction = Callable[[Mapping[str, Any], RunContext], Sequence[Any]]


@dataclass(frozen=True)
class Experiment:
    """One kind of experiment, as the scenario runner sees it.

    Attributes:
        name: what ``experiment:`` says in a scenario file.
        summary: one line for listings.
        parameters: every parameter the scenario may set.
        row_type: the dataclass of the rows ``run`` returns (its fields are the columns).
        run: measures one cell; returns rows; may raise RunSkipped or a NetlabError.
        method: a paragraph for the Markdown rendering: how the figures are measured.
        check_cell: optional cross-parameter check; returns a problem or None.
        charts: the charts ``netlab results plot`` and ``netlab report`` draw from a result.
        local_only: why its cells cannot run against a remote target (``netlab run --target``);
            empty when ``run`` measures from the client side and honours ``context.target``.
        server_settings: parameters that set up the server netlab starts itself (model, placement);
            against a remote target they do not apply (see :meth:`refusal_against`).
    """

    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    row_type: type
    run: RunFunction
    method: str = ""
    check_cell: Callable[[Mapping[str, Any]], str | None] | None = None
    charts: tuple[Chart, ...] = ()
    local_only: str = "it measures a server netlab starts itself"
    server_settings: tuple[str, ...] = ()

    def parameter(self, name: str) -> Parameter | None:
        """The parameter called ``name``, or None."""
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        return None

    def refusal_against(self, target: Target, parameters: Mapping[str, Any],
                        earlier: Sequence[Mapping[str, Any]] = ()) -> str | None:
        """Why this experiment's cell cannot run against the remote ``target`` (None: it can).

        Args:
            target: the remote target (``netlab run --target``).
            parameters: the cell's parameters.
            earlier: the parameters of the cells before it that do run against the target.
        """
        if self.local_only:
            return f"{self.name} does not run against a remote target: {self.local_only}"
        transport = parameters.get("transport")
        if transport is not None and transport != target.scheme:
            return f"the target listens on {target.scheme}, this cell uses {transport}"
        framing = parameters.get("framing")
        if framing is not None and framing != TARGET_FRAMING:
            return (f"a target is spoken to in the {TARGET_FRAMING} framing (the one that carries a token), "
                    f"this cell uses {framing}")
        settings = self.server_settings
        if settings:
            for previous in earlier:
                if all(previous.get(key) == value for key, value in parameters.items() if key not in settings):
                    differing = ", ".join(f"{key}={parameters[key]}" for key in settings
                                          if previous.get(key) != parameters.get(key))
                    if not differing:
                        continue  # the same cell twice (include:) is the scenario's own choice
                    return (f"it would repeat an earlier cell: {differing} only sets up a server netlab starts itself, "
                            "and the target's is its own")
        return None
