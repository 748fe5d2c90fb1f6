"""Charts: each experiment's declarations, the numbers read from committed results, and ``netlab results plot``."""

from __future__ import annotations

import copy
import dataclasses
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from netlab.cli.main import main
from netlab.scenario.charts import BARS, LINE, Chart, chart_data
from netlab.scenario.experiments import EXPERIMENT_NAMES, load_experiment
from netlab.scenario.results import load_document
from netlab.testing.results import committed, result_files

RESULTS = Path(__file__).parents[2] / "results"
RESULT_FILES = result_files(RESULTS)


@pytest.mark.parametrize("name", EXPERIMENT_NAMES)
def test_every_experiment_declares_charts_over_its_own_columns(name: str) -> None:
    experiment = load_experiment(name)
    assert experiment.charts, f"{name} declares no chart"
    fields = {field.name for field in dataclasses.fields(experiment.row_type)}
    for chart in experiment.charts:
        # a chart over a row's list of points names its axes, not columns
        named = {*chart.series, *chart.require, chart.points} if chart.points else \
            {*chart.x, *chart.y, *chart.series, *chart.require}
        assert named <= fields, f"{name} chart {chart.name} names columns its rows lack: {named - fields}"


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda path: path.name)
def test_every_committed_result_has_something_to_plot(path: Path) -> None:
    document = load_document(str(path))
    for chart in load_experiment(document["experiment"]["name"]).charts:
        assert not chart_data(document, chart).empty, f"{path.name}: chart {chart.name} has no point"


def test_backlog_points_are_the_rows_and_the_udp_row_is_left_out_and_said() -> None:
    _, document = committed(RESULT_FILES, "backlog")
    chart = next(chart for chart in load_experiment("backlog").charts if chart.name == "admitted")
    data = chart_data(document, chart)
    rows = [row for cell in document["summary"] for row in cell["rows"]]
    expected: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["backlog"] is not None:
            expected.setdefault(row["transport"], []).append((row["backlog"], row["connected"]))
    assert {series.label: [(point.x, point.y) for point in series.points] for series in data.series} == expected
    udp_rows = sum(1 for row in rows if row["backlog"] is None)
    assert udp_rows and data.left_out == [f"{udp_rows} row without backlog"]
    assert "left out: 1 row without backlog" in data.caption()


def test_udp_loss_never_plots_a_run_that_did_not_complete() -> None:
    _, document = committed(RESULT_FILES, "udp-loss")
    chart = next(chart for chart in load_experiment("udp-loss").charts if chart.name == "completion")
    data = chart_data(document, chart)
    rows = [row for cell in document["summary"] for row in cell["rows"]]
    incomplete = [row for row in rows if not row["exactly_once"]]
    plotted = sum(len(series.points) for series in data.series)
    assert plotted == len(rows) - len(incomplete)
    if incomplete:
        assert data.left_out == [f"{len(incomplete)} row{'s' if len(incomplete) > 1 else ''} with all exactly once: no"]
    assert data.legend_title == "RTO floor s" and data.x_label == "loss %"


def test_bars_put_netlab_beside_its_baseline_per_category() -> None:
    _, document = committed(RESULT_FILES, "throughput")
    chart = next(chart for chart in load_experiment("throughput").charts if chart.name == "round-trips")
    data = chart_data(document, chart)
    assert [series.label for series in data.series] == ["round trips/s", "stdlib round trips/s"]
    first = next(entry["rows"][0] for entry in document["summary"] if entry["rows"])  # skipped cells have none
    assert data.categories[0] == f"{first['transport']} {first['framing']}"
    assert data.series[1].points[0].y == first["baseline_round_trips_per_s"]


def test_repeats_become_a_median_with_its_spread() -> None:
    _, document = committed(RESULT_FILES, "udp-loss")
    document = copy.deepcopy(document)
    row = document["summary"][0]["rows"][0]
    row["completion_s"] = {"median": 2.0, "min": 1.0, "max": 5.0, "n": 3}
    chart = Chart("c", "t", LINE, x=("loss",), y=("completion_s",), series=("rto_floor",))
    point = chart_data(document, chart).series[0].points[0]
    assert (point.y, point.low, point.high) == (2.0, 1.0, 5.0)
    assert "medians over the repeats" in chart_data(document, chart).caption()


def test_a_bad_declaration_is_refused_where_it_is_written() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        Chart("c", "t", "pie", x=("a",), y=("b",))
    with pytest.raises(ValueError, match="one x column"):
        Chart("c", "t", LINE, x=("a", "b"), y=("c",))
    assert Chart("c", "t", BARS, x=("a", "b"), y=("c",)).kind == BARS


def test_results_plot_writes_png_and_svg_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    path, document = committed(RESULT_FILES, "udp-loss")
    assert main(["results", "plot", str(path), "--out", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    charts = load_experiment("udp-loss").charts
    assert sorted(Path(name).name for name in written) == sorted(
        f"{path.stem}-{chart.name}.{suffix}" for chart in charts for suffix in ("png", "svg"))
    for name in written:
        content = Path(name).read_bytes()
        if name.endswith(".png"):
            assert content.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            root = ElementTree.fromstring(content)
            texts = " ".join(element.text or "" for element in root.iter())
            chart = next(chart for chart in charts if name.endswith(f"-{chart.name}.svg"))
            assert chart.title in texts
    again = tmp_path / "again"
    assert main(["results", "plot", str(path), "--out", str(again)]) == 0
    svg = f"{path.stem}-{charts[0].name}.svg"
    assert (again / svg).read_bytes() == (tmp_path / svg).read_bytes()  # the same result draws the same file


def test_results_plot_refuses_a_non_result_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text(json.dumps({"rows": []}))
    assert main(["results", "plot", str(bogus), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a netlab result file" in error
    assert not (tmp_path / "out").exists()


def test_results_plot_says_when_the_experiment_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, document = committed(RESULT_FILES, "backlog")
    document = copy.deepcopy(document)
    document["experiment"]["name"] = "teleport"
    strange = tmp_path / "strange.json"
    strange.write_text(json.dumps(document))
    assert main(["results", "plot", str(strange), "--out", str(tmp_path / "out")]) == 2
    assert "experiment netlab does not know (teleport)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bench_output_plots_ratios_with_their_spread_over_models(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from netlab.scenario.bench_charts import BENCH_CHARTS, bench_document

    assert main(["bench", "--transport", "unix", "--framing", "length", "--model", "iterative", "--model", "threaded",
                 "--count", "50", "--bulk-size", "1MiB", "--placement", "thread", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    ratios = sorted(row["ratio"] for row in output["round_trips"])
    assert len(ratios) == 2
    data = chart_data(bench_document(output), BENCH_CHARTS[0])
    (point,) = data.series[0].points
    assert (point.x, point.low, point.high) == ("unix length", ratios[0], ratios[1])
    assert point.y == pytest.approx(sum(ratios) / 2)
    assert "lowest and highest model" in data.caption()
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(output))
    assert main(["results", "plot", str(saved), "--out", str(tmp_path / "plots")]) == 0
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == ["bench-ratios.png", "bench-ratios.svg"]


@pytest.mark.usefixtures("without_matplotlib")
def test_plot_without_matplotlib_is_one_clear_line_and_no_file(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = committed(RESULT_FILES, "udp-loss")
    assert main(["results", "plot", str(path), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "netlab: plots need matplotlib: pip install 'matplotlib>=3.7,<4'\n"
    assert list(tmp_path.iterdir()) == []
