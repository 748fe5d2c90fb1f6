"""A scenario as validated: what to run, over which parameters, how often, where.

How this works: :mod:`netlab.scenario.schema` reads a YAML file and builds a
:class:`Scenario` (or says, in one line, what is wrong), checking every cell
:mod:`netlab.scenario.matrix` expands; the matrix needs only this module, so
the two do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netlab.lab.spec import LOOPBACK, NetworkSpec
from netlab.scenario.experiments.base import Experiment

DEFAULT_REPEAT = 1
DEFAULT_SEED = 0
DEFAULT_RUN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file.

    Attributes:
        path: the file it was loaded from.
        name: used in result file names.
        experiment: the experiment it runs.
        description: free text.
        parameters: fixed parameter values, as written.
        matrix: varied parameters, name -> values, in file order.
        include: extra cells, each a mapping of parameter values.
        repeat: runs per cell.
        seed: base seed.
        timeout: seconds per run.
        network: where the hosts live and what the link between them does.
        network_override: the ``--network`` value that replaced the file's ``network:``, or ''.
    """

    path: str
    name: str
    experiment: Experiment
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    matrix: dict[str, list[Any]] = field(default_factory=dict)
    include: list[dict[str, Any]] = field(default_factory=list)
    repeat: int = DEFAULT_REPEAT
    seed: int = DEFAULT_SEED
    timeout: float = DEFAULT_RUN_TIMEOUT
    network: NetworkSpec = LOOPBACK
    network_override: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The scenario as run, for the result file."""
        return {
            "path": self.path,
            "name": self.name,
            "experiment": self.experiment.name,
            "description": self.description,
            "parameters": self.parameters,
            "matrix": self.matrix,
            "include": self.include,
            "repeat": self.repeat,
            "seed": self.seed,
            "timeout": self.timeout,
            "network": self.network.as_dict(),
            **({"network_override": self.network_override} if self.network_override else {}),
        }
