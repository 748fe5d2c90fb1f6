"""Fixtures for the command-service tests (helpers live in :mod:`netlab.testing`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp directory with a short path, so UNIX socket paths fit in 107 bytes."""
    directory = Path(tempfile.mkdtemp(prefix="nl-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
