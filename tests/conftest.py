"""Fixtures for every test folder: docs/protocol.md, read once (helpers live in :mod:`netlab.testing`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netlab.testing.protocol import parse_protocol_doc

PROTOCOL_DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


@pytest.fixture(scope="session")
def protocol_doc_text() -> str:
    """The text of docs/protocol.md."""
    return PROTOCOL_DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def protocol_doc_examples(protocol_doc_text: str) -> dict[str, list[tuple[str, Any]]]:
    """The example exchanges of docs/protocol.md by name."""
    return parse_protocol_doc(protocol_doc_text)
