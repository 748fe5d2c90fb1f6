"""Tables that fit: the fitting rules, and every table command through the real CLI at COLUMNS=100."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netlab.scenario.render import table_rows
from netlab.scenario.results import load_document
from netlab.tables import TableOptions, draw_table, fit_table, show_table, terminal_width
from netlab.testing.servers import run_netlab_text

ROOT = Path(__file__).parents[1]
RESULT_FILES = sorted((ROOT / "results").glob("*.json"))
LONG_NOTE = "the kernel dropped the SYN silently, so the client's connect timed out after 0.4 s"


def table_lines(text: str) -> list[str]:
    """The lines that belong to tables (rows, headings, rules), not the notes under them."""
    return [line for line in text.splitlines()
            if line.startswith("|") or (line and "  " in line and not line.startswith(("[", "Columns:", "    ")))]


def netlab(*arguments: str, columns: str = "100") -> subprocess.CompletedProcess[str]:
    return run_netlab_text(*arguments, timeout=120, environment={"COLUMNS": columns})


def test_a_table_that_fits_is_left_alone() -> None:
    table = fit_table(["a", "note"], [["1", "short"]], 100)
    assert (table.headings, table.rows, table.footnotes, table.legend, table.parts) == (
        ["a", "note"], [["1", "short"]], [], [], [])


def test_long_notes_become_shared_footnotes() -> None:
    rows = [["tcp4", "0", LONG_NOTE], ["tcp6", "0", LONG_NOTE], ["unix", "1", "EAGAIN at once"]]
    table = fit_table(["transport", "backlog", "note"], rows, 40)
    assert [row[2] for row in table.rows] == ["[1]", "[1]", "EAGAIN at once"]
    assert table.footnotes == [(1, LONG_NOTE)]
    assert f"[1] {LONG_NOTE}" in table.render()


def test_wide_headings_are_abbreviated_with_a_legend_and_numbers_are_never_cut() -> None:
    headings = ["transport", "connected at once", "connect p50 ms", "connect max ms", "first reply p99.9 us"]
    rows = [["unix-seqpacket", "9", "0.075", "401", "123,456"]]
    table = fit_table(headings, rows, 50)
    text = table.render()
    assert all(len(line) <= 50 for line in table_lines(text))
    legend = dict(table.legend)
    assert legend and all(full in headings for full in legend.values())
    assert legend.get("cao") == "connected at once"  # initials, widest heading first
    for cell in rows[0]:
        assert cell in text  # every value whole, somewhere in the output


def test_a_table_still_too_wide_is_split_repeating_its_key_columns() -> None:
    headings = ["transport", "framing", *(f"measure {index}" for index in range(12))]
    rows = [["unix-seqpacket", "length", *(f"{index * 1111:,}" for index in range(12))]]
    table = fit_table(headings, rows, 60, key_columns=(0, 1))
    assert len(table.parts) > 1
    assert all(part[:2] == [0, 1] for part in table.parts)
    assert sorted({index for part in table.parts for index in part}) == list(range(len(table.headings)))
    text = table.render()
    assert all(len(line) <= 60 for line in table_lines(text))
    assert text.count("unix-seqpacket") == len(table.parts)


def test_units_move_to_the_heading_once() -> None:
    table = fit_table(["case", "after"], [["nothing listening", "1.2 ms"], ["full backlog", "501 ms"]], 10)
    assert table.headings[1].startswith("after (ms)") or ("after (ms)" in dict(table.legend).values())
    assert [row[1] for row in table.rows] == ["1.2", "501"]


def test_wide_keeps_everything_and_columns_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [["tcp4", "0", LONG_NOTE]]
    wide = show_table(["transport", "backlog", "note"], rows, TableOptions(width=30, wide=True))
    assert LONG_NOTE in wide.splitlines()[2]
    picked = show_table(["transport", "backlog", "note"], rows, TableOptions(columns=("backlog", "transport")))
    assert picked.splitlines()[0].split() == ["backlog", "transport"]


def test_numeric_columns_are_right_aligned_in_both_formats() -> None:
    assert draw_table(["name", "n"], [["a", "5"], ["b", "1,234"]]).splitlines()[2] == "a" + " " * 9 + "5"  # "name" is 4 wide, a 2-space gap, "1,234" is 5
    assert draw_table(["name", "n"], [["a", "5"]], "github").splitlines()[1] == "|------|--:|"


def test_terminal_width_follows_columns_and_is_100_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "77")
    assert terminal_width() == 77
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert terminal_width() == 100


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda path: path.name)
def test_results_show_fits_100_columns_and_loses_nothing(path: Path) -> None:
    shown = netlab("results", "show", str(path))
    assert shown.returncode == 0, shown.stderr
    lines = table_lines(shown.stdout)
    assert lines and all(len(line) <= 100 for line in lines), max(lines, key=len)
    headings, rows = table_rows(load_document(str(path)))
    for row in rows:
        for cell in row:
            assert cell in shown.stdout, f"{cell!r} is missing"  # whole, in the table or a footnote
    wide = netlab("results", "show", str(path), "--wide")
    assert wide.returncode == 0
    assert wide.stdout.splitlines()[0].split("  ")[0].strip() == headings[0]
    assert all(heading in wide.stdout.splitlines()[0] for heading in headings if heading)


def test_results_show_columns_picks_and_a_wrong_name_is_one_line() -> None:
    path = next(path for path in RESULT_FILES if path.name.startswith("backlog"))
    picked = netlab("results", "show", str(path), "--columns", "transport,backlog,connected")
    assert picked.returncode == 0
    assert picked.stdout.splitlines()[0].split() == ["transport", "backlog", "connected", "at", "once"]
    wrong = netlab("results", "show", str(path), "--columns", "transport,teleports")
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1 and "no column 'teleports'" in wrong.stderr and not wrong.stdout


def test_a_narrow_terminal_gets_a_narrow_table() -> None:
    path = next(path for path in RESULT_FILES if path.name.startswith("udp-loss"))
    shown = netlab("results", "show", str(path), columns="60")
    assert shown.returncode == 0
    assert all(len(line) <= 60 for line in table_lines(shown.stdout))


@pytest.mark.parametrize("path", sorted((ROOT / "results").glob("*.md")), ids=lambda path: path.name)
def test_every_committed_result_markdown_table_fits_100_columns(path: Path) -> None:
    rows = [line for line in path.read_text().splitlines() if line.startswith("|")]
    assert rows and all(len(line) <= 100 for line in rows), max(rows, key=len)


def test_run_check_refuses_an_unknown_column_before_running(tmp_path: Path) -> None:
    checked = netlab("run", str(ROOT / "scenarios" / "backlog.yaml"), "--check", "--columns", "nope",
                     "--out", str(tmp_path / "out"))
    assert checked.returncode == 2 and "no column 'nope'" in checked.stderr
    assert not (tmp_path / "out").exists()


def test_bench_tables_fit_100_columns() -> None:
    bench = netlab("bench", "--transport", "unix", "--framing", "length", "--model", "threaded", "--count", "50",
                   "--bulk-size", "1MiB", "--placement", "thread")
    assert bench.returncode == 0, bench.stderr
    lines = table_lines(bench.stdout)
    assert lines and all(len(line) <= 100 for line in lines), max(lines, key=len)
    markdown = netlab("bench", "--transport", "unix", "--framing", "length", "--model", "threaded", "--count", "50",
                      "--no-bulk", "--placement", "thread", "--format", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout.startswith("| transport ") and all(
        len(line) <= 100 for line in markdown.stdout.splitlines() if line.startswith("|"))
    wrong = netlab("bench", "--transport", "unix", "--columns", "nope")
    assert wrong.returncode == 2 and "no bench table has nope" in wrong.stderr and not wrong.stdout


def test_capture_read_fits_100_columns(tmp_path: Path) -> None:
    from netlab.testing.capture import needs_capture

    if needs_capture.args[0]:
        pytest.skip(needs_capture.kwargs["reason"])
    from netlab.testing.capture import capture_exchange

    pcap = tmp_path / "exchange.pcap"
    port = capture_exchange("tcp4", "length", pcap)
    shown = netlab("capture", "--read", str(pcap), "--port", str(port), columns="100")
    assert shown.returncode == 0, shown.stderr
    lines = table_lines(shown.stdout)
    assert lines and all(len(line) <= 100 for line in lines)
    assert 'EXEC id=1 "echo hello dissector"' in shown.stdout
    as_csv = netlab("capture", "--read", str(pcap), "--port", str(port), "--format", "csv")
    assert as_csv.returncode == 0 and as_csv.stdout.splitlines()[0] == "#,time,source -> destination,flags,seq,ack,len,netlab"
    assert 'EXEC id=1 ""echo hello dissector""' in as_csv.stdout  # CSV doubles the quotes
    as_markdown = netlab("capture", "--read", str(pcap), "--port", str(port), "--format", "markdown")
    assert as_markdown.returncode == 0 and as_markdown.stdout.startswith("|  #")
