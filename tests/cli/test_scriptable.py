"""Scriptable: run --tag, results list, result files that honour the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from netlab.service.launch import child_environment, netlab_argv
from netlab.testing import run_netlab

TINY = "experiment: framing\nparameters:\n  transport: unix\n  framing: length\n  messages: 3\n"


def test_a_tagged_run_is_listed_with_its_tag_and_the_umask_is_honoured(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY)
    out = tmp_path / "out"
    done = subprocess.run(netlab_argv("run", str(scenario), "--out", str(out), "--tag", "first try"),
                          capture_output=True, timeout=120, env=child_environment(None),
                          preexec_fn=lambda: os.umask(0o027))
    assert done.returncode == 0, done.stderr
    saved = sorted(out.iterdir())
    assert [path.suffix for path in saved] == [".json", ".md"]
    for path in saved:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path  # 0666 & ~027, not mkstemp's 0600
    assert json.loads(saved[0].read_text())["tag"] == "first try"
    (out / "notes.json").write_text("{}")
    result = run_netlab("results", "list", str(out), "--format", "json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [entry["file"] for entry in entries] == [str(saved[0]), str(out / "notes.json")]
    first = entries[0]
    assert (first["experiment"], first["tag"], first["cells"], first["failed"]) == ("framing", "first try", 1, 0)
    assert "not a netlab result file" in entries[1]["problem"]
    table = run_netlab("results", "list", str(out), "--wide").stdout.decode()
    assert saved[0].name in table and "first try" in table and "notes.json" in table


def test_results_list_of_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    result = run_netlab("results", "list", str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert result.stderr.decode() == (f"netlab: cannot list {tmp_path / 'nothing'}: No such file or directory; give "
                                      "the directory 'netlab run --out' wrote to (default results/)\n")
