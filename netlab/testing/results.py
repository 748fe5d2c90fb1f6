"""Committed result documents for tests that read them (charts, reports): list them, find one experiment's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netlab.scenario.results import load_document


def result_files(directory: Path) -> list[Path]:
    """The result documents (``*.json``) in ``directory``, oldest name first."""
    return sorted(directory.glob("*.json"))


def committed(files: list[Path], experiment: str) -> tuple[Path, dict[str, Any]]:
    """The newest of ``files`` that is a result of ``experiment``, and its document; skip the test if none is."""
    for path in reversed(files):
        document = load_document(str(path))
        if document["experiment"]["name"] == experiment:
            return path, document
    pytest.skip(f"no committed result of {experiment} under {files[0].parent if files else 'results/'}")
