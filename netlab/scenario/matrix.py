"""Expand a scenario's matrix into the list of runs, in a stable order.

How this works: the cells are the cartesian product of the ``matrix:`` lists,
the first key varying slowest (file order), followed by the ``include:``
cells. Every cell gets the experiment's defaults, then ``parameters:``, then
its own values. Each cell is run ``repeat`` times in a row; each run has its
own seed derived from the scenario seed, the cell and the repeat, so a run can
be reproduced alone and adding a cell does not change the others' seeds. A
parameter declared ``shares_seed`` (the one a scenario compares, such as the
RTO floor) is left out of the seed, so cells that differ only in it see the
same random choices: a like-for-like comparison.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

from netlab.scenario.model import Scenario


@dataclass(frozen=True)
class Cell:
    """One combination of parameters.

    Attributes:
        index: position in the expanded matrix (0-based).
        parameters: every experiment parameter, defaults filled in.
        varied: only the values the matrix or the include entry set.
        where: how a validation message names this cell.
    """

    index: int
    parameters: dict[str, Any]
    varied: dict[str, Any]
    where: str

    def label(self) -> str:
        """``transport=tcp4 backlog=3`` (or ``defaults`` when nothing varies)."""
        return " ".join(f"{key}={_show(value)}" for key, value in self.varied.items()) or "defaults"


@dataclass(frozen=True)
class PlannedRun:
    """One run: a cell, which repeat, and its seed."""

    index: int
    cell: Cell
    repeat: int
    seed: int


def expand_cells(scenario: Scenario) -> list[Cell]:
    """Return the scenario's cells in run order (matrix product, then includes)."""
    base = {parameter.name: parameter.default for parameter in scenario.experiment.parameters}
    base.update(scenario.parameters)
    keys = list(scenario.matrix)
    cells: list[Cell] = []
    for values in itertools.product(*(scenario.matrix[key] for key in keys)):
        varied = dict(zip(keys, values))
        where = "matrix (" + ", ".join(f"{k}={_show(v)}" for k, v in varied.items()) + ")" if varied else "parameters"
        cells.append(Cell(len(cells), {**base, **varied}, varied, where))
    for position, extra in enumerate(scenario.include):
        cells.append(Cell(len(cells), {**base, **extra}, dict(extra), f"include[{position}]"))
    return cells


def plan_runs(scenario: Scenario) -> list[PlannedRun]:
    """Return every run: each cell ``repeat`` times in a row, with its seed."""
    runs: list[PlannedRun] = []
    shared = seed_sharing_parameters(scenario)
    for cell in expand_cells(scenario):
        for repeat in range(scenario.repeat):
            runs.append(PlannedRun(len(runs), cell, repeat, derive_seed(scenario.seed, cell, repeat, shared)))
    return runs


def seed_sharing_parameters(scenario: Scenario) -> tuple[str, ...]:
    """The experiment's parameters left out of the seed (cells differing only in them share it)."""
    return tuple(parameter.name for parameter in scenario.experiment.parameters if parameter.shares_seed)


def derive_seed(seed: int, cell: Cell, repeat: int, shared: tuple[str, ...] = ()) -> int:
    """A 63-bit seed from the scenario seed, the cell's parameters (but ``shared``) and the repeat number."""
    parameters = sorted((key, value) for key, value in cell.parameters.items() if key not in shared)
    text = f"{seed}|{parameters!r}|{repeat}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
