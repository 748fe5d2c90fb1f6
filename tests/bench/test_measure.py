"""The throughput measurements at tiny sizes: structure and sanity, never speed."""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError, asdict

import pytest

from netlab.bench.baseline import baseline_bulk, baseline_round_trips, baseline_udp_blast
from netlab.bench.figures import STREAM_TRANSPORTS, UDP_TRANSPORTS, BulkFigures, RoundTripFigures, UdpBulkSettings
from netlab.bench.measure import (
    measure_bulk,
    measure_round_trips,
    measure_udp_bulk,
    service_bulk,
    service_round_trips,
    service_udp_bulk,
)
from netlab.cli.main import main
from netlab.errors import UsageError
from netlab.transport.address import ipv6_loopback_available

BENCH = ["bench", "--rounds", "2"]
COUNT = 30
BULK_SIZE = 300_001  # not a multiple of the 64 KiB chunk
UDP_BULK_SIZE = 50_001  # not a multiple of the datagram size, and far below any receive buffer


def _usable(transport: str) -> None:
    if transport in ("tcp6", "udp6") and not ipv6_loopback_available():
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
    row = measure_bulk(transport, "length", "selector", payload_size=BULK_SIZE, placement="thread", verify=True)
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
    figures = service_bulk("tcp4", "ack", "threaded", payload_size=BULK_SIZE, placement="thread")
    assert figures.received_bytes == BULK_SIZE and figures.verified is None


def test_a_given_baseline_is_reused_not_remeasured() -> None:
    baseline = RoundTripFigures(round_trips=7, seconds=1.0, per_second=7.0, p50_us=1.0, p99_us=2.0, p999_us=3.0)
    row = measure_round_trips("tcp4", count=COUNT, placement="thread", baseline=baseline)
    assert (row.baseline_round_trips, row.baseline_per_second) == (7, 7.0)
    assert row.ratio == pytest.approx(row.per_second / 7.0)


@pytest.mark.parametrize("call", [
    lambda: measure_bulk("tcp4", "raw", payload_size=BULK_SIZE),
    lambda: measure_round_trips("sctp", count=COUNT),
    lambda: measure_bulk("udp", payload_size=BULK_SIZE),
    lambda: measure_udp_bulk("tcp4", settings=UdpBulkSettings(UDP_BULK_SIZE)),
    lambda: measure_udp_bulk("udp", "raw", settings=UdpBulkSettings(UDP_BULK_SIZE)),
    lambda: measure_udp_bulk("udp", settings=UdpBulkSettings(UDP_BULK_SIZE, datagram_size=36)),
    lambda: measure_udp_bulk("udp", settings=UdpBulkSettings(UDP_BULK_SIZE, impairment="loss=200%"),
                             placement="thread"),
    lambda: baseline_udp_blast("udp", payload_size=0),
    lambda: measure_round_trips("tcp4", count=0),
    lambda: measure_round_trips("tcp4", count=COUNT, placement="moon"),
])
def test_bad_parameters_are_usage_errors(call: object) -> None:
    with pytest.raises(UsageError):
        call()  # type: ignore[operator]


def test_bench_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*BENCH, "--json", "--transport", "unix", "--framing", "length", "--model", "threaded",
                 "--count", str(COUNT), "--bulk-size", "100000", "--placement", "thread"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    (round_trip,) = document["round_trips"]
    (bulk,) = document["bulk"]
    assert round_trip["round_trips"] == COUNT and bulk["received_bytes"] == 100000
    for row in (round_trip, bulk):  # the median of the per-round ratios, within their spread
        assert row["rounds"] == 2 and row["ratio_low"] <= row["ratio"] <= row["ratio_high"]
    assert document["rounds"] == 2 and document["pinning"] == {"client_cpu": None, "server_cpu": None}
    assert set(asdict(measure_round_trips("unix", count=3, placement="thread"))) == set(round_trip)


def test_bench_table_notes_what_it_cannot_measure(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*BENCH, "--transport", "tcp4", "--framing", "raw", "--model", "iterative",
                 "--count", str(COUNT), "--bulk-size", "1000", "--placement", "thread"])
    assert code == 0
    out = capsys.readouterr().out
    assert "echo rt/s" in out and "stdlib rt/s" in out
    assert "note: tcp4: no bulk row for raw" in out


@pytest.mark.parametrize("transport", UDP_TRANSPORTS)
def test_udp_round_trip_row_beside_a_raw_ping_pong(transport: str) -> None:
    _usable(transport)
    row = measure_round_trips(transport, "length", "threaded", count=COUNT, placement="thread")
    assert (row.transport, row.payload_bytes) == (transport, 16)
    assert row.round_trips == row.baseline_round_trips == COUNT
    assert 0 < row.baseline_p50_us <= row.baseline_p99_us <= row.baseline_p999_us
    assert row.ratio == pytest.approx(row.per_second / row.baseline_per_second)


@pytest.mark.parametrize("transport", UDP_TRANSPORTS)
def test_udp_bulk_row_counts_every_byte_on_both_sides(transport: str) -> None:
    _usable(transport)
    row = measure_udp_bulk(transport, settings=UdpBulkSettings(UDP_BULK_SIZE, 1200), placement="thread")
    assert (row.transport, row.datagram_size, row.impairment) == (transport, 1200, "")
    assert row.payload_bytes == row.received_bytes == row.baseline_sent_bytes == UDP_BULK_SIZE
    assert row.baseline_received_bytes == UDP_BULK_SIZE
    assert row.verified is None  # not asked: the row measures goodput like the blast
    assert row.data_datagrams_sent >= math.ceil(UDP_BULK_SIZE / (1200 - 36))
    assert row.megabytes_per_second == pytest.approx(UDP_BULK_SIZE / row.seconds / 1e6)
    assert row.baseline_megabytes_per_second == pytest.approx(UDP_BULK_SIZE / row.baseline_seconds / 1e6)
    assert row.ratio == pytest.approx(row.megabytes_per_second / row.baseline_megabytes_per_second)


def test_udp_bulk_under_loss_reports_the_senders_retransmissions() -> None:
    # 20% of what each end receives is dropped: of ~180 DATA datagrams some are lost for certain.
    settings = UdpBulkSettings(200_000, 1200, "loss=20%,seed=3,path=receive", rto_floor=0.02, verify=True)
    figures = service_udp_bulk("udp", settings=settings, placement="process")
    assert figures.received_bytes == 200_000 and figures.verified is True
    assert figures.sender.retransmits_timeout + figures.sender.retransmits_fast >= 1
    assert figures.sender.payload_bytes_sent >= 200_000
    assert figures.receiver.payload_bytes_delivered >= 200_000
    assert figures.megabytes_per_second == pytest.approx(200_000 / figures.seconds / 1e6)


def test_raw_udp_blast_in_a_child_process_with_loopback_size_datagrams() -> None:
    blast = baseline_udp_blast("udp", payload_size=UDP_BULK_SIZE, datagram_size=60_000)
    assert (blast.datagram_size, blast.sent_bytes, blast.received_bytes) == (60_000, UDP_BULK_SIZE, UDP_BULK_SIZE)
    assert blast.megabytes_per_second == pytest.approx(UDP_BULK_SIZE / blast.seconds / 1e6)


def test_bench_json_has_udp_bulk_rows_without_and_with_impairment(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*BENCH, "--json", "--transport", "udp", "--framing", "length", "--model", "threaded",
                 "--count", str(COUNT), "--bulk-size", "100000", "--datagram-size", "1200", "--placement", "thread"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    (round_trip,) = document["round_trips"]
    assert round_trip["transport"] == "udp" and document["bulk"] == []
    clean, impaired = document["udp_bulk"]
    assert (clean["impairment"], impaired["impairment"]) == ("", "loss=5%,seed=7,path=receive")
    for row in (clean, impaired):  # alternating rounds, like every other row: the median ratio within its spread
        assert row["received_bytes"] == row["baseline_sent_bytes"] == 100000
        assert row["rounds"] == 2 and row["ratio_low"] <= row["ratio"] <= row["ratio_high"]
    assert clean["baseline_seconds"] == impaired["baseline_seconds"]  # one blast per datagram size and round


def test_bench_udp_table_reports_the_targets(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*BENCH, "--transport", "udp", "--framing", "raw", "--framing", "length", "--model", "selector",
                 "--count", str(COUNT), "--bulk-size", "20000", "--datagram-size", "60000",
                 "--udp-impair", "none", "--placement", "thread", "--wide"])  # whole tables: one per paragraph
    assert code == 0
    out = capsys.readouterr().out
    assert "raw blast MB/s" in out and "loss=" not in out
    round_trip_table, bulk_table = out.split("\n\n")[:2]
    assert round_trip_table.count("0.7x m") == 2  # raw and length, each "met" or "missed"
    assert "0.5x m" in bulk_table  # the 60,000-byte target
    assert "note: udp: no bulk row for raw" in out


def test_bench_stream_tables_report_the_targets_and_the_model_spread(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*BENCH, "--transport", "tcp4", "--framing", "length", "--model", "iterative", "--model",
                 "threaded", "--count", str(COUNT), "--bulk-size", "1MiB", "--placement", "thread", "--verify",
                 "--wide"])
    assert code == 0
    out = capsys.readouterr().out
    round_trip_table, bulk_table, targets, notes = out.split("\n\n")
    assert "tcp4 iterative / threaded echo (length)" in targets and "within 10%" in targets
    assert round_trip_table.count("0.8x m") == 2
    assert bulk_table.count("0.8x m") == 2 and bulk_table.count(" yes ") == 2
    assert "note: tcp4/length: iterative and threaded differ by " in notes and "(target within 10%: m" in notes


def test_bench_rejects_a_bad_udp_impairment_before_measuring(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BENCH, "--transport", "udp", "--udp-impair", "loss=lots"]) == UsageError.exit_code
    captured = capsys.readouterr()
    assert "loss='lots' is not a percentage" in captured.err and captured.out == ""
