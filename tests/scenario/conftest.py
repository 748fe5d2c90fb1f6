"""Fixtures for the scenario tests: writing scenario files, running experiments directly, no matplotlib."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netlab.scenario.experiments.base import Experiment, RunContext


@pytest.fixture
def write_scenario(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write YAML text to tmp_path/<name> and return its path."""

    def write(text: str, name: str = "s.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def run_cell(tmp_path: Path) -> Callable[..., list[Any]]:
    """``run_cell(experiment, seed=1, **parameters)``: run one cell with the experiment's defaults plus changes."""

    def run(experiment: Experiment, seed: int = 1, bound: float = 30.0, **changes: Any) -> list[Any]:
        parameters = {parameter.name: parameter.default for parameter in experiment.parameters}
        parameters.update(changes)
        context = RunContext(seed, time.monotonic() + bound, threading.Event(), str(tmp_path))
        return list(experiment.run(parameters, context))

    return run


@pytest.fixture
def without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing matplotlib fails for the test, as where it is not installed."""
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
