"""Every experiment at a small size, asserting the kernel's rules rather than speeds."""

from __future__ import annotations

import pytest

from netlab.scenario.experiments.backlog import EXPERIMENT as BACKLOG
from netlab.scenario.experiments.base import RunSkipped
from netlab.scenario.experiments.concurrency import EXPERIMENT as CONCURRENCY
from netlab.scenario.experiments.framing import EXPERIMENT as FRAMING
from netlab.scenario.experiments.timeouts import EXPERIMENT as TIMEOUTS
from netlab.scenario.experiments.udp_loss import EXPERIMENT as UDP_LOSS
from netlab.transport.address import ipv6_loopback_available

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="IPv6 loopback (::1) is not available")


@pytest.mark.parametrize("transport", ["tcp4", pytest.param("tcp6", marks=needs_ipv6)])
def test_tcp_backlog_2_admits_3_and_a_further_client_times_out(run_cell, transport: str) -> None:
    [row] = run_cell(BACKLOG, transport=transport, backlog=2, extra_clients=1, connect_timeout=0.2)
    assert (row.attempts, row.connected, row.served, row.timed_out, row.refused) == (4, 3, 3, 1, 0)
    if row.kernel_queued is not None:
        assert row.kernel_queued == 3


@pytest.mark.parametrize("transport", ["unix", "unix-seqpacket"])
def test_unix_backlog_answers_eagain_at_once(run_cell, transport: str) -> None:
    [row] = run_cell(BACKLOG, transport=transport, backlog=1, extra_clients=2)
    assert (row.connected, row.served, row.refused, row.timed_out) == (2, 2, 2, 0)
    assert "EAGAIN" in row.note


def test_udp_has_no_backlog_its_receive_buffer_overflows(run_cell) -> None:
    [row] = run_cell(BACKLOG, transport="udp", backlog=None, datagrams=64, rcvbuf=2048)
    assert 0 < row.connected < row.attempts
    assert row.refused is None  # nothing refuses a datagram: the full buffer drops it
    assert row.connected + row.dropped == row.attempts
    if row.overflows is not None and row.overflows > row.dropped:
        assert "another socket on this machine overflowed too" in row.note


def test_connect_median_counts_only_the_clients_that_connected(run_cell) -> None:
    # 1 admitted at once, 3 timed out after 0.3 s each: a median over everyone would be ~300 ms
    [row] = run_cell(BACKLOG, transport="tcp4", backlog=0, extra_clients=2, connect_timeout=0.3)
    assert row.connected == 1 and row.timed_out == 2
    assert row.wait_p50_ms is not None and row.wait_p50_ms < 250 and row.wait_max_ms < 250
    assert "~1, 2, 3" in row.note or "resend at" in row.note


def test_backlog_headings_say_what_the_columns_hold() -> None:
    from dataclasses import fields

    headings = {f.name: f.metadata.get("heading") for f in fields(BACKLOG.row_type)}
    assert headings["wait_p50_ms"] == "connected p50 ms"
    assert headings["overflows"] == "overflows + (all sockets)"
    assert headings["dropped"] == "datagrams dropped"


def test_raw_framing_over_tcp_merges_100_back_to_back_messages(run_cell) -> None:
    [row] = run_cell(FRAMING, transport="tcp4", framing="raw", delivery="burst", messages=100)
    assert row.merged > 0
    assert row.in_step < row.sent


@pytest.mark.parametrize("transport", ["unix-seqpacket", "udp"])
def test_boundary_keeping_transports_never_merge(run_cell, transport: str) -> None:
    try:
        [row] = run_cell(FRAMING, transport=transport, framing="raw", delivery="burst", messages=50)
    except RunSkipped as exc:
        pytest.skip(str(exc))
    assert (row.server_receives, row.intact, row.merged, row.split, row.in_step) == (50, 50, 0, 0, 50)


@pytest.mark.parametrize("delivery", ["burst", "sliced"])
@pytest.mark.parametrize("transport", ["tcp4", "unix"])
def test_length_framing_never_merges_and_survives_the_slicer(run_cell, transport: str, delivery: str) -> None:
    [row] = run_cell(FRAMING, seed=11, transport=transport, framing="length", delivery=delivery,
                           messages=40)
    assert (row.intact, row.merged, row.split, row.in_step, row.truncated) == (40, 0, 0, 40, 0)
    if delivery == "sliced":
        assert row.server_receives > row.sent  # the slicer did cut the frames


def test_timeouts_name_the_error_of_each_wait(run_cell) -> None:
    rows = {row.case: row for row in run_cell(TIMEOUTS, transport="tcp4", connect_timeout=0.2,
                                                      read_timeout=0.1, idle_timeout=0.2, command_timeout=0.2)}
    assert rows["nothing listening"].outcome == "ConnectionRefused (ECONNREFUSED)"
    assert rows["full backlog"].outcome.startswith("ConnectTimeout")
    assert rows["slow command"].outcome.startswith("ReadTimeout")
    assert rows["idle connection"].outcome == "ServerError" and "idle-timeout" in rows["idle connection"].note
    assert rows["command timeout"].outcome == "Exit" and "timed out" in rows["command timeout"].note


def test_unix_full_backlog_waits_then_times_out(run_cell) -> None:
    rows = {row.case: row for row in run_cell(TIMEOUTS, transport="unix", connect_timeout=0.2,
                                                      read_timeout=0.1, idle_timeout=0.2, command_timeout=0.2)}
    assert rows["nothing listening"].outcome == "ConnectionRefused (ENOENT)"  # no socket file: not a refusal
    assert rows["full backlog"].outcome.startswith("ConnectTimeout")
    assert rows["full backlog"].after_ms >= 150  # a blocking connect waited for room instead of failing at once
    idle = rows["idle connection"]
    if idle.outcome.startswith("BrokenError"):  # the server closed first; our write found the pipe broken
        assert idle.outcome == "BrokenError (EPIPE)"
        assert "the client wrote first" in idle.note and "still unread" in idle.note


@pytest.mark.parametrize("model", ["iterative", "threaded", "selector"])
def test_concurrency_counts_every_round_trip(run_cell, model: str) -> None:
    [row] = run_cell(CONCURRENCY, model=model, clients=3, requests=20, duration=5.0)
    assert (row.round_trips, row.served_clients, row.starved_clients, row.errors) == (60, 3, 0, 0)


def test_udp_loss_runs_every_command_exactly_once(run_cell) -> None:
    [row] = run_cell(UDP_LOSS, loss=10.0, rto_floor=0.02, commands=20)
    assert row.exactly_once and row.completed == 20


def test_udp_loss_measures_the_timer_its_floor_belongs_to(run_cell, monkeypatch) -> None:
    """Both ends use RFC 6298's timer: the probe timeout (the default) has no floor to compare."""
    from netlab.scenario.experiments import udp_loss

    seen: list[str] = []
    for name in ("listen", "connect"):
        real = getattr(udp_loss, name)

        def recording(*args, _real=real, **options):
            seen.append(options.get("loss_timer", "pto"))
            return _real(*args, **options)

        monkeypatch.setattr(udp_loss, name, recording)
    [row] = run_cell(UDP_LOSS, loss=0.0, rto_floor=0.02, commands=2)
    assert row.completed == 2
    assert seen == ["rto", "rto"]


def test_framing_measures_the_unix_send_buffer_instead_of_claiming_a_queue_limit(run_cell) -> None:
    [row] = run_cell(FRAMING, transport="unix", framing="length", delivery="burst", messages=20)
    count = int(row.note.split("takes ")[1].split(" ")[0])
    assert count > 20 and "10-byte writes before EAGAIN (the send buffer fills)" in row.note
    assert "holds net.unix.max_dgram_qlen messages" not in FRAMING.method
    assert "some dozens" not in FRAMING.method


def test_concurrency_prose_does_not_promise_starvation_the_table_does_not_show() -> None:
    from pathlib import Path

    text = " ".join((Path(__file__).parents[2] / "scenarios" / "concurrency.yaml").read_text().split())
    assert "wait in the accept queue and starve" not in text
    assert "counts as starved only if no reply came" in text
    assert "when every client finishes its requests in time, none starves" in " ".join(CONCURRENCY.method.split())
