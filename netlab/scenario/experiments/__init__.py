"""The experiments a scenario can name, one module each, imported on first use.

``experiment: backlog`` in a scenario file selects ``EXPERIMENT`` from
:mod:`netlab.scenario.experiments.backlog`, and so on. Modules are imported
lazily so that a scenario never pays for (or breaks on) another experiment's
imports.
"""

from __future__ import annotations

import importlib

from netlab.scenario.experiments.base import Experiment

#: experiment name -> module defining ``EXPERIMENT``.
EXPERIMENT_MODULES: dict[str, str] = {
    "backlog": "netlab.scenario.experiments.backlog",
    "framing": "netlab.scenario.experiments.framing",
    "timeouts": "netlab.scenario.experiments.timeouts",
    "concurrency": "netlab.scenario.experiments.concurrency",
    "throughput": "netlab.scenario.experiments.throughput",
    "udp-loss": "netlab.scenario.experiments.udp_loss",
    "link": "netlab.scenario.experiments.link",
    "bottleneck": "netlab.scenario.experiments.bottleneck",
}
EXPERIMENT_NAMES = tuple(EXPERIMENT_MODULES)


def load_experiment(name: str) -> Experiment:
    """Return the experiment called ``name``.

    Raises:
        KeyError: no experiment has that name (the schema reports it).
    """
    module = importlib.import_module(EXPERIMENT_MODULES[name])
    experiment: Experiment = module.EXPERIMENT
    return experiment
