"""Without ss (iproute2) the backlog table's Recv-Q/Send-Q are empty, and its note says why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from netlab.testing import run_netlab

SCENARIO = "experiment: backlog\nparameters:\n  transport: unix\n  backlog: 1\n  extra_clients: 1\n"


def _run(tmp_path: Path, path_variable: str) -> dict:
    scenario = tmp_path / "b.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / f"out-{len(path_variable)}"
    result = run_netlab("run", str(scenario), "--out", str(out), "--format", "json",
                        environment={"PATH": path_variable})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["runs"][0]["rows"][0]


def test_without_ss_the_note_says_the_queue_columns_need_iproute2(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    row = _run(tmp_path, str(empty))
    assert row["kernel_backlog"] is None and row["kernel_queued"] is None
    assert "Recv-Q/Send-Q empty: ss (iproute2) is not installed" in row["note"]


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed here")
def test_with_ss_the_send_q_is_the_backlog(tmp_path: Path) -> None:
    row = _run(tmp_path, str(Path(shutil.which("ss") or "").parent))
    assert row["kernel_backlog"] == 1 and "Recv-Q/Send-Q empty" not in row["note"]
