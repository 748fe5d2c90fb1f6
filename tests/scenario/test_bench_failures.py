"""``netlab bench`` tells failures apart: a failed cell is a table row with its one-line reason, and exit 1;
a combination of options that measures nothing is a usage error."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from netlab.cli import bench
from netlab.cli.main import build_parser, main
from netlab.errors import TransportError

REPOSITORY = str(Path(__file__).parents[2])
QUICK = ["bench", "--rounds", "2", "--transport", "unix", "--framing", "length", "--model", "threaded",
         "--count", "50",
         "--bulk-size", "100000", "--placement", "thread"]


@pytest.mark.parametrize("extra, message", [
    (["--no-bulk", "--no-round-trips"], "leave nothing to measure"),
    (["--count", "0"], "expected an integer >= 1"),
    (["--count", "-3"], "expected an integer >= 1"),
])
def test_options_that_measure_nothing_are_usage_errors(extra: list[str], message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main([*QUICK, *extra])
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    assert code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == "" and "Traceback" not in captured.err



def test_filters_that_leave_no_cell_are_a_usage_error_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--transport", "unix", "--framing", "raw", "--no-round-trips", "--placement", "thread"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "the filters leave nothing to measure (unix: no bulk row for raw" in captured.err
    assert "widen --transport, --framing or --model" in captured.err

def test_a_failed_cell_is_a_row_with_its_reason_and_bench_exits_1(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def server_that_never_starts(*_: object, **__: object) -> None:
        raise TransportError("Traceback (most recent call last):\n  File ...\n"
                             "netlab serve did not start: ModuleNotFoundError: No module named 'netlab.cli'")

    monkeypatch.setattr(bench, "service_bulk", server_that_never_starts)
    assert main(QUICK) == 1
    captured = capsys.readouterr()
    reason = "failed: netlab serve did not start: ModuleNotFoundError: No module named 'netlab.cli'"
    lines = captured.out.splitlines()
    note = lines.index(next(line for line in lines if line.split()[-1:] == ["note"]))
    failed_row = lines[note + 2]  # under the headings and the rule: the row, with the reason or its footnote mark
    assert failed_row.split()[:3] == ["unix", "length", "threaded"]
    mark = failed_row.split()[-1]
    assert failed_row.endswith(reason) or f"{mark} {reason}" in captured.out
    assert "Traceback" not in captured.out
    assert "1 benchmark cells failed" in captured.err
    assert "echo rt/s" in captured.out  # the round trips that worked are still shown


def test_a_failed_cell_is_in_the_json_and_bench_exits_1(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*_: object, **__: object) -> None:
        raise TransportError("the benchmark connection broke")

    monkeypatch.setattr(bench, "service_round_trips", broken)
    assert main([*QUICK, "--json", "--no-bulk"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["failures"] == [{"table": "round trips", "cells": ["unix", "length", "threaded"],
                                     "reason": "the benchmark connection broke"}]


def test_bench_child_servers_are_the_installed_package_whatever_the_working_directory(tmp_path) -> None:
    """From the parent of a clone (a ``netlab/`` folder in the working directory) the child servers must
    still run this netlab, not import that folder."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    working = tmp_path / "clone-parent"
    decoy = working / "netlab"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text('raise SystemExit("the netlab folder in the working directory was imported")\n')
    # The parent runs as the console script does: a script outside the working directory, so sys.path[0] is
    # the script's folder and the working directory is not on sys.path (``python -P`` would do it from 3.11).
    script = tmp_path / "bin" / "netlab-script.py"
    script.parent.mkdir()
    script.write_text("import sys\nfrom netlab.cli.main import main\nsys.exit(main())\n")
    repository = str(Path(__file__).parents[2])
    environment = {**os.environ, "PYTHONPATH": repository}
    completed = subprocess.run(
        [sys.executable, str(script), "bench", "--transport", "unix", "--framing", "length", "--model",
         "threaded", "--count", "50", "--bulk-size", "100000", "--placement", "process"],
        cwd=working, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "working directory was imported" not in completed.stdout + completed.stderr
    assert "failed" not in completed.stdout and "Traceback" not in completed.stderr
    assert "threaded" in completed.stdout and "MB/s" in completed.stdout  # both tables measured


UDP = ["bench", "--rounds", "3", "--transport", "udp", "--framing", "length", "--model", "threaded", "--no-round-trips",
       "--bulk-size", "30000", "--datagram-size", "1200", "--udp-impair", "none", "--placement", "thread"]


def test_udp_bulk_rows_alternate_with_their_raw_blast_round_by_round(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []
    for name in ("baseline_udp_blast", "service_udp_bulk"):
        real = getattr(bench, name)

        def recorded(*arguments: object, _real: object = real, _name: str = name, **options: object) -> object:
            calls.append(_name)
            return _real(*arguments, **options)  # type: ignore[operator]

        monkeypatch.setattr(bench, name, recorded)
    assert main([*UDP, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    (row,) = document["udp_bulk"]
    assert calls == ["baseline_udp_blast", "service_udp_bulk", "service_udp_bulk", "baseline_udp_blast",
                     "baseline_udp_blast", "service_udp_bulk"]  # three rounds, every other one reversed
    assert row["rounds"] == 3 and row["ratio_low"] <= row["ratio"] <= row["ratio_high"]
    (target,) = [target for target in document["targets"] if target["target"].startswith("udp blob 1,200 B")]
    assert (target["median"], target["low"], target["high"]) == (row["ratio"], row["ratio_low"], row["ratio_high"])


def test_a_failed_raw_blast_fails_its_udp_rows_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    def blast_that_fails(*_: object, **__: object) -> None:
        raise TransportError("the raw udp blast failed: Connection refused; is the peer still running?")

    monkeypatch.setattr(bench, "baseline_udp_blast", blast_that_fails)
    assert main([*UDP, "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["udp_bulk"] == []
    assert document["failures"] == [{"table": "udp bulk", "cells": ["udp", "length", "threaded", "1,200", "none"],
                                     "reason": "the raw blast failed: the raw udp blast failed: Connection refused; "
                                               "is the peer still running?"}]


def test_quick_udp_bulk_lasts_long_enough_and_leaves_out_the_impaired_rows() -> None:
    parse = build_parser().parse_args
    quick = bench._udp_settings(parse(["bench", "--quick"]))
    assert [(setting.datagram_size, setting.impairment) for setting in quick] == [(1200, ""), (60_000, "")]
    assert [setting.payload_size for setting in quick] == [bench.QUICK_UDP_DATAGRAMS * 1164, bench.QUICK_UDP_MOST]
    full = bench._udp_settings(parse(["bench", "--datagram-size", "1200"]))
    assert [(setting.payload_size, setting.impairment) for setting in full] == [
        (64 * 2**20, ""), (64 * 2**20, "loss=5%,seed=7,path=receive")]
    impaired = bench._udp_settings(parse(["bench", "--quick", "--udp-impair", "loss=1%", "--bulk-size", "1MiB"]))
    assert [(setting.payload_size, setting.impairment) for setting in impaired][:2] == [
        (2**20, ""), (2**20, "loss=1%")]


IDLE = ["bench", "--rounds", "2", "--no-bulk", "--no-round-trips", "--count", "50"]


def test_idle_connections_are_measured_in_the_rounds_and_fill_their_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*IDLE, "--idle", "40", "--json", "--placement", "thread"]) == 0
    document = json.loads(capsys.readouterr().out)
    idle = document["idle"]
    assert idle["connections"] == 40 and idle["rounds"] == 2
    assert idle["p99_ratio_low"] <= idle["p99_ratio"] <= idle["p99_ratio_high"]
    assert idle["with_idle"]["round_trips"] == idle["without"]["round_trips"] == 50
    (target,) = [target for target in document["targets"] if "idle" in target["target"]]
    assert target["target"].startswith("tcp4 selector, 40 idle") and target["goal"] == "<= 1.5x"
    assert target["median"] == idle["p99_ratio"] and target["verdict"] in ("met", "missed")
    assert any(note.startswith("idle: one client's echo") for note in document["notes"])


def _bench_with_open_files(hard: int, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``python -m netlab bench ...`` with its open-files limit (soft and hard) lowered to ``hard``."""
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return subprocess.run([sys.executable, "-m", "netlab", *IDLE, *arguments], preexec_fn=lower,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": REPOSITORY})


def test_idle_with_too_few_descriptors_is_one_line_and_exit_2() -> None:
    completed = _bench_with_open_files(60, "--idle", "10000")
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.strip().splitlines() == [
        "netlab: --idle 10000: the open-files limit (60 soft, 60 hard) leaves no room for idle connections beside "
        "the 64 each process keeps: raise it (ulimit -n) and run again"]


def test_idle_beyond_the_hard_limit_measures_what_fits_and_says_so() -> None:
    completed = _bench_with_open_files(164, "--idle", "10000", "--json")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["idle"]["connections"] == 100
    assert ("idle connections: the open-files hard limit 164 leaves room for 100 of the 10,000 asked for, measured "
            "with 100 (raise it with ulimit -Hn as root)") in document["notes"]
