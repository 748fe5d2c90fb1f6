"""What the tests of ``netlab run --target`` share: token files, and a scenario run as JSON through the CLI.

Imported by name (``from netlab.testing.targets import ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from netlab.testing.servers import run_netlab

RUN_TIMEOUT = 120.0


def token_files(directory: Path) -> tuple[Path, Path]:
    """Two fresh tokens made by ``netlab token new`` in ``directory``: (the server's, a wrong one)."""
    right, wrong = directory / "right", directory / "wrong"
    for path in (right, wrong):
        made = run_netlab("token", "new", str(path))
        if made.returncode != 0:
            raise RuntimeError(f"netlab token new {path} failed: {made.stderr.decode(errors='replace')}")
    return right, wrong


class ScenarioRun(NamedTuple):
    """What ``netlab run`` gave: its exit code, its decoded output, and where its results went."""

    returncode: int
    stdout: str
    stderr: str
    out: Path


def run_scenario_text(directory: Path, text: str, *options: str) -> ScenarioRun:
    """Write ``text`` to DIRECTORY/scenario.yaml and ``netlab run`` it as JSON into DIRECTORY/results
    (from the calling thread's network namespace: a child inherits it)."""
    scenario = directory / "scenario.yaml"
    scenario.write_text(text)
    out = directory / "results"
    completed = run_netlab("run", str(scenario), "--format", "json", "--out", str(out), *options,
                           timeout=RUN_TIMEOUT)
    return ScenarioRun(completed.returncode, completed.stdout.decode(), completed.stderr.decode(), out)
