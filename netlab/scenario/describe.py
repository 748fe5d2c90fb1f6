"""What a user can ask before writing a scenario: the list, one experiment's parameters, the JSON Schema.

``netlab run --list`` prints :func:`list_lines`, ``netlab run --describe NAME``
prints :func:`describe_experiment`, and ``netlab schema`` prints
:func:`scenario_schema`: a JSON Schema generated from the experiments'
declared :class:`~netlab.scenario.experiments.base.Parameter` s, so an editor
with a YAML language server completes and checks scenario keys (the committed
scenarios name it in their first line).
"""

from __future__ import annotations

import glob
import os
from typing import Any

import yaml

from netlab.errors import UsageError
from netlab.scenario.experiments import EXPERIMENT_NAMES, load_experiment
from netlab.scenario.experiments.base import Parameter
from netlab.suggest import did_you_mean
from netlab.tables import TableOptions, show_table

#: Where ``run --list`` looks for scenario files, relative to the working directory.
SCENARIO_DIRECTORY = "scenarios"
#: The schema's file name as committed beside the scenarios.
_UNIT_PATTERNS = {
    "s": r"^\s*[0-9.]+\s*(us|ms|s|m|h)?\s*$",
    "bytes": r"^\s*[0-9.]+\s*([kKmMgG]i?[bB]?|[bB])?\s*$",
    "%": r"^\s*[0-9.]+\s*%?\s*$",
}


def list_lines(directory: str = SCENARIO_DIRECTORY) -> list[str]:
    """One line per experiment (name and summary), then one per scenario file in ``directory``."""
    lines = ["experiments (netlab run --describe NAME):"]
    lines += [f"  {name:12} {load_experiment(name).summary}" for name in EXPERIMENT_NAMES]
    paths = sorted(glob.glob(os.path.join(directory, "*.yaml")))
    lines.append(f"scenarios in {directory}/ (netlab run FILE):" if paths else f"no scenario files in {directory}/")
    for path in paths:
        lines.append(f"  {path:36} {_scenario_summary(path)}")
    return lines


def _scenario_summary(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as stream:
            document = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"(cannot read: {getattr(exc, 'strerror', None) or type(exc).__name__})"
    if not isinstance(document, dict):
        return "(not a scenario)"
    description = " ".join(str(document.get("description") or "").split())
    first = description.split(". ")[0].rstrip(".")
    return f"{document.get('experiment', '?')}: {first}" if first else str(document.get("experiment", "?"))


def find_experiment(name: str) -> str:
    """``name`` when it is an experiment; else a UsageError with the nearest name."""
    if name not in EXPERIMENT_NAMES:
        raise UsageError(f"no experiment {name!r}{did_you_mean(name, EXPERIMENT_NAMES)}: "
                         f"one of {', '.join(EXPERIMENT_NAMES)}")
    return name


def describe_experiment(name: str, options: TableOptions | None = None) -> str:
    """An experiment's summary and a table of its parameters: type, default, unit, what is allowed, meaning."""
    experiment = load_experiment(find_experiment(name))
    rows = [[parameter.name, parameter.kind.__name__, _default(parameter), parameter.unit or "-",
             parameter.describe(), parameter.help] for parameter in experiment.parameters]
    table = show_table(["parameter", "type", "default", "unit", "allowed", "meaning"], rows, options)
    return f"{experiment.name}: {experiment.summary}\nruns on: loopback or network: namespaces\n\n{table}"


def _default(parameter: Parameter) -> str:
    value = parameter.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if value != "" else '""'


def scenario_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of scenario files, one branch per experiment."""
    from netlab.scenario.schema import TOP_LEVEL_KEYS

    branches = []
    for name in EXPERIMENT_NAMES:
        experiment = load_experiment(name)
        values = {parameter.name: _parameter_schema(parameter) for parameter in experiment.parameters}
        lists = {key: {"type": "array", "minItems": 1, "items": value} for key, value in values.items()}
        branches.append({
            "if": {"properties": {"experiment": {"const": name}}},
            "then": {"properties": {
                "parameters": {"type": "object", "properties": values, "additionalProperties": False},
                "matrix": {"type": "object", "properties": lists, "additionalProperties": False},
                "include": {"type": "array", "items": {"type": "object", "properties": values,
                                                       "additionalProperties": False, "minProperties": 1}},
            }},
        })
    top: dict[str, dict[str, Any]] = {key: {"description": text} for key, text in TOP_LEVEL_KEYS.items()}
    top["experiment"]["enum"] = list(EXPERIMENT_NAMES)
    for key in ("name", "description"):
        top[key]["type"] = "string"
    top["repeat"].update(type="integer", minimum=1, maximum=1000)
    top["seed"].update(type="integer", minimum=0)
    top["timeout"]["anyOf"] = [{"type": "number", "exclusiveMinimum": 0},
                               {"type": "string", "pattern": _UNIT_PATTERNS["s"]}]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "netlab scenario",
        "description": "A netlab scenario file (netlab run FILE); generated by `netlab schema`.",
        "type": "object",
        "required": ["experiment"],
        "properties": top,
        "additionalProperties": False,
        "allOf": branches,
    }


def _parameter_schema(parameter: Parameter) -> dict[str, Any]:
    kind = {int: "integer", float: "number", str: "string", bool: "boolean"}[parameter.kind]
    number: dict[str, Any] = {"type": kind}
    if parameter.choices is not None:
        number["enum"] = list(parameter.choices)
    if parameter.minimum is not None:
        number["minimum"] = parameter.minimum
    if parameter.maximum is not None:
        number["maximum"] = parameter.maximum
    options = [number]
    if parameter.unit:
        options.append({"type": "string", "pattern": _UNIT_PATTERNS[parameter.unit]})
    if parameter.nullable:
        options.append({"type": "null"})
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    schema = {"description": parameter.help + (f" ({parameter.unit})" if parameter.unit else ""),
              "default": parameter.default, **schema}
    return schema
