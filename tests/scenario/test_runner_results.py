"""The runner's time bound and skips, result files (atomic, complete), and results show/compare."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from netlab.cli.main import main
from netlab.errors import UsageError
from netlab.scenario import results as results_module
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext, RunSkipped
from netlab.scenario.render import render, render_markdown
from netlab.scenario.results import build_document, load_document, save_document
from netlab.scenario.runner import run_scenario
from netlab.scenario.schema import Scenario


@dataclass
class ToyRow:
    mode: str
    value: float
    note: str = ""


def _toy_run(parameters: Mapping[str, Any], context: RunContext) -> list[ToyRow]:
    if parameters["mode"] == "hang":
        while True:  # bounded by the runner: check() raises once the deadline passes
            context.check()
            time.sleep(0.01)
    if parameters["mode"] == "skip":
        raise RunSkipped("not on this machine")
    return [ToyRow(parameters["mode"], float(parameters["value"]) + context.random.random())]


TOY = Experiment(
    name="toy",
    summary="a toy",
    parameters=(Parameter("mode", str, "ok", choices=("ok", "hang", "skip")), Parameter("value", int, 1)),
    row_type=ToyRow,
    run=_toy_run,
)


def _scenario(matrix: dict[str, list[Any]], repeat: int = 1, timeout: float = 5.0) -> Scenario:
    return Scenario(path="toy.yaml", name="toy", experiment=TOY, matrix=matrix, repeat=repeat, timeout=timeout)


def test_a_run_past_its_bound_fails_and_the_scenario_goes_on() -> None:
    run = run_scenario(_scenario({"mode": ["hang", "skip", "ok"]}, timeout=0.3))
    statuses = [(outcome.status, outcome.message) for outcome in run.outcomes]
    assert statuses[0][0] == "failed" and "run timeout of 0.3 s" in statuses[0][1]
    assert statuses[1] == ("skipped", "not on this machine")
    assert statuses[2][0] == "ok"
    assert run.failed == 1 and not run.interrupted


def test_repeats_are_summarized_as_median_min_max() -> None:
    document = build_document(run_scenario(_scenario({"value": [10]}, repeat=3)), {"kernel": "k"})
    value = document["summary"][0]["rows"][0]["value"]
    samples = sorted(run["rows"][0]["value"] for run in document["runs"])
    assert value == {"median": samples[1], "min": samples[0], "max": samples[2], "n": 3}
    assert document["summary"][0]["rows"][0]["mode"] == "ok"


def _environment() -> dict[str, Any]:
    return {"kernel": "Linux test", "machine": "x86_64", "python": "CPython 3", "netlab": "0", "cpu_count": 2,
            "sysctls": {"net.core.somaxconn": "4096"}}


def _saved(tmp_path: Path, value: int = 1, name: str = "toy") -> Path:
    scenario = replace(_scenario({"mode": ["ok", "skip"]}), name=name, parameters={"value": value})
    document = build_document(run_scenario(scenario), _environment())
    return Path(save_document(document, str(tmp_path), render_markdown))


def test_save_writes_json_and_markdown_and_nothing_else(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [path.name, path.with_suffix(".md").name]
    document = load_document(str(path))
    assert document["scenario"]["name"] == "toy" and document["completed_runs"] == 2
    assert "skipped: not on this machine" in render(document, "table")
    assert "| mode" in path.with_suffix(".md").read_text()
    assert _saved(tmp_path) != path  # a second result in the same second gets its own name


def test_a_failure_mid_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(source: str, destination: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module.os, "replace", broken_replace)
    with pytest.raises(UsageError, match="No space left on device"):
        _saved(tmp_path)
    assert os.listdir(tmp_path) == []


def test_markdown_failure_removes_the_json_too(tmp_path: Path) -> None:
    document = build_document(run_scenario(_scenario({"mode": ["ok"]})), _environment())

    def failing_markdown(_: dict[str, Any]) -> str:
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        save_document(document, str(tmp_path), failing_markdown)
    assert os.listdir(tmp_path) == []


def test_results_show_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _saved(tmp_path / "a")
    second = _saved(tmp_path / "b", value=100)
    assert main(["results", "show", str(first), "--format", "csv"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == "mode,value,note" and shown[1].startswith("ok,")
    assert main(["results", "compare", str(first), str(second), "--format", "json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["entries"] == []  # "value" is a parameter: what the row is, not what it measured
    assert compared["summary"].startswith("1 rows matched")


def test_results_show_rejects_a_non_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text("{}")
    assert main(["results", "show", str(bogus)]) == 2
    assert "not a netlab result file" in capsys.readouterr().err


def test_results_show_rejects_a_damaged_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damaged = tmp_path / "x.json"
    damaged.write_text(json.dumps({"format": "netlab-result/1", "columns": []}))
    assert main(["results", "show", str(damaged)]) == 2
    assert "damaged" in capsys.readouterr().err


def test_run_refuses_an_unwritable_out_before_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def must_not_run(*_: object) -> None:
        raise AssertionError("the scenario ran although --out cannot be written")

    monkeypatch.setattr("netlab.cli.run.run_scenario", must_not_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    scenario = Path(__file__).parents[2] / "scenarios" / "backlog.yaml"
    assert main(["run", str(scenario), "--out", str(blocker / "results")]) == 2
    assert "cannot create the results directory" in capsys.readouterr().err
