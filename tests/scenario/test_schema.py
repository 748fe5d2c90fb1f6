"""Scenario validation: every kind of mistake is one line, exit code 2, and nothing runs or is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.cli.main import main
from netlab.errors import ScenarioError
from netlab.scenario.schema import load_scenario

VALID = """\
experiment: backlog
seed: 1
matrix:
  transport: [tcp4, unix]
  backlog: [0, 1]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("experiment: backlog\nmatrix:\n  backlog: [0, 1, three]\n",
         'matrix.backlog[2]: expected an integer >= 0 and <= 4096 or null, got "three"'),
        ("experiment: backlog\nbogus: 1\n", "bogus: unknown key; allowed: experiment, name"),
        ("experiment: backlog\nparameters:\n  bakclog: 3\n",
         "parameters.bakclog: unknown parameter of experiment backlog (did you mean 'backlog'?); allowed: transport, backlog"),
        ("experiment: backlog\nmatrix:\n  transport: [tcp4, carrier-pigeon]\n",
         'matrix.transport[1]: expected one of tcp4, tcp6, unix, unix-seqpacket, udp, got "carrier-pigeon"'),
        ("experiment: backlog\nrepeat: 0\n", "repeat: expected an integer >= 1 and <= 1000, got 0"),
        ("experiment: backlog\ntimeout: -1\n", "timeout: expected a number of seconds > 0 (or e.g. 90s, 2m), got -1"),
        ("experiment: backlog\nmatrix:\n  backlog: []\n", "matrix.backlog: expected a non-empty list of values"),
        ("experiment: backlog\nmatrix:\n  backlog: 3\n", "matrix.backlog: expected a non-empty list of values, got 3"),
        ("experiment: backlog\nparameters:\n  backlog: 1\nmatrix:\n  backlog: [1, 2]\n",
         "matrix.backlog: also set in parameters"),
        ("experiment: nope\n", 'experiment: expected one of backlog, framing'),
        ("seed: 1\n", "experiment: missing"),
        ("- just\n- a list\n", "(top): expected a mapping"),
        ("experiment: backlog\nparameters:\n  connect_timeout: true\n",
         "parameters.connect_timeout: expected a number of seconds >= 0.05 and <= 10 (or with a unit, e.g. 500ms), got true"),
        ("experiment: backlog\ninclude:\n  - {transport: tcp4, backlog: null}\n",
         "include[0]: backlog must be set for tcp4"),
        ("experiment: framing\ninclude:\n  - {transport: unix-seqpacket, delivery: sliced}\n",
         "include[0]: sliced delivery is for byte streams"),
        ("experiment: backlog\nmatrix:\n  backlog: [1, 1]\n", "matrix.backlog: lists a value twice"),
    ],
)
def test_schema_errors_name_file_key_and_what_is_allowed(write_scenario, text: str, expected: str) -> None:
    path = write_scenario(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_yaml_syntax_error_gives_the_line(write_scenario) -> None:
    path = write_scenario("experiment: backlog\nmatrix:\n  backlog: [0, 1\n  transport: tcp4\n")
    with pytest.raises(ScenarioError, match=r"line \d+, column \d+: YAML syntax error"):
        load_scenario(str(path))


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(str(tmp_path / "absent.yaml"))


def test_cli_exits_2_and_writes_nothing_on_a_schema_error(write_scenario, tmp_path: Path, capsys) -> None:
    path = write_scenario("experiment: backlog\nmatrix:\n  backlog: [0, -1]\n")
    out = tmp_path / "results"
    assert main(["run", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "matrix.backlog[1]" in error
    assert not out.exists()


def test_check_prints_the_expanded_matrix_and_runs_nothing(write_scenario, tmp_path: Path, capsys) -> None:
    path = write_scenario(VALID)
    out = tmp_path / "results"
    assert main(["run", str(path), "--check", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "valid. experiment backlog, 4 runs" in printed
    assert printed.count("tcp4") == 2 and printed.count("unix") == 2
    assert not out.exists()


def test_the_shipped_scenarios_are_valid() -> None:
    shipped = sorted(Path(__file__).resolve().parents[2].joinpath("scenarios").glob("*.yaml"))
    assert len(shipped) >= 6
    for path in shipped:
        load_scenario(str(path))
