"""``netlab results compare``: one experiment only, ratios on measured columns, a summary, --threshold."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from netlab.cli.main import main
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext
from netlab.scenario.render import render_markdown
from netlab.scenario.results import build_document, save_document
from netlab.scenario.runner import run_scenario
from netlab.scenario.schema import Scenario


@dataclass
class SpeedRow:
    size: int = field(metadata={"key": True})
    clients: int = 0
    latency_ms: float = field(default=0.0, metadata={"better": "lower", "heading": "latency ms"})
    rate: float = field(default=0.0, metadata={"better": "higher"})
    packets: int = 0


def _speed_run(parameters: Mapping[str, Any], context: RunContext) -> list[SpeedRow]:
    slow = parameters["slowdown"]
    return [SpeedRow(parameters["size"], parameters["clients"], 10.0 * slow, 100.0 / slow, 7)]


def _experiment(name: str) -> Experiment:
    return Experiment(
        name=name, summary="speeds",
        parameters=(Parameter("size", int, 1), Parameter("clients", int, 4), Parameter("slowdown", float, 1.0)),
        row_type=SpeedRow, run=_speed_run,
    )


def _saved(directory: Path, slowdown: float, experiment: str = "speed") -> str:
    scenario = Scenario(path="s.yaml", name=experiment, experiment=_experiment(experiment),
                        matrix={"size": [1, 2]}, parameters={"slowdown": slowdown})
    document = build_document(run_scenario(replace(scenario)), {"kernel": "k", "machine": "m", "python": "p",
                                                                "netlab": "0", "cpu_count": 1, "sysctls": {}})
    return save_document(document, str(directory), render_markdown)


def test_compare_refuses_two_different_experiments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _saved(tmp_path / "a", 1.0), _saved(tmp_path / "b", 1.0, experiment="other")
    assert main(["results", "compare", first, second]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == ("netlab: A is a speed result and B a other result: compare two results of the "
                                    "same experiment")


def test_ratios_only_on_measured_columns_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _saved(tmp_path / "a", 1.0), _saved(tmp_path / "b", 2.0)
    assert main(["results", "compare", first, second]) == 0
    out = capsys.readouterr().out
    assert "latency ms" in out and "rate" in out and "packets" in out
    assert " clients " not in out and " size " not in out  # parameter and key columns get no ratio
    assert "2.00x" in out and "0.50x" in out
    assert out.strip().splitlines()[-1] == ("2 rows matched; 6 measured values: 4 worse, 0 better, 0 changed "
                                            "(no better direction declared), 2 within it.")


def test_threshold_exits_1_when_a_measured_column_regressed(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    base, slower, same = _saved(tmp_path / "a", 1.0), _saved(tmp_path / "b", 1.3), _saved(tmp_path / "c", 1.0)
    assert main(["results", "compare", base, slower, "--threshold", "20"]) == 1
    err = capsys.readouterr().err
    assert "4 measured values regressed by more than 20%" in err
    assert main(["results", "compare", base, slower, "--threshold", "50"]) == 0
    assert main(["results", "compare", base, same, "--threshold", "0"]) == 0
    assert main(["results", "compare", slower, base, "--threshold", "5"]) == 0  # faster is not a regression
    capsys.readouterr()
    assert main(["results", "compare", base, slower, "--format", "json", "--threshold", "20"]) == 1
    assert {entry["verdict"] for entry in json.loads(capsys.readouterr().out)["entries"]} == {"worse", "same"}
