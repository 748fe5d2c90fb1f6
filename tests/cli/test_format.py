"""One --format table|markdown|csv|json on every command that prints tables."""

from __future__ import annotations

import csv
import io
import json

import pytest

from netlab.cli.main import build_parser
from netlab.cli.parsers import subcommand_parsers
from netlab.tables import OUTPUT_FORMATS
from netlab.testing import run_netlab

PARSERS = dict(subcommand_parsers(build_parser()))


@pytest.mark.parametrize("command", ["run", "results show", "results compare", "bench", "capture", "walkthrough"])
def test_every_table_command_has_the_same_format_option(command: str) -> None:
    action = next(action for action in PARSERS[command]._actions if "--format" in action.option_strings)
    assert tuple(action.choices or ()) == OUTPUT_FORMATS and action.default == "table"


def test_walkthrough_as_json_and_csv() -> None:
    result = run_netlab("walkthrough", "sticky-packets", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["name"] == "sticky-packets" and document["sections"]
    section = document["sections"][0]
    assert section["columns"][:2] == ["#", "time"] and len(section["rows"]) == len(section["explanations"]) > 0
    result = run_netlab("walkthrough", "sticky-packets", "--format", "csv")
    first = result.stdout.decode().split("\n\n", 1)[0] if b"\n\n" in result.stdout else result.stdout.decode()
    rows = list(csv.reader(io.StringIO(first)))
    assert rows[0][0] == "section" and rows[0][-1] == "explanation" and len(rows) > 1


def test_bench_as_csv_keeps_json_as_an_alias() -> None:
    result = run_netlab("bench", "--quick", "--transport", "unix", "--no-bulk", "-c", "20", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout.decode())))
    assert rows[0][:4] == ["table", "transport", "framing", "model"] and rows[1][:2] == ["round trips", "unix"]
    result = run_netlab("bench", "--quick", "--transport", "unix", "--no-bulk", "-c", "20", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["round_trips"][0]["transport"] == "unix"
