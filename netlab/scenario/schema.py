"""Load a scenario file and validate it completely before anything runs.

How this works: the file is read with ``yaml.safe_load``; then a hand-written
validator walks the document. The top-level keys are fixed (see
:data:`TOP_LEVEL_KEYS`); the keys allowed in ``parameters:``, ``matrix:`` and
``include:`` are the parameters the named experiment declares, each checked
against its :class:`~netlab.scenario.experiments.base.Parameter` (type, bounds,
choices). The first problem found raises :class:`~netlab.errors.ScenarioError`
with one line naming the file, the key path and what is allowed::

    scenarios/x.yaml: matrix.backlog[2]: expected an integer >= 0, got "three"
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any

import yaml

from netlab.errors import ScenarioError
from netlab.lab.spec import parse_network
from netlab.lab.spec import show_value as _show
from netlab.scenario.experiments import EXPERIMENT_NAMES, load_experiment
from netlab.scenario.experiments.base import Experiment
from netlab.scenario.matrix import expand_cells
from netlab.scenario.model import DEFAULT_REPEAT, DEFAULT_RUN_TIMEOUT, DEFAULT_SEED, Scenario
from netlab.suggest import did_you_mean
from netlab.units import parse_duration

MAX_RUNS = 10_000
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: Every key a scenario file may have at the top, with what it holds.
TOP_LEVEL_KEYS: dict[str, str] = {
    "experiment": f"which experiment to run: one of {', '.join(EXPERIMENT_NAMES)}",
    "name": "the scenario's name in result file names (default: the file name)",
    "description": "a sentence or two saying what the scenario shows",
    "parameters": "fixed experiment parameters: a mapping of name -> value",
    "matrix": "parameters to vary: a mapping of name -> list of values",
    "include": "extra cells after the matrix: a list of mappings of name -> value",
    "repeat": "how many times to run each cell (median and min/max are reported)",
    "seed": "seed for every random choice (impairments, slicing), for reproducible runs",
    "timeout": "seconds one run may take before it is reported as failed",
    "network": "loopback (default) or namespaces: hosts in network namespaces joined by a shaped, impaired link",
}


def load_scenario(path: str) -> Scenario:
    """Read and validate a scenario file.

    Args:
        path: the YAML file.
    Returns:
        The validated :class:`Scenario`.
    Raises:
        ScenarioError: missing or unreadable file, YAML syntax error, or any
            schema problem; one line naming the file and the key path.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file: give the path of a scenario, e.g. scenarios/backlog.yaml") from None
    except IsADirectoryError:
        raise ScenarioError(f"{path}: is a directory: give the path of a scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the file: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: {_describe_yaml_error(exc)}") from None
    return validate_scenario(document, path)


def validate_scenario(document: object, path: str) -> Scenario:
    """Validate a loaded YAML document; see :func:`load_scenario`.

    Raises:
        ScenarioError: the first problem found.
    """
    if not isinstance(document, dict):
        allowed = ", ".join(TOP_LEVEL_KEYS)
        raise _error(path, "(top)", f"expected a mapping with the keys {allowed}, got {_show(document)}")
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            raise _error(path, str(key), f"unknown key{did_you_mean(key, TOP_LEVEL_KEYS)}; "
                                         f"allowed: {', '.join(TOP_LEVEL_KEYS)}")
    if "experiment" not in document:
        raise _error(path, "experiment", f"missing; name one of {', '.join(EXPERIMENT_NAMES)}")
    experiment_name = document["experiment"]
    if experiment_name not in EXPERIMENT_NAMES:
        raise _error(path, "experiment", f"expected one of {', '.join(EXPERIMENT_NAMES)}, got {_show(experiment_name)}"
                                         f"{did_you_mean(experiment_name, EXPERIMENT_NAMES)}")
    experiment = load_experiment(experiment_name)

    default_name = os.path.splitext(os.path.basename(path))[0]
    name = document.get("name", default_name)
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise _error(path, "name", f"expected letters, digits, '.', '_' or '-' (at most 64), got {_show(name)}")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise _error(path, "description", f"expected a string, got {_show(description)}")
    repeat = _integer(path, "repeat", document.get("repeat", DEFAULT_REPEAT), minimum=1, maximum=1000)
    seed = _integer(path, "seed", document.get("seed", DEFAULT_SEED), minimum=0, maximum=2**63 - 1)
    timeout = document.get("timeout", DEFAULT_RUN_TIMEOUT)
    if isinstance(timeout, str):
        try:
            timeout = parse_duration(timeout)
        except ValueError:
            pass
    if not _is_number(timeout) or not timeout > 0:
        raise _error(path, "timeout", f"expected a number of seconds > 0 (or e.g. 90s, 2m), got {_show(timeout)}")

    network = parse_network(document.get("network"), path)

    parameters = _mapping(path, "parameters", document.get("parameters", {}))
    parameters = {key: _check_value(path, f"parameters.{key}", experiment, key, value)
                  for key, value in parameters.items()}

    matrix = dict(_mapping(path, "matrix", document.get("matrix", {})))
    for key, values in matrix.items():
        if key in parameters:
            raise _error(path, f"matrix.{key}", "also set in parameters: set it in one place only")
        if not isinstance(values, list) or not values:
            raise _error(path, f"matrix.{key}", f"expected a non-empty list of values, got {_show(values)}")
        values = matrix[key] = [_check_value(path, f"matrix.{key}[{index}]", experiment, key, value)
                                for index, value in enumerate(values)]
        if len(set(map(_freeze, values))) != len(values):
            raise _error(path, f"matrix.{key}", "lists a value twice: each value once")

    include = document.get("include", [])
    if not isinstance(include, list):
        raise _error(path, "include", f"expected a list of mappings, got {_show(include)}")
    include = list(include)
    for index, cell in enumerate(include):
        where = f"include[{index}]"
        cell = _mapping(path, where, cell)
        if not cell:
            raise _error(path, where, "expected at least one parameter")
        include[index] = {key: _check_value(path, f"{where}.{key}", experiment, key, value)
                          for key, value in cell.items()}

    runs = math.prod(len(values) for values in matrix.values()) + len(include)
    if runs * repeat > MAX_RUNS:
        raise _error(path, "matrix", f"expands to {runs * repeat} runs; at most {MAX_RUNS}: shrink it or lower repeat")

    scenario = Scenario(
        path=path,
        name=name,
        experiment=experiment,
        description=description.strip(),
        parameters=dict(parameters),
        matrix={key: list(values) for key, values in matrix.items()},
        include=[dict(cell) for cell in include],
        repeat=repeat,
        seed=seed,
        timeout=float(timeout),
        network=network,
    )
    if experiment.check_cell is not None:

        for cell in expand_cells(scenario):
            problem = experiment.check_cell(cell.parameters)
            if problem:
                raise _error(path, cell.where, problem)
    return scenario


def override_network(scenario: Scenario, text: str) -> Scenario:
    """The scenario with its ``network:`` replaced by ``text`` (``netlab run FILE --network VALUE``).

    ``text`` is what the ``network:`` key may hold, in YAML: ``loopback``,
    ``namespaces``, or a flow mapping such as
    ``{link: {rate: 20mbit, delay: 20ms, loss: 1%}}``. So one file runs on
    loopback and over namespaces without a copy; the result's name gains
    ``-netns`` (or ``-loopback``) so the two are told apart, and records the
    override.

    Raises:
        ScenarioError: the value is not valid YAML or not a valid network.
    """
    where = "--network"
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: {_describe_yaml_error(exc)}") from None
    network = parse_network(value, scenario.path, where)
    suffix = "-netns" if network.namespaced else "-loopback"
    return dataclasses.replace(scenario, network=network, name=scenario.name[:64 - len(suffix)] + suffix,
                               network_override=text)


def _check_value(path: str, where: str, experiment: Experiment, key: object, value: object) -> Any:
    """The value in the parameter's unit (``5%`` -> 5.0, ``500ms`` -> 0.5), or a ScenarioError."""
    parameter = experiment.parameter(key) if isinstance(key, str) else None
    if parameter is None:
        names = [p.name for p in experiment.parameters]
        raise _error(path, where, f"unknown parameter of experiment {experiment.name}{did_you_mean(key, names)}; "
                                  f"allowed: {', '.join(names)}")
    value = parameter.convert(value)
    if not parameter.accepts(value):
        raise _error(path, where, f"expected {parameter.describe()}, got {_show(value)}")
    return value


def _mapping(path: str, where: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _error(path, where, f"expected a mapping of parameter -> value, got {_show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise _error(path, f"{where}.{key}", "parameter names must be strings")
    return value


def _integer(path: str, where: str, value: object, *, minimum: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise _error(path, where, f"expected an integer >= {minimum} and <= {maximum}, got {_show(value)}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _freeze(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {problem}"
    return f"YAML syntax error: {problem}"


def _error(path: str, where: str, problem: str) -> ScenarioError:
    return ScenarioError(f"{path}: {where}: {problem}")
