"""Discoverable: run --list/--describe, did-you-mean, completion and the scenario JSON Schema."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from netlab.inspect.walkthroughs import WALKTHROUGHS
from netlab.scenario.experiments import EXPERIMENT_NAMES
from netlab.service.launch import child_environment, netlab_argv
from netlab.testing import run_netlab

SCHEMA_PATH = Path("scenarios/netlab-scenario.schema.json")
SCHEMA_LINE = "# yaml-language-server: $schema=netlab-scenario.schema.json"


def test_run_list_names_every_experiment_and_scenario() -> None:
    result = subprocess.run(netlab_argv("run", "--list"), capture_output=True, timeout=60,
                            env=child_environment(None))  # here, where scenarios/ is
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    for name in EXPERIMENT_NAMES:
        assert any(line.split()[:1] == [name] for line in lines), name
    for path in glob.glob("scenarios/*.yaml"):
        assert any(line.strip().startswith(path) for line in lines), path
    elsewhere = run_netlab("run", "--list").stdout.decode()  # an empty directory: the experiments, and says so
    assert "no scenario files in scenarios/" in elsewhere and "udp-loss" in elsewhere


def test_walkthrough_list_names_each_walkthrough_apart_from_its_summary_in_one_column() -> None:
    result = run_netlab("walkthrough", "--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == list(WALKTHROUGHS)  # no name runs into its summary
    starts = {len(line) - len(line[len(line.split()[0]):].lstrip()) for line in lines}
    assert len(starts) == 1, lines


def test_run_describe_shows_types_defaults_and_units() -> None:
    result = run_netlab("run", "--describe", "udp-loss", "--wide")
    text = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert text.startswith("udp-loss: ")
    row = next(line for line in text.splitlines() if line.startswith("loss "))
    assert row.split()[:4] == ["loss", "float", "0.0", "%"] and "(or with a unit, e.g. 5%)" in row


@pytest.mark.parametrize(("argv", "wanted"), [
    (["run", "--describe", "backlogg"], "no experiment 'backlogg' (did you mean 'backlog'?)"),
    (["walkthrough", "tcp-handshak"], "(did you mean 'tcp-handshake'?)"),
    (["help", "resuls"], "(did you mean 'results'?)"),
])
def test_a_mistyped_name_gets_the_nearest(argv: list[str], wanted: str) -> None:
    result = run_netlab(*argv)
    assert result.returncode == 2 and wanted in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


@pytest.mark.parametrize(("text", "wanted"), [
    ("experiment: backlogg\n", "got \"backlogg\" (did you mean 'backlog'?)"),
    ("experiment: backlog\nparameters:\n  backlg: 3\n", "unknown parameter of experiment backlog "
                                                      "(did you mean 'backlog'?)"),
    ("experiment: backlog\nrepet: 2\n", "repet: unknown key (did you mean 'repeat'?)"),
])
def test_a_mistyped_scenario_key_gets_the_nearest(tmp_path: Path, text: str, wanted: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    result = run_netlab("run", "--check", str(path))
    assert result.returncode != 0 and wanted in result.stderr.decode(), result.stderr


def _complete(script: str, line: str, shell: str = "bash") -> list[str]:
    program = (f'{script}\nCOMP_WORDS=({line}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); '
               '_netlab; printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run([shell, "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split()


def test_bash_completion_comes_from_the_parser() -> None:
    result = run_netlab("completion", "bash")
    assert result.returncode == 0
    script = result.stdout.decode()
    assert _complete(script, "netlab res") == ["results"]
    assert _complete(script, "netlab results s") == ["show"]
    assert _complete(script, "netlab serve --transport u") == ["unix", "unix-seqpacket", "udp", "udp6"]
    assert _complete(script, "netlab walkthrough st") == ["sticky-packets"]
    assert _complete(script, "netlab run --des") == ["--describe"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_loads() -> None:
    script = run_netlab("completion", "zsh").stdout.decode()
    done = subprocess.run(["zsh", "-c", f"{script}\ntype _netlab"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_the_committed_schema_is_what_netlab_schema_prints() -> None:
    result = run_netlab("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(SCHEMA_PATH.read_text()), \
        "scenarios/netlab-scenario.schema.json is stale: netlab schema > scenarios/netlab-scenario.schema.json"


def test_every_committed_scenario_names_the_schema_and_passes_it() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    for path in glob.glob("scenarios/*.yaml"):
        text = Path(path).read_text()
        assert text.startswith(f"{SCHEMA_LINE}\n"), f"{path}: make its first line {SCHEMA_LINE!r} (editor checks)"
        assert not list(validator.iter_errors(yaml.safe_load(text))), path
    wrong = {"experiment": "udp-loss", "matrix": {"loss": ["5%", "lots"]}, "paramters": {}}
    assert len(list(validator.iter_errors(wrong))) == 2
