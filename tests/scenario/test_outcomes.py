"""What a run's outcome means: a measured system that did not finish is a result (exit 0), an
experiment that broke is a failure (exit 1); SIGTERM keeps partial results like Ctrl-C; cells that
differ only in the compared parameter share their seed; repeats are labelled."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netlab.cli.main import main
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext, RunIncomplete, did_not_complete
from netlab.scenario.matrix import plan_runs
from netlab.scenario.render import render, render_markdown
from netlab.scenario.results import build_document
from netlab.scenario.runner import run_scenario
from netlab.scenario.schema import Scenario, load_scenario
from netlab.testing import start_child

REPOSITORY = Path(__file__).parents[2]


@dataclass
class CountRow:
    loss: float
    floor: float
    done: int
    note: str = ""


def _count_run(parameters: Mapping[str, Any], context: RunContext) -> list[CountRow]:
    row = CountRow(parameters["loss"], parameters["floor"], 0 if parameters["loss"] > 50 else 3)
    if row.done < 3:
        row.note = did_not_complete(row.done, 3, 1.0, "the loss ate the handshake")
        raise RunIncomplete(row.note, [row])
    if parameters["loss"] == 13:
        raise RuntimeError("the experiment itself broke")
    return [row]


COUNTING = Experiment(
    name="counting", summary="a toy with an incomplete cell",
    parameters=(Parameter("loss", float, 0.0), Parameter("floor", float, 1.0, shares_seed=True)),
    row_type=CountRow, run=_count_run,
)


def _document(matrix: dict[str, list[Any]], repeat: int = 1) -> dict[str, Any]:
    scenario = Scenario(path="c.yaml", name="c", experiment=COUNTING, matrix=matrix, repeat=repeat, timeout=5.0)
    return build_document(run_scenario(scenario), {"kernel": "k", "machine": "m", "python": "p", "netlab": "0",
                                                   "cpu_count": 1, "sysctls": {}})


def test_an_incomplete_cell_keeps_its_row_and_is_counted_under_the_table() -> None:
    document = _document({"loss": [0, 90]})
    table = render(document, "table")
    assert "did not complete: 0/3 in 1 s: the loss ate the handshake" in table
    assert "2 cells, 1 did not complete within their bound (a measured result)." in table
    assert "failed" not in table
    assert "1 did not complete" in render_markdown(document)


def test_a_broken_experiment_is_counted_as_failed() -> None:
    table = render(_document({"loss": [0, 13]}), "table")
    assert "internal error RuntimeError: the experiment itself broke" in table
    assert "1 failed (the experiment broke)" in table


def test_cells_differing_only_in_a_shared_seed_parameter_share_their_seed() -> None:
    scenario = Scenario(path="c.yaml", name="c", experiment=COUNTING, matrix={"loss": [1, 5], "floor": [1, 0.02]})
    seeds = {(run.cell.parameters["loss"], run.cell.parameters["floor"]): run.seed for run in plan_runs(scenario)}
    assert seeds[(1, 1)] == seeds[(1, 0.02)] and seeds[(5, 1)] == seeds[(5, 0.02)]
    assert seeds[(1, 1)] != seeds[(5, 1)]
    table = render(_document({"loss": [1], "floor": [1, 0.02]}), "table")
    assert "Cells that differ only in floor share their seed" in table


def test_udp_loss_rto_floors_at_one_loss_rate_share_their_seed() -> None:
    scenario = load_scenario(str(REPOSITORY / "scenarios" / "udp-loss.yaml"))
    by_loss: dict[float, set[int]] = {}
    for run in plan_runs(scenario):
        by_loss.setdefault(run.cell.parameters["loss"], set()).add(run.seed)
    assert all(len(seeds) == 1 for seeds in by_loss.values()) and len(by_loss) > 1


def test_repeats_are_labelled_median_and_range() -> None:
    document = _document({"loss": [0]}, repeat=3)
    assert "Numbers are the median of 3 repeats, with the range (min-max)" in render(document, "table")
    assert "Numbers are the median of 3 repeats" in render_markdown(document)


def test_udp_loss_cell_that_cannot_complete_says_so_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "lossy.yaml"
    scenario.write_text("experiment: udp-loss\ntimeout: 4\nparameters: {commands: 5, loss: 90, rto_floor: 1}\n")
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "did not complete: 0/5 in" in captured.out
    assert "although the server was listening" in captured.out
    assert "is a netlab udp server listening" not in captured.out
    assert "1 cells, 1 did not complete within their bound" in captured.out
    assert "failed" not in captured.err


def test_run_help_documents_the_outcomes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "did not complete" in text and "the experiment itself broke" in text and "SIGTERM" in text


def test_readme_claims_only_what_completed_ran_exactly_once() -> None:
    readme = " ".join((REPOSITORY / "README.md").read_text().split())
    assert "each command that completed ran exactly once" in readme
    assert "every command runs exactly once" not in readme
    assert "that is a result: the row says \"did not complete" in readme and "`netlab run` exits 1" in readme


def test_sigterm_keeps_partial_results_like_sigint(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text("experiment: udp-loss\ntimeout: 60\nparameters: {payload: 0, rto_floor: 0.02}\n"
                        "include:\n  - {commands: 3}\n  - {commands: 100000}\n  - {commands: 4}\n")
    out = tmp_path / "out"
    with start_child(("run", str(scenario), "--out", str(out)), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE) as child:
        time.sleep(5.0)  # the defaults cell and the 3-command cell are done; the long one is running
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=60)
    assert child.process.returncode == 130, stderr
    assert b"interrupted after" in stderr and b"Traceback" not in stderr
    [saved] = out.glob("*.json")
    document = json.loads(saved.read_text())
    assert document["interrupted"] and document["total_runs"] == 4 and document["completed_runs"] == 2
    assert [run["status"] for run in document["runs"]] == ["ok", "ok"]


def _leaky_run(parameters: Mapping[str, Any], context: RunContext) -> list[CountRow]:
    import threading

    def server_thread() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    thread = threading.Thread(target=server_thread, name="netlab-service")
    thread.start()
    thread.join(5)
    return [CountRow(parameters["loss"], parameters["floor"], 3)]


def test_a_thread_that_dies_fails_its_run_in_one_line_without_a_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    leaky = Experiment(name="leaky", summary="a thread dies", parameters=COUNTING.parameters, row_type=CountRow,
                       run=_leaky_run)
    scenario = Scenario(path="l.yaml", name="l", experiment=leaky, timeout=5.0)
    document = build_document(run_scenario(scenario), {"kernel": "k", "machine": "m", "python": "p",
                                                       "netlab": "0", "cpu_count": 1, "sysctls": {}})
    table = render(document, "table")
    captured = capfd.readouterr()
    assert "Exception in thread" not in captured.err + captured.out and "Traceback" not in captured.err
    assert "thread netlab-service died of BrokenPipeError: [Errno 32] Broken pipe" in table
    assert "1 failed (the experiment broke)" in table


def test_framing_runs_print_no_thread_traceback(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(REPOSITORY / "scenarios" / "framing.yaml"), "--out", str(tmp_path)]) == 0
    captured = capfd.readouterr()
    assert "Exception in thread" not in captured.err and "Traceback" not in captured.err + captured.out
