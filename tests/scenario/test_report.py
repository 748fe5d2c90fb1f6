"""``netlab report``: one self-contained HTML page whose content is the JSON's, checked by a parser and a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from netlab.cli.main import main
from netlab.scenario.experiments import load_experiment
from netlab.scenario.render import table_rows
from netlab.scenario.results import load_document
from netlab.testing.results import committed, result_files

RESULT_FILES = result_files(Path(__file__).parents[2] / "results")
CHROMIUM = "/usr/bin/chromium"


class PageReader(HTMLParser):
    """Collects the page's tables (by id), footnotes, figures, resources and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.footnotes: dict[str, str] = {}
        self.figures: list[str] = []
        self.svg_count = 0
        self.external: list[str] = []
        self.scripts = 0
        self.title = ""
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._footnote: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name in ("src", "href", "xlink:href"):
            value = attributes.get(name)
            if value is not None and not value.startswith("#"):
                self.external.append(value)
        if tag in ("script", "iframe", "object", "embed"):
            self.scripts += 1
        if tag in ("link", "img"):
            self.external.append(tag)  # a stylesheet or image from elsewhere would need a fetch
        if tag == "title":
            self._in_title = True
        elif tag == "table":
            self._table = attributes.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "li" and (attributes.get("id") or "").startswith("footnote-"):
            self._footnote = attributes["id"].removeprefix("footnote-")  # type: ignore[union-attr]
            self.footnotes[self._footnote] = ""
        elif tag == "figure":
            self.figures.append(attributes.get("id") or "")
        elif tag == "svg":
            self.svg_count += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "li":
            self._footnote = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)
        if self._footnote is not None:
            self.footnotes[self._footnote] += data


def read_page(path: Path) -> PageReader:
    reader = PageReader()
    reader.feed(path.read_text(encoding="utf-8"))
    reader.close()
    return reader


def check_page_matches(reader: PageReader, document: dict[str, Any]) -> None:
    """Every results cell is the JSON's (a long note through its footnote); parameters and environment are there."""
    headings, rows = table_rows(document)
    shown = reader.tables["results"]
    assert shown[0] == headings
    assert len(shown) - 1 == len(rows)
    for shown_row, row in zip(shown[1:], rows):
        for shown_cell, cell in zip(shown_row, row):
            if shown_cell != cell:
                assert shown_cell in reader.footnotes and reader.footnotes[shown_cell].strip() == cell
    parameters = {row[0]: row[1] for row in reader.tables["parameters"][1:]}
    for name, value in document["scenario"]["parameters"].items():
        assert parameters[name] == str(value)
    for name, values in document["scenario"]["matrix"].items():
        assert parameters[name] == ", ".join(str(value) for value in values)
    environment = {row[0]: row[1] for row in reader.tables["environment"][1:]}
    assert environment["kernel"] == document["environment"]["kernel"]
    sysctls = {row[0]: row[1] for row in reader.tables["sysctls"][1:]}
    assert sysctls == {name: "" if value is None else str(value)
                       for name, value in document["environment"]["sysctls"].items()}
    assert reader.title.startswith(f"netlab {document['scenario']['name']}:")


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda path: path.name)
def test_the_report_holds_what_the_json_holds_and_nothing_external(path: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "page.html"
    assert main(["report", str(path), "--out", str(out)]) == 0
    document = load_document(str(path))
    reader = read_page(out)
    check_page_matches(reader, document)
    charts = load_experiment(document["experiment"]["name"]).charts
    assert reader.figures == [f"chart-{chart.name}" for chart in charts]
    assert reader.svg_count == len(charts)
    assert reader.external == [] and reader.scripts == 0  # opens offline: nothing to fetch, nothing to run


def test_report_defaults_to_beside_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    source, _ = committed(RESULT_FILES, "timeouts")
    copy = tmp_path / source.name
    shutil.copyfile(source, copy)
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == str(copy.with_suffix(".html"))
    assert copy.with_suffix(".html").exists()


def test_report_refuses_a_missing_file_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "absent.json")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no such file" in error
    assert os.listdir(tmp_path) == []



@pytest.mark.parametrize(("name", "content", "wanted"), [
    ("capture.pcapng", b"\x0a\x0d\x0d\x0a\xe0\x00\x00\x00\x4d\x3c\x2b\x1a", "not a text file"),
    ("folder.json", None, "cannot read it (Is a directory)"),
])
def test_report_says_what_to_give_when_the_file_is_no_result(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              name: str, content: bytes | None, wanted: str) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert main(["report", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and wanted in error and "give a results/*.json file written by 'netlab run'" in error
    assert sorted(os.listdir(tmp_path)) == [name]


@pytest.mark.parametrize("command", [["report"], ["results", "show"]])
def test_a_bench_file_is_pointed_to_results_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  command: list[str]) -> None:
    from netlab.scenario.bench_charts import BENCH_FORMAT

    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"format": BENCH_FORMAT, "round_trips": []}))
    assert main([*command, str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "a netlab bench --json file" in error and "'netlab results plot' draws it" in error
    assert os.listdir(tmp_path) == ["bench.json"]

def test_run_report_writes_the_page_beside_the_json(write_scenario, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    scenario = write_scenario("experiment: backlog\nparameters:\n  transport: unix\n  extra_clients: 1\n"
                              "matrix:\n  backlog: [0, 1]\n")
    out = tmp_path / "results"
    assert main(["run", str(scenario), "--out", str(out), "--report", "--format", "csv"]) == 0
    (json_path,) = out.glob("*.json")
    page = json_path.with_suffix(".html")
    check_page_matches(read_page(page), load_document(str(json_path)))


def chromium_missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    return None


@pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")
def test_a_real_browser_renders_the_report_offline(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path, document = committed(RESULT_FILES, "udp-loss")
    page = tmp_path / "page.html"
    assert main(["report", str(path), "--out", str(page)]) == 0
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dumped = subprocess.run([*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    rendered = tmp_path / "rendered.html"
    rendered.write_text(dumped.stdout, encoding="utf-8")
    reader = read_page(rendered)  # the DOM the browser built, not the file we wrote
    check_page_matches(reader, document)
    assert reader.svg_count == len(load_experiment("udp-loss").charts)
    shot = tmp_path / "shot.png"
    captured = subprocess.run([*command, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert captured.returncode == 0, captured.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000  # drawn, not blank


def test_written_files_are_readable_like_any_new_file(tmp_path: Path) -> None:
    from netlab.scenario.results import write_atomically

    current = os.umask(0o022)
    os.umask(current)
    path = tmp_path / "page.html"
    write_atomically(str(path), "<p>x</p>")
    assert path.stat().st_mode & 0o777 == 0o666 & ~current  # what open() gives, not mkstemp's 0600


def test_a_namespaced_result_shows_its_network_in_the_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = next((path for path in RESULT_FILES
                 if (load_document(str(path)).get("network") or {}).get("kind") == "namespaces"), None)
    if path is None:
        pytest.skip("no committed result ran over namespaces")
    document = load_document(str(path))
    out = tmp_path / "page.html"
    assert main(["report", str(path), "--out", str(out)]) == 0
    reader = read_page(out)
    links = {row[0]: row for row in reader.tables["network-1"][1:]}
    assert set(links) == {"to_server", "to_client"}
    wire = document["network"].get("wire")
    if wire:
        counters = {row[0]: row for row in reader.tables["network-2"][1:]}
        assert set(counters) == set(wire)


@pytest.mark.usefixtures("without_matplotlib")
def test_without_matplotlib_the_report_is_written_and_says_why_it_has_no_charts(tmp_path: Path) -> None:
    path, document = committed(RESULT_FILES, "udp-loss")
    out = tmp_path / "page.html"
    assert main(["report", str(path), "--out", str(out)]) == 0
    page = out.read_text()
    assert "No charts: plots need matplotlib" in page
    check_page_matches(read_page(out), document)
