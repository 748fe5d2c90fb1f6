"""The bench's method: pinning applied to the child servers, alternating rounds, spreads; the peers' rows.

These check the mechanics, never a speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from netlab.bench import pinning
from netlab.bench.baseline import baseline_length_round_trips
from netlab.bench.measure import netlab_server
from netlab.bench.peers import PEERS, peer_available, peer_round_trips
from netlab.bench.rounds import Rounds, run_rounds, spread
from netlab.cli import bench
from netlab.cli.main import main
from netlab.errors import TransportError

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
needs_two_cpus = pytest.mark.skipif(not TWO_CPUS, reason="pinning apart needs at least two usable CPUs")
MISSING_PEERS = [name for name in PEERS if peer_available(name)]
needs_peers = pytest.mark.skipif(bool(MISSING_PEERS), reason=f"not installed: {', '.join(MISSING_PEERS)} "
                                                             "(pip install -e '.[peers]')")


def _children() -> list[int]:
    """This process's child ``netlab serve`` processes, from /proc (every thread's children file)."""
    found = []
    for thread in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{thread}/children", encoding="ascii") as children:
            found += [int(pid) for pid in children.read().split()]
    return [pid for pid in found if b"serve" in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")]


@needs_two_cpus
def test_the_child_server_runs_on_the_server_cpu_and_the_client_on_its_own() -> None:
    chosen = pinning.choose_pinning()
    assert chosen.active and chosen.client_cpu != chosen.server_cpu
    before = pinning.allowed_cpus(os.getpid())
    with pinning.pinned(chosen):
        assert os.sched_getaffinity(0) == {chosen.client_cpu}
        with netlab_server("tcp4", "length", "threaded", "process"):
            (child,) = _children()
            assert pinning.allowed_cpus(child) == str(chosen.server_cpu)
            for thread in os.listdir(f"/proc/{child}/task"):  # every thread the server had started
                assert pinning.allowed_cpus(int(thread)) == str(chosen.server_cpu)
    assert pinning.allowed_cpus(os.getpid()) == before  # the client's own mask is given back


def test_without_pinning_a_child_server_keeps_every_cpu() -> None:
    everything = pinning.allowed_cpus(os.getpid())
    with pinning.pinned(pinning.NOT_PINNED), netlab_server("unix", "length", "threaded", "process"):
        (child,) = _children()
        assert pinning.allowed_cpus(child) == everything


def test_rounds_alternate_their_order_and_a_failure_stops_only_its_measurement() -> None:
    calls: list[str] = []

    def measure(name: str, value: float, fail_on: int | None = None):  # type: ignore[no-untyped-def]
        def run() -> float:
            calls.append(name)
            if fail_on is not None and calls.count(name) == fail_on:
                raise TransportError(f"{name} broke")
            return value
        return run

    measured = run_rounds([("base", measure("base", 10.0)), ("cell", measure("cell", 5.0)),
                           ("bad", measure("bad", 1.0, fail_on=2))], rounds=4)
    assert measured.orders == [["base", "cell", "bad"], ["bad", "cell", "base"], ["base", "cell"], ["cell", "base"]]
    assert str(measured.failures["bad"]) == "bad broke" and "bad" not in measured.results
    ratio = measured.ratio("cell", "base", float)
    assert ratio is not None and (ratio.median, ratio.low, ratio.high, ratio.rounds) == (0.5, 0.5, 0.5, 4)
    assert measured.ratio("bad", "base", float) is None  # no ratio is made up for a failed measurement


def test_a_ratio_is_taken_within_each_round_then_its_median_and_spread() -> None:
    measured = Rounds(results={"cell": [1.0, 3.0, 2.0], "base": [2.0, 2.0, 1.0]})
    found = measured.ratio("cell", "base", float)  # per round: 0.5, 1.5, 2.0
    assert found is not None and (found.median, found.low, found.high) == (1.5, 0.5, 2.0)
    assert spread([1.0, 1.1, 0.9]).relative == pytest.approx(0.1)


def test_length_prefixed_stdlib_ping_pong_in_a_child_process() -> None:
    figures = baseline_length_round_trips("unix", count=50)
    assert figures.round_trips == 50 and figures.per_second > 0


@needs_two_cpus
def test_bench_says_where_it_pinned_and_how_many_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--json", "--rounds", "3", "--transport", "unix", "--framing", "length", "--model",
                 "threaded", "--count", "30", "--no-bulk"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    chosen = pinning.choose_pinning()
    assert document["pinning"] == {"client_cpu": chosen.client_cpu, "server_cpu": chosen.server_cpu}
    (row,) = document["round_trips"]
    assert row["rounds"] == 3 and row["ratio_low"] <= row["ratio"] <= row["ratio_high"]
    assert f"client pinned to CPU {chosen.client_cpu}" in row["pinning"]
    assert any("3 alternating rounds" in note for note in document["notes"])
    target = next(target for target in document["targets"] if target["target"].startswith("unix echo"))
    assert target["verdict"] in ("met", "missed") and target["low"] <= target["median"] <= target["high"]


def test_rounds_below_one_are_a_usage_error() -> None:
    completed = subprocess.run([sys.executable, "-m", "netlab", "bench", "--rounds", "0"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 2 and "--rounds: expected an integer >= 1" in completed.stderr and "Traceback" not in completed.stderr


@needs_peers
@pytest.mark.parametrize("name", PEERS)
def test_each_peer_answers_round_trips_from_a_child_process(name: str) -> None:
    figures = peer_round_trips(name, count=20)
    assert figures.round_trips == 20 and figures.p50_us > 0


@needs_peers
def test_bench_peers_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--json", "--peers", "--rounds", "2", "--transport", "tcp4", "--framing", "length",
                 "--model", "threaded", "--count", "20", "--no-bulk"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    stacks = {row["stack"]: row for row in document["peers"]}
    assert set(stacks) == {"stdlib length-prefixed", "netlab length/threaded", *PEERS}
    assert all(row["per_second"] > 0 and not row["skipped"] and not row["failed"] for row in stacks.values())
    assert stacks["stdlib length-prefixed"]["ratio"] == 1.0
    pyzmq = next(target for target in document["targets"] if "pyzmq" in target["target"])
    assert pyzmq["verdict"] in ("met", "missed")


def test_a_missing_peer_is_a_skipped_row_not_a_failure(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    def only_rpyc_missing(name: str) -> str | None:
        return "rpyc is not installed (pip install 'netlab[peers]')" if name == "rpyc" else peer_available(name)

    monkeypatch.setattr(bench, "peer_available", only_rpyc_missing)
    monkeypatch.setattr(bench, "PEERS", {"rpyc": "rpyc"})
    code = main(["bench", "--peers", "--rounds", "1", "--transport", "unix", "--framing", "length", "--model",
                 "threaded", "--count", "20", "--no-bulk", "--placement", "thread", "--wide"])
    assert code == 0
    out = capsys.readouterr().out
    rpyc = next(line for line in out.splitlines() if line.startswith("rpyc"))
    assert "skipped: rpyc is not installed (pip install 'netlab[peers]')" in rpyc
    assert "stdlib length-prefixed" in out  # measured over tcp4 even when tcp4 was not asked for


def test_a_peer_that_fails_is_a_failed_row_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(name: str, count: int) -> None:
        raise TransportError(f"{name}'s server did not start")

    monkeypatch.setattr(bench, "peer_available", lambda name: None)
    monkeypatch.setattr(bench, "PEERS", {"rpyc": "rpyc"})
    monkeypatch.setattr(bench, "peer_round_trips", broken)
    code = main(["bench", "--peers", "--rounds", "1", "--transport", "unix", "--framing", "length", "--model",
                 "threaded", "--count", "20", "--no-bulk", "--placement", "thread", "--wide"])
    captured = capsys.readouterr()
    assert code == 1
    rpyc = next(line for line in captured.out.splitlines() if line.startswith("rpyc"))
    assert "failed: rpyc's server did not start" in rpyc
    assert "netlab: 1 benchmark cells failed" in captured.err
