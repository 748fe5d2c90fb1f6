"""``netlab run --target URL``: against a real ``netlab serve`` (on loopback here; over namespaces in tests/lab).

What runs against the target, what is skipped and why, what the result records (the URL, never the token),
and the one-line failures: a wrong or missing token, nothing listening, a scenario nothing of which can run
remotely, a token without a target.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.errors import EXIT_NETLAB, EXIT_USAGE, ServerError
from netlab.service.client import Client
from netlab.testing import ChildServer, run_netlab, serve_in_thread
from netlab.testing.targets import ScenarioRun, run_scenario_text, token_files

TIMEOUTS = """\
experiment: timeouts
timeout: 30
parameters: {read_timeout: 0.2, command_timeout: 0.3}
matrix:
  transport: [tcp4, unix]
"""
CONCURRENCY = """\
experiment: concurrency
timeout: 20
parameters: {transport: tcp4, requests: 20, duration: 1.0}
matrix:
  model: [threaded, selector]
  clients: [1, 4]
"""
FRAMING = """\
experiment: framing
timeout: 30
parameters: {transport: tcp4, messages: 30}
matrix:
  framing: [length, line]
  delivery: [burst, sliced]
"""


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return token_files(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def target(tokens: tuple[Path, Path]) -> Iterator[ChildServer]:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--token-file", str(tokens[0]), "--quiet",
                     "--max-per-peer", "0") as server:
        yield server


def run_against(tmp_path: Path, text: str, *options: str) -> tuple[ScenarioRun, Path]:
    completed = run_scenario_text(tmp_path, text, *options)
    return completed, completed.out


def test_timeouts_against_a_target_run_what_the_client_side_can_and_say_why_the_rest_did_not(
        tmp_path: Path, target: ChildServer, tokens: tuple[Path, Path]) -> None:
    completed, out = run_against(tmp_path, TIMEOUTS, "--target", target.url, "--token-file", str(tokens[0]))
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["network"]["kind"] == "target" and document["network"]["url"] == target.url
    assert "client" in document["network"]["kernel_facts"]
    token = tokens[0].read_text().strip()
    saved = [path.read_text() for path in out.iterdir()]
    assert len(saved) == 2 and all(token not in text for text in saved)  # the URL is kept, never the token
    tcp, unix = document["summary"]
    assert unix["status"] == "skipped" and "the target listens on tcp4, this cell uses unix" in unix["messages"][0]
    rows = {row["case"]: row for row in tcp["rows"]}
    assert rows["slow command"]["outcome"].startswith("ReadTimeout")
    assert rows["command timeout"]["outcome"] == "Exit" and "timed out" in rows["command timeout"]["note"]
    for case in ("nothing listening", "full backlog", "idle connection"):
        assert rows[case]["outcome"] == "skipped" and rows[case]["after_ms"] is None
        assert rows[case]["note"].startswith("not measured against the target: it needs")
    assert "1 of 2 runs could not run against the target" in completed.stderr
    shown = run_netlab("results", "show", str(next(out.glob("*.json"))))
    assert "2 cells, 1 skipped, 3 measurements not made against the target (their notes say why)." in (
        shown.stdout.decode())
    markdown = next(path for path in out.iterdir() if path.suffix == ".md").read_text()
    assert f"Remote target {target.url}" in markdown


def test_concurrency_against_a_target_runs_each_client_count_once(
        tmp_path: Path, target: ChildServer, tokens: tuple[Path, Path]) -> None:
    completed, _ = run_against(tmp_path, CONCURRENCY, "--target", target.url, "--token-file", str(tokens[0]))
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    statuses = [(cell["varied"]["model"], cell["varied"]["clients"], cell["status"]) for cell in document["summary"]]
    assert statuses == [("threaded", 1, "ok"), ("threaded", 4, "ok"), ("selector", 1, "skipped"),
                        ("selector", 4, "skipped")]
    for cell in document["summary"][:2]:
        (row,) = cell["rows"]
        assert row["model"] == "target" and row["errors"] == 0 and row["round_trips"] > 0
    assert "model=selector only sets up a server netlab starts itself" in document["summary"][2]["messages"][0]


def test_framing_against_a_target_counts_the_replies_of_sliced_writes_and_leaves_the_server_side_empty(
        tmp_path: Path, target: ChildServer, tokens: tuple[Path, Path]) -> None:
    completed, _ = run_against(tmp_path, FRAMING, "--target", target.url, "--token-file", str(tokens[0]))
    assert completed.returncode == 0, completed.stderr
    cells = {(cell["varied"]["framing"], cell["varied"]["delivery"]): cell for cell in json.loads(completed.stdout)[
        "summary"]}
    (row,) = cells[("length", "sliced")]["rows"]
    assert cells[("length", "sliced")]["status"] == "ok"
    assert row["replies"] == row["in_step"] == 30 and row["client_writes"] > 30  # 1-16 byte slices
    assert row["server_receives"] is None and row["intact"] is None and "not counted" in row["note"]
    assert cells[("length", "burst")]["status"] == "skipped"
    assert "burst delivery holds the server busy" in cells[("length", "burst")]["messages"][0]
    for delivery in ("burst", "sliced"):
        assert "this cell uses line" in cells[("line", delivery)]["messages"][0]


@pytest.mark.parametrize(("which", "message"), [
    ("wrong", "refused the token (server: auth-failed: wrong token): pass the --token-file its netlab serve uses"),
    ("none", "wants a token: pass --token-file PATH"),
])
def test_a_wrong_or_missing_token_stops_the_run_before_it_starts_in_one_line(
        tmp_path: Path, target: ChildServer, tokens: tuple[Path, Path], which: str, message: str) -> None:
    options = ("--token-file", str(tokens[1])) if which == "wrong" else ()
    completed, out = run_against(tmp_path, TIMEOUTS, "--target", target.url, *options)
    lines = completed.stderr.splitlines()
    assert completed.returncode == EXIT_NETLAB and len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"netlab: the target {target.url} ") and message in lines[0]
    assert completed.stdout == "" and not list(out.glob("*"))  # no result file, half-written or not


def test_a_target_where_nothing_listens_is_one_line_at_once(tmp_path: Path,
                                                            tokens: tuple[Path, Path]) -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--quiet") as server:
        url = server.url  # a port that was just in use, now closed
    started = time.monotonic()
    completed, out = run_against(tmp_path, TIMEOUTS, "--target", url, "--token-file", str(tokens[0]))
    assert time.monotonic() - started < 60  # bounded: one connect attempt with a 5 s timeout
    lines = completed.stderr.splitlines()
    assert completed.returncode == EXIT_NETLAB and lines == [
        f"netlab: cannot reach the target {url}: nothing listens on {url} — is the server running?"]
    assert not list(out.glob("*"))


def test_a_scenario_nothing_of_which_can_run_remotely_is_refused_before_anything_runs(
        tmp_path: Path, tokens: tuple[Path, Path]) -> None:
    completed, _ = run_against(tmp_path, "experiment: backlog\n", "--target", "tcp4://127.0.0.1:9",
                               "--token-file", str(tokens[0]))
    assert completed.returncode == EXIT_USAGE
    assert completed.stderr.strip() == (
        f"netlab: no cell of {tmp_path / 'scenario.yaml'} can run against tcp4://127.0.0.1:9: backlog does not run "
        "against a remote target: it fills the server's accept queue and reads it with ss, which needs the "
        "server's own kernel")


def test_a_token_file_without_a_target_and_a_token_on_the_command_line_are_refused(
        tmp_path: Path, tokens: tuple[Path, Path]) -> None:
    completed, _ = run_against(tmp_path, TIMEOUTS, "--token-file", str(tokens[0]))
    assert completed.returncode == EXIT_USAGE and completed.stderr.strip() == (
        "netlab: --token-file is for --target URL: a scenario without a target starts its own servers")
    completed, _ = run_against(tmp_path, TIMEOUTS, "--target", "tcp4://127.0.0.1:9", "--token", "x" * 43)
    assert completed.returncode == EXIT_USAGE and "ps" in completed.stderr and "--token-file" in completed.stderr


def test_check_with_a_target_says_which_cells_would_run_against_it(
        tmp_path: Path, tokens: tuple[Path, Path]) -> None:
    completed, _ = run_against(tmp_path, TIMEOUTS, "--target", "tcp4://127.0.0.1:9", "--token-file",
                               str(tokens[0]), "--check", "--wide")
    assert completed.returncode == 0, completed.stderr
    assert "target: tcp4://127.0.0.1:9 (1 of 2 runs against it" in completed.stdout
    assert "the target listens on tcp4, this cell uses unix" in completed.stdout


def test_shell_takes_its_token_from_a_file(target: ChildServer, tokens: tuple[Path, Path]) -> None:
    right = run_netlab("shell", "--address", target.url, "--token-file", str(tokens[0]), stdin=b"echo hi\n")
    assert right.returncode == 0 and b"hi" in right.stdout, right.stderr
    wrong = run_netlab("shell", "--address", target.url, "--token-file", str(tokens[1]), stdin=b"echo hi\n")
    assert wrong.returncode == EXIT_NETLAB and b"wrong token" in wrong.stderr
    assert len(wrong.stderr.decode().splitlines()) == 1


def test_a_client_turned_away_before_the_challenge_is_told_why() -> None:
    token = b"a-strong-token-of-43-characters-0123456789ab"
    with serve_in_thread("tcp4://127.0.0.1:0", token=token, max_connections=1) as running:
        with Client(running.address, token=token, read_timeout=10):  # holds the one connection
            with pytest.raises(ServerError, match=r"^server: server-busy: "):
                Client(running.address, token=token, read_timeout=10)


def test_network_namespaces_and_a_target_together_say_which_flag_to_drop(
        tmp_path: Path, tokens: tuple[Path, Path]) -> None:
    """Refused before anything is built or reached (no root needed): one line, exit 2, no result file."""
    url = "tcp4://127.0.0.1:9"
    completed, out = run_against(tmp_path, TIMEOUTS, "--network", "namespaces", "--target", url,
                                 "--token-file", str(tokens[0]))
    assert completed.returncode == EXIT_USAGE and completed.stderr.splitlines() == [
        "netlab: --network namespaces builds hosts of its own and --target measures a server on another host: "
        f"drop --network to measure {url}, or drop --target to run over namespaces"]
    completed, out = run_against(tmp_path, "network: namespaces\n" + TIMEOUTS, "--target", url,
                                 "--token-file", str(tokens[0]))
    assert completed.returncode == EXIT_USAGE and completed.stderr.splitlines() == [
        f"netlab: {tmp_path / 'scenario.yaml'} has network: namespaces, which builds hosts of its own, and --target "
        f"measures a server on another host: add --network loopback to measure {url} with this file, or drop --target"]
    assert not out.exists() or not list(out.glob("*"))
    completed, _ = run_against(tmp_path, "network: namespaces\n" + TIMEOUTS, "--network", "loopback", "--target", url,
                               "--token-file", str(tokens[0]), "--check")
    assert completed.returncode == 0, completed.stderr
    assert f"target: {url}" in completed.stdout
