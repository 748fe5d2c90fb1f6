"""Draw the charts a result's experiment declares, as PNG and SVG, with matplotlib (Agg, no display).

How this works: :func:`result_charts` finds the experiment's declared charts
(:mod:`netlab.scenario.charts`) and reads their numbers from the document;
:func:`draw` turns one :class:`ChartData` into image bytes through
:mod:`netlab.figures` (a bare figure, reproducible SVG). :func:`write_charts` saves every chart in both formats,
each file written atomically.
"""

from __future__ import annotations

import os
from typing import Any

from netlab.errors import UsageError
from netlab.figures import IMAGE_FORMATS, figure_bytes, new_figure
from netlab.scenario.charts import BARS, Chart, ChartData, chart_data
from netlab.scenario.results import prepare_directory, result_stem, write_atomically

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINE_STYLES = ("-", "--", "-.", ":")


def declared_charts(document: dict[str, Any]) -> tuple[Chart, ...]:
    """The charts the document's experiment declares.

    Raises:
        UsageError: the experiment is not one this netlab knows.
    """
    from netlab.scenario.bench_charts import BENCH_CHARTS, is_bench_output
    from netlab.scenario.experiments import EXPERIMENT_MODULES, load_experiment

    if is_bench_output(document):
        return BENCH_CHARTS
    name = document["experiment"].get("name")
    if name not in EXPERIMENT_MODULES:
        raise UsageError(f"this result comes from an experiment netlab does not know ({name}): "
                         "plot it with the netlab version that wrote it")
    return load_experiment(name).charts


def result_charts(document: dict[str, Any]) -> list[ChartData]:
    """The data of every declared chart that has at least one point in this result."""
    return [data for data in (chart_data(document, chart) for chart in declared_charts(document)) if not data.empty]


def draw(data: ChartData, image_format: str) -> bytes:
    """One chart as PNG or SVG bytes.

    Raises:
        UsageError: matplotlib is not installed.
    """
    return figure_bytes(_figure(data), image_format)


def write_charts(document: dict[str, Any], directory: str, stem: str | None = None) -> list[str]:
    """Write ``<stem>-<chart>.png`` and ``.svg`` for every chart with data; return the paths.

    Args:
        document: a result document (or bench output made chartable, see ``bench_charts``).
        directory: created if missing.
        stem: the files' name before ``-<chart>``; by default the result's own stem.

    Raises:
        UsageError: no chart has data, the directory cannot be written, or matplotlib is missing.
    """
    charts = result_charts(document)
    if not charts:
        raise UsageError(f"the {document['experiment'].get('name')} result has nothing to plot "
                         "(no chart is declared, or no row has a value)")
    prepare_directory(directory)
    stem = stem or result_stem(document["scenario"]["name"], document["started"].replace("+00:00", "Z"))
    paths = []
    for data in charts:
        for image_format in IMAGE_FORMATS:
            path = os.path.join(directory, f"{stem}-{data.chart.name}.{image_format}")
            write_atomically(path, draw(data, image_format))
            paths.append(path)
    return paths


def _figure(data: ChartData) -> Any:
    figure = new_figure(data.chart.name)
    axes = figure.add_subplot()
    chart = data.chart
    if chart.kind == BARS:
        _draw_bars(axes, data)
    else:
        _draw_lines(axes, data)
    axes.set_title(chart.title)
    axes.set_xlabel(data.x_label)
    axes.set_ylabel(data.y_label)
    if chart.log_y:
        from matplotlib.ticker import FuncFormatter

        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.grid(True, which="major", axis="y", alpha=0.3)
    if len(data.series) > 1 or data.legend_title:
        axes.legend(title=data.legend_title or None, fontsize="small", title_fontsize="small")
    caption = data.caption()
    if caption:
        figure.text(0.01, 0.005, caption, fontsize="x-small", color="0.35", ha="left", va="bottom")
    return figure


def _draw_lines(axes: Any, data: ChartData) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    groups = list(dict.fromkeys(series.group for series in data.series))
    for series in data.series:
        index = groups.index(series.group)
        # Overlapping lines stay distinguishable: a colour per group, a style per y column or per entry of a row
        # (the flows of one sender); with neither, a style per group as well.
        style = series.variant if len(data.chart.y) > 1 or data.chart.points else index
        points = sorted(series.points, key=lambda point: float(point.x))
        xs = [float(point.x) for point in points]
        ys = [point.y for point in points]
        errors = [[point.y - point.low for point in points], [point.high - point.y for point in points]]
        marker = _MARKERS[style % len(_MARKERS)] if len(points) <= 50 else None  # a trace: a plain line
        axes.errorbar(xs, ys, yerr=errors if any(any(side) for side in errors) else None,
                      label=series.label, color=f"C{index % 10}", marker=marker,
                      linestyle=_LINE_STYLES[style % len(_LINE_STYLES)], capsize=3, markersize=5,
                      alpha=0.85)
    if data.chart.log_x:
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    elif all(float(point.x).is_integer() for series in data.series for point in series.points):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_bars(axes: Any, data: ChartData) -> None:
    count = max(len(data.series), 1)
    width = 0.8 / count
    positions = {category: index for index, category in enumerate(data.categories)}
    for index, series in enumerate(data.series):
        xs = [positions[str(point.x)] - 0.4 + width * (index + 0.5) for point in series.points]
        ys = [point.y for point in series.points]
        errors = [[point.y - point.low for point in series.points], [point.high - point.y for point in series.points]]
        axes.bar(xs, ys, width=width * 0.95, label=series.label,
                 yerr=errors if any(any(side) for side in errors) else None, capsize=2)
    axes.set_xticks(range(len(data.categories)))
    rotate = max((len(category) for category in data.categories), default=0) * len(data.categories) > 60
    axes.set_xticklabels(data.categories, rotation=35 if rotate else 0, ha="right" if rotate else "center",
                         fontsize="small")
