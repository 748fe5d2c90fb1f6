"""Charts an experiment declares, and the numbers each one draws from a saved result.

How this works: an experiment lists its charts as :class:`Chart` values next to
its own code (``Experiment.charts``); a chart names the result columns it
plots, so a declaration is plain data. :func:`chart_data` reads only the saved
document's summary rows and returns :class:`ChartData`: one series per value of
the chart's series columns (times each plotted column), each point the
median of its repeats with the min and max as its spread. Rows without a value
to plot, or failing the chart's ``require`` columns, are counted and said in the
caption, never plotted as zero. Drawing lives in :mod:`netlab.scenario.plot`;
nothing here imports matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LINE = "line"
BARS = "bars"
CHART_KINDS = (LINE, BARS)


@dataclass(frozen=True)
class Chart:
    """One chart of an experiment's results.

    Attributes:
        name: a short file-name part, e.g. ``admitted`` (files are ``<result>-<name>.png``).
        title: the chart's title.
        kind: ``line`` (numeric x axis) or ``bars`` (one group of bars per category).
        x: the column on the x axis (line), or the columns naming each bar group (bars).
        y: the columns plotted; several columns sit beside each other (e.g. netlab and its baseline).
        series: columns whose values split the rows into separate lines or bar colours.
        require: columns that must be true in a row for it to be plotted (e.g. the run completed).
        log_x: a logarithmic x axis (line charts).
        log_y: a logarithmic y axis.
        y_label: the y axis label; by default the heading of the first y column.
        spread: what a point's whiskers mean, said under the chart when any point has a spread.
        points: for a line chart over time: a row column holding a list of
            ``[label, x, y, ...]`` entries (e.g. a congestion-window trace);
            each entry is one point of the line ``<series columns> <label>``,
            and ``x``/``y`` name the axes instead of columns.
    """

    name: str
    title: str
    kind: str
    x: tuple[str, ...]
    y: tuple[str, ...]
    series: tuple[str, ...] = ()
    require: tuple[str, ...] = ()
    log_x: bool = False
    log_y: bool = False
    y_label: str = ""
    spread: str = "points are medians over the repeats; whiskers show min-max"
    points: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CHART_KINDS:
            raise ValueError(f"chart {self.name}: kind must be one of {', '.join(CHART_KINDS)}, not {self.kind}")
        if not self.x or not self.y:
            raise ValueError(f"chart {self.name}: give at least one x and one y column")
        if self.kind == LINE and len(self.x) != 1:
            raise ValueError(f"chart {self.name}: a line chart has one x column")


@dataclass(frozen=True)
class Point:
    """One plotted value: ``y`` is the median over repeats, ``low``/``high`` its min and max."""

    x: float | str
    y: float
    low: float
    high: float


@dataclass
class Series:
    """One line, or one colour of bars."""

    label: str
    points: list[Point] = field(default_factory=list)
    #: the series-column values alone (one colour each) and which y column, or which of a row's
    #: entries (a chart over ``points``: e.g. one flow of two), this is (one line style each)
    group: str = ""
    variant: int = 0


@dataclass
class ChartData:
    """What a chart draws, read from one result document.

    Attributes:
        chart: the declaration.
        series: in the order their first row appears.
        categories: the bar groups in row order (bars only).
        x_label: the x axis label (the heading(s) of the x column(s)).
        y_label: the y axis label.
        legend_title: the heading(s) of the series columns.
        left_out: why rows were not plotted, e.g. ``1 row without backlog``.
    """

    chart: Chart
    series: list[Series]
    categories: list[str]
    x_label: str
    y_label: str
    legend_title: str
    left_out: list[str]

    @property
    def empty(self) -> bool:
        """True when no point is left to draw."""
        return not any(series.points for series in self.series)

    def caption(self) -> str:
        """One line under the chart: the spread's meaning and what was left out."""
        parts = []
        if any(point.low != point.high for series in self.series for point in series.points):
            parts.append(self.chart.spread)
        if self.left_out:
            parts.append("left out: " + "; ".join(self.left_out))
        return ". ".join(parts)


def chart_data(document: dict[str, Any], chart: Chart) -> ChartData:
    """The series, points and labels ``chart`` draws from ``document``'s summary rows."""
    headings = {column["name"]: column["heading"] for column in document["columns"]}
    rows = [row for cell in document["summary"] for row in cell["rows"]]
    if chart.points:
        return _entry_chart_data(chart, rows, headings)
    varying = [name for name in chart.series if len({_label(row.get(name)) for row in rows}) > 1]
    shown_series = varying or list(chart.series)
    series: dict[str, Series] = {}
    categories: list[str] = []
    left_out: dict[str, int] = {}
    for row in rows:
        failed = [name for name in chart.require if not _truthy(row.get(name))]
        if failed:
            _count(left_out, f"{headings.get(failed[0], failed[0])}: {_label(row.get(failed[0])) or 'none'}")
            continue
        if chart.kind == LINE:
            x_value = _central(row.get(chart.x[0]))
            if x_value is None:
                _count(left_out, f"without {headings.get(chart.x[0], chart.x[0])}")
                continue
            x: float | str = x_value[0]
        else:
            x = " ".join(_label(row.get(name)) for name in chart.x)
        base = " ".join(_label(row.get(name)) for name in shown_series)
        for variant, column in enumerate(chart.y):
            value = _central(row.get(column))
            if value is None:
                _count(left_out, f"without {headings.get(column, column)}")
                continue
            label = base if len(chart.y) == 1 else f"{base} {headings.get(column, column)}".strip()
            series.setdefault(label, Series(label, group=base, variant=variant)).points.append(Point(x, *value))
            if isinstance(x, str) and x not in categories:
                categories.append(x)
    return ChartData(
        chart=chart,
        series=list(series.values()),
        categories=categories,
        x_label=" ".join(headings.get(name, name) for name in chart.x),
        y_label=chart.y_label or headings.get(chart.y[0], chart.y[0]),
        legend_title=" ".join(headings.get(name, name) for name in shown_series),
        left_out=[f"{count} row{'s' if count > 1 else ''} {reason}" if reason.startswith("without")
                  else f"{count} row{'s' if count > 1 else ''} with {reason}" for reason, count in left_out.items()],
    )


def _entry_chart_data(chart: Chart, rows: list[dict[str, Any]], headings: dict[str, str]) -> ChartData:
    """A line per row and entry label, from the list in each row's ``chart.points`` column."""
    series: dict[str, Series] = {}
    left_out: dict[str, int] = {}
    for row in rows:
        entries = row.get(chart.points)
        if not isinstance(entries, list) or not entries:
            _count(left_out, f"without {headings.get(chart.points, chart.points)}")
            continue
        base = " ".join(_label(row.get(name)) for name in chart.series)
        entry_labels: list[str] = []  # this row's entry labels (e.g. its flows), in order: one line style each
        for entry in entries:
            if not isinstance(entry, list) or len(entry) < 3 or None in (_central(entry[1]), _central(entry[2])):
                continue
            entry_label = _label(entry[0])
            if entry_label not in entry_labels:
                entry_labels.append(entry_label)
            label = f"{base} {entry_label}".strip()
            value = float(entry[2])
            series.setdefault(label, Series(label, group=base, variant=entry_labels.index(entry_label))).points.append(
                Point(float(entry[1]), value, value, value))
    return ChartData(
        chart=chart,
        series=list(series.values()),
        categories=[],
        x_label=chart.x[0],
        y_label=chart.y_label or chart.y[0],
        legend_title=" ".join(headings.get(name, name) for name in chart.series),
        left_out=[f"{count} row{'s' if count > 1 else ''} {reason}" for reason, count in left_out.items()],
    )


def _count(counts: dict[str, int], reason: str) -> None:
    counts[reason] = counts.get(reason, 0) + 1


def _central(value: Any) -> tuple[float, float, float] | None:
    """(median, min, max) of a summarized number, a plain number thrice, or None."""
    if isinstance(value, dict) and "median" in value:
        return float(value["median"]), float(value["min"]), float(value["max"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value), float(value)
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, dict) and "median" in value:
        return bool(value["min"])
    if isinstance(value, str):  # a label that differed between repeats, e.g. "True / False"
        return bool(value) and value != "no" and "False" not in value
    return bool(value)


def _label(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict) and "median" in value:
        return _label(value["median"])
    return str(value)
