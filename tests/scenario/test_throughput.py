"""The throughput measurements at tiny sizes: structure and sanity, never speed."""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError, asdict

import pytest

from netlab.cli.main import main
from netlab.errors import UsageError
from netlab.scenario.experiments.common import ipv6_loopback_available
from netlab.scenario.throughput import (
    STREAM_TRANSPORTS,
    BulkFigures,
    RoundTripFigures,
    baseline_bulk,
    baseline_round_trips,
    measure_bulk,
    measure_round_trips,
    service_bulk,
    service_round_trips,
)

COUNT = 30
BULK_SIZE = 300_001  # not a multiple of the 64 KiB chunk


def _usable(transport: str) -> None:
    if transport == "tcp6" and not ipv6_loopback_available():
        pytest.skip("::1 is not usable on this machine (no IPv6 loopback)")


def _check_round_trip_figures(figures: RoundTripFigures, count: int) -> None:
    assert figures.round_trips == count
    assert figures.seconds > 0
    assert figures.per_second == pytest.approx(count / figures.seconds)
    assert 0 < figures.p50_us <= figures.p99_us <= figures.p999_us


@pytest.mark.parametrize("transport", STREAM_TRANSPORTS)
def test_round_trip_row_holds_both_measurements_and_their_ratio(transport: str) -> None:
    _usable(transport)
    row = measure_round_trips(transport, "length", "threaded", count=COUNT, placement="thread")
    assert (row.transport, row.framing, row.model, row.placement, row.payload_bytes) == (
        transport, "length", "threaded", "thread", 16)
    assert row.round_trips == row.baseline_round_trips == COUNT
    assert 0 < row.p50_us <= row.p99_us <= row.p999_us
    assert 0 < row.baseline_p50_us <= row.baseline_p99_us <= row.baseline_p999_us
    assert row.ratio == pytest.approx(row.per_second / row.baseline_per_second)
    with pytest.raises(FrozenInstanceError):
        row.ratio = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("transport", STREAM_TRANSPORTS)
def test_bulk_row_counts_every_byte_on_both_sides(transport: str) -> None:
    _usable(transport)
    row = measure_bulk(transport, "length", "selector", payload_size=BULK_SIZE, placement="thread")
    assert row.payload_bytes == row.received_bytes == row.baseline_received_bytes == BULK_SIZE
    assert row.verified is True
    assert row.megabytes_per_second == pytest.approx(BULK_SIZE / row.seconds / 1e6)
    assert row.baseline_megabytes_per_second == pytest.approx(BULK_SIZE / row.baseline_seconds / 1e6)
    assert row.ratio == pytest.approx(row.megabytes_per_second / row.baseline_megabytes_per_second)


@pytest.mark.parametrize("framing", ("raw", "ack", "line", "length"))
def test_service_round_trips_on_every_framing_in_a_child_process(framing: str) -> None:
    figures = service_round_trips("unix", framing, "iterative", count=COUNT, payload_size=40, placement="process")
    _check_round_trip_figures(figures, COUNT)


def test_baselines_in_a_child_process() -> None:
    _check_round_trip_figures(baseline_round_trips("tcp4", count=COUNT, payload_size=16), COUNT)
    bulk = baseline_bulk("tcp4", payload_size=BULK_SIZE)
    assert isinstance(bulk, BulkFigures) and bulk.received_bytes == BULK_SIZE


def test_ack_bulk_has_no_digest_to_verify() -> None:
    figures, verified = service_bulk("tcp4", "ack", "threaded", payload_size=BULK_SIZE, placement="thread")
    assert figures.received_bytes == BULK_SIZE and verified is None


def test_a_given_baseline_is_reused_not_remeasured() -> None:
    baseline = RoundTripFigures(round_trips=7, seconds=1.0, per_second=7.0, p50_us=1.0, p99_us=2.0, p999_us=3.0)
    row = measure_round_trips("tcp4", count=COUNT, placement="thread", baseline=baseline)
    assert (row.baseline_round_trips, row.baseline_per_second) == (7, 7.0)
    assert row.ratio == pytest.approx(row.per_second / 7.0)


@pytest.mark.parametrize("call", [
    lambda: measure_bulk("tcp4", "raw", payload_size=BULK_SIZE),
    lambda: measure_round_trips("udp", count=COUNT),
    lambda: measure_round_trips("tcp4", count=0),
    lambda: measure_round_trips("tcp4", count=COUNT, placement="moon"),
])
def test_bad_parameters_are_usage_errors(call: object) -> None:
    with pytest.raises(UsageError):
        call()  # type: ignore[operator]


def test_bench_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--json", "--transport", "unix", "--framing", "length", "--model", "threaded",
                 "--count", str(COUNT), "--bulk-size", "100000", "--placement", "thread"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    (round_trip,) = document["round_trips"]
    (bulk,) = document["bulk"]
    assert round_trip["round_trips"] == COUNT and bulk["received_bytes"] == 100000
    assert math.isclose(round_trip["ratio"], round_trip["per_second"] / round_trip["baseline_per_second"])
    assert set(asdict(measure_round_trips("unix", count=3, placement="thread"))) == set(round_trip)


def test_bench_table_notes_what_it_cannot_measure(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--transport", "tcp4", "--framing", "raw", "--model", "iterative",
                 "--count", str(COUNT), "--bulk-size", "1000", "--placement", "thread"])
    assert code == 0
    out = capsys.readouterr().out
    assert "echo rt/s" in out and "stdlib rt/s" in out
    assert "note: tcp4: no bulk row for raw" in out
