"""The bottleneck experiment: its arithmetic, a short run on loopback, and a real one over namespaces.

Loopback has no bottleneck, so the loopback runs only check that every kind
of sender moves data and fills every column; the namespaced run (root only)
checks that the shaped link shows in the figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netlab.scenario.experiments.bottleneck import EXPERIMENT, jain_index
from netlab.scenario.results import row_columns
from netlab.testing import run_netlab
from netlab.testing.lab import needs_namespaces

#: A cwnd trace of two flows, as the experiment writes it: flow, time s, cwnd KiB, srtt ms, event.
TWO_FLOW_TRACE = [["flow 1", 0.0, 14.4, None, "start"], ["flow 1", 0.5, 28.8, 42.0, "ack"],
                  ["flow 2", 0.0, 14.4, None, "start"], ["flow 2", 0.7, 7.2, 45.0, "loss"]]


def test_jain_index_is_one_for_equal_shares_and_one_over_n_for_a_hog() -> None:
    assert jain_index([5.0, 5.0]) == 1.0
    assert jain_index([10.0, 0.0]) == 0.5
    assert jain_index([8.0, 2.0]) == pytest.approx(100 / 136)
    assert jain_index([3.0]) is None and jain_index([0.0, 0.0]) is None


def test_the_trace_is_kept_in_the_rows_but_is_no_table_column() -> None:
    names = [column["name"] for column in row_columns(EXPERIMENT.row_type)]
    assert "cwnd_trace" not in names and "goodput_mbit" in names


@pytest.mark.parametrize("sender", ["tcp", "none", "reno", "cubic"])
def test_two_flows_on_loopback_fill_the_columns(sender: str, run_cell: Callable[..., list[Any]]) -> None:
    [row] = run_cell(EXPERIMENT, sender=sender, flows=2, seconds=1.0, probe_interval=0.02)
    # Loopback under a loaded CI machine: only what cannot depend on timing is asserted.
    assert row.goodput_mbit > 0 and row.fairness is not None and 0.5 <= row.fairness <= 1.0, row
    assert row.idle_rtt_ms is not None, row
    assert row.loss_percent is None  # loopback has no interface but lo: nothing to count
    if sender == "tcp":
        assert row.note.startswith("kernel TCP, default ") and row.cwnd_trace == []
    elif sender == "none":
        assert row.cwnd_trace == [] and row.cwnd_kb is None  # no window to trace
    else:
        assert row.congestion_events is not None and row.cwnd_kb is not None
        assert row.cwnd_trace and {entry[0] for entry in row.cwnd_trace} == {"flow 1", "flow 2"}
        assert row.cwnd_trace[0][4] == "start"


def test_an_unknown_kernel_algorithm_skips_with_the_reason(run_cell: Callable[..., list[Any]]) -> None:
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control", encoding="ascii") as stream:
        available = stream.read().split()
    missing = [name for name in ("reno", "cubic", "bbr") if name not in available]
    if not missing:
        pytest.skip("every TCP algorithm the experiment names is available here")
    from netlab.scenario.experiments.base import RunSkipped

    with pytest.raises(RunSkipped, match=f"refuses TCP congestion control {missing[0]}"):
        run_cell(EXPERIMENT, sender=f"tcp-{missing[0]}", seconds=0.5)


BOTTLENECK_SCENARIO = """\
experiment: bottleneck
seed: 5
timeout: 60
network:
  kind: namespaces
  link: {mtu: 1500, rate: 10mbit, queue: 62500b, delay: 10ms}
parameters: {seconds: 3, trace: true}
matrix:
  sender: [none, reno]
"""


@needs_namespaces
def test_over_a_shaped_link_the_rate_caps_goodput_and_the_queue_drops(tmp_path: Path) -> None:
    scenario = tmp_path / "bottleneck.yaml"
    scenario.write_text(BOTTLENECK_SCENARIO)
    completed = run_netlab("run", str(scenario), "--format", "json", "--out", str(tmp_path / "results"),
                           timeout=120)
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    rows = {row["sender"]: row for run in document["runs"] for row in run["rows"]}
    for row in rows.values():
        assert 0 < row["goodput_mbit"] <= 10 * 1.05  # the shaper holds it to its rate
        assert row["idle_rtt_ms"] >= 20.0  # never faster than the configured delay
        assert row["loss_percent"] is not None and row["loss_percent"] >= 0
    # 256 datagrams in flight against a 62,500-byte queue and a 25,000-byte path: the queue must drop.
    assert rows["none"]["loss_percent"] > 0 and rows["none"]["retransmits"] > 0
    assert rows["reno"]["cwnd_trace"]


def cwnd_chart_of(*cells: tuple[str, int, Any]) -> tuple[dict[str, Any], Any]:
    """(a result document with one row per (sender, flows, cwnd_trace), the experiment's cwnd chart)."""
    [chart] = [chart for chart in EXPERIMENT.charts if chart.name == "cwnd"]
    document = {
        "columns": row_columns(EXPERIMENT.row_type),
        "summary": [{"rows": [{"sender": sender, "flows": flows, "cwnd_trace": trace}]}
                    for sender, flows, trace in cells],
    }
    return document, chart


def test_the_cwnd_chart_draws_one_line_per_flow_from_the_trace() -> None:
    from netlab.scenario.charts import chart_data

    data = chart_data(*cwnd_chart_of(("reno", 2, TWO_FLOW_TRACE), ("tcp", 1, None)))
    assert [series.label for series in data.series] == ["reno 2 flow 1", "reno 2 flow 2"]
    assert [(point.x, point.y) for point in data.series[1].points] == [(0.0, 14.4), (0.7, 7.2)]
    assert data.left_out == ["1 row without cwnd_trace"]


def test_the_cwnd_chart_draws_the_flows_of_one_sender_in_different_styles_with_a_legend() -> None:
    pytest.importorskip("matplotlib")
    from netlab.scenario.charts import chart_data
    from netlab.scenario.plot import _figure

    data = chart_data(*cwnd_chart_of(("reno", 2, TWO_FLOW_TRACE), ("cubic", 2, TWO_FLOW_TRACE)))
    assert [(series.group, series.variant) for series in data.series] == [
        ("reno 2", 0), ("reno 2", 1), ("cubic 2", 0), ("cubic 2", 1)]
    axes = _figure(data).axes[0]
    lines = {container.get_label(): container.lines[0] for container in axes.containers}  # errorbar: data line first
    styles = {label: (line.get_color(), line.get_linestyle()) for label, line in lines.items()}
    assert styles["reno 2 flow 1"][0] == styles["reno 2 flow 2"][0]  # one colour per sender
    assert styles["reno 2 flow 1"][1] != styles["reno 2 flow 2"][1]  # one style per flow
    assert styles["reno 2 flow 1"][0] != styles["cubic 2 flow 1"][0]
    legend = axes.get_legend()
    assert legend is not None
    assert [text.get_text() for text in legend.get_texts()] == [
        "reno 2 flow 1", "reno 2 flow 2", "cubic 2 flow 1", "cubic 2 flow 2"]
