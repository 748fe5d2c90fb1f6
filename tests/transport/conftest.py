"""Fixtures for the transport tests (helpers and the conformance suite live in :mod:`netlab.testing`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A private temporary directory with a short path (sun_path holds only 107 bytes)."""
    directory = tempfile.mkdtemp(prefix="nl-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
