"""Fixtures for every test folder: docs/protocol.md, read once; no user config (helpers live in :mod:`netlab.testing`)."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(scope="session", autouse=True)
def no_user_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """netlab run in this process reads no ~/.config/netlab/config.toml or $NETLAB_CONFIG of the developer's
    (children started through netlab.service.launch never do)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))
        patch.delenv("NETLAB_CONFIG", raising=False)
        yield
