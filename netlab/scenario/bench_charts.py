"""Charts of ``netlab bench --json`` output: netlab/stdlib ratios with their spread across server models.

How this works: ``netlab bench --json`` prints ``{"format": "netlab-bench/1",
"round_trips": [...], "bulk": [...], "udp_bulk": [...], "notes": [...]}``.
:func:`bench_document` turns it into the shape :func:`~netlab.scenario.charts.chart_data`
reads (columns plus summary rows): one row per transport and framing (per
datagram size and impairment for udp bulk), each ratio the median over the
server models measured, with the lowest and highest model as its spread.
:data:`BENCH_CHARTS` are the charts drawn from it, declared here beside the
conversion, as each experiment declares its own.
"""

from __future__ import annotations

import statistics
from typing import Any

from netlab.scenario.charts import BARS, Chart

BENCH_FORMAT = "netlab-bench/1"
_SPREAD = "bars are the median over the server models measured; whiskers show the lowest and highest model"
BENCH_CHARTS = (
    Chart("ratios", "netlab / stdlib per transport and framing", BARS, x=("transport", "framing"),
          y=("round_trip_ratio", "bulk_ratio"), y_label="ratio (1 = the baseline)", spread=_SPREAD),
    Chart("udp-bulk", "Sequenced UDP bulk / raw UDP blast", BARS,
          x=("transport", "framing", "datagram_size", "impairment"), y=("udp_bulk_ratio",), y_label="ratio",
          spread=_SPREAD),
)
_COLUMNS = (
    ("transport", "transport", True), ("framing", "framing", True), ("datagram_size", "datagram B", True),
    ("impairment", "impairment", True), ("round_trip_ratio", "round-trip ratio", False),
    ("bulk_ratio", "bulk ratio", False), ("udp_bulk_ratio", "udp bulk ratio", False),
    ("models", "models", False),
)


def is_bench_output(data: object) -> bool:
    """True for what ``netlab bench --json`` prints."""
    return isinstance(data, dict) and data.get("format") == BENCH_FORMAT


def bench_document(data: dict[str, Any], name: str = "bench") -> dict[str, Any]:
    """The bench output as a chartable document (see the module docstring)."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}

    def add(key: tuple[Any, ...], column: str, row: dict[str, Any]) -> None:
        entry = groups.setdefault(key, {"transport": key[0], "framing": key[1], "datagram_size": key[2],
                                        "impairment": key[3], "samples": {}, "models": set()})
        entry["samples"].setdefault(column, []).append(float(row["ratio"]))
        entry["models"].add(row["model"])

    for row in data.get("round_trips", []):
        add((row["transport"], row["framing"], None, None), "round_trip_ratio", row)
    for row in data.get("bulk", []):
        add((row["transport"], row["framing"], None, None), "bulk_ratio", row)
    for row in data.get("udp_bulk", []):
        add((row["transport"], row["framing"], row["datagram_size"], row["impairment"] or "none"), "udp_bulk_ratio",
            row)
    rows = []
    for entry in groups.values():
        row = {key: entry[key] for key in ("transport", "framing", "datagram_size", "impairment")}
        for column, values in entry.pop("samples").items():
            row[column] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                           "n": len(values)}
        row["models"] = ", ".join(sorted(entry["models"]))
        rows.append(row)
    return {
        "format": BENCH_FORMAT,
        "experiment": {"name": "bench"},
        "scenario": {"name": name},
        "columns": [{"name": column, "heading": heading, "key": key} for column, heading, key in _COLUMNS],
        "summary": [{"rows": rows}],
    }
