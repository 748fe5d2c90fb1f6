"""One vocabulary for sizes, durations and percentages, through the real CLI and scenario files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from netlab.scenario.schema import load_scenario
from netlab.testing import ChildServer, listen_url, run_netlab
from netlab.units import parse_duration, parse_percent, parse_size


@pytest.mark.parametrize(("text", "size"), [("1KiB", 1024), ("10MiB", 10 * 2**20), ("256MiB", 256 * 2**20),
                                            ("1000", 1000), ("4kB", 4000), ("1.5KiB", 1536), (" 2 GiB ", 2 * 2**30)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("2", 2.0),
                                               ("250us", 0.00025), ("1.5h", 5400.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_percentages_are_percent_with_or_without_the_sign() -> None:
    assert parse_percent("5%") == parse_percent("5") == parse_percent(5) == 5.0
    with pytest.raises(ValueError, match="not a percentage: write 5% or 5"):
        parse_percent("5 pc")


def test_output_cap_takes_a_size_and_the_server_cuts_there() -> None:
    with tempfile.TemporaryDirectory(prefix="nl-") as directory:
        with ChildServer("--address", listen_url("unix", directory), "--quiet", "--output-cap", "1KiB") as server:
            result = run_netlab("exec", "--address", server.url, "--", "blob", "10KiB")
    assert len(result.stdout) == 1024
    assert "1024 B" in result.stderr.decode() or "1 KiB" in result.stderr.decode()


@pytest.mark.parametrize("value", ["0", "0KiB"])
def test_output_cap_zero_is_refused_in_one_line(value: str) -> None:
    result = run_netlab("serve", "--transport", "unix", "--output-cap", value)
    assert result.returncode == 2
    assert "--output-cap: " in result.stderr.decode() and "must be at least 1 B" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_a_bad_size_names_the_accepted_forms() -> None:
    result = run_netlab("serve", "--transport", "unix", "--output-cap", "ten")
    assert result.returncode == 2
    assert "'ten' is not a size: write bytes, or 1000, 10B, 4kB = 4000, 4KiB = 4096" in result.stderr.decode()


def test_durations_are_accepted_by_every_seconds_flag() -> None:
    result = run_netlab("exec", "--timeout", "1m", "--connect-timeout", "500ms", "--address",
                        "unix:///nonexistent/netlab.sock", "--", "echo", "hi")
    assert "is not a duration" not in result.stderr.decode()
    assert result.returncode == 255  # nothing listens there: a connection error, not a usage error
    result = run_netlab("exec", "--timeout", "soon", "--", "echo")
    assert result.returncode == 255 and "'soon' is not a duration: write seconds, or 2s, 500ms" in result.stderr.decode()


def test_impairment_and_scenario_write_percentages_alike(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("experiment: udp-loss\nmatrix:\n  loss: [5%, 10]\n  rto_floor: [1s, 20ms]\n"
                    "parameters:\n  payload: 1KiB\ntimeout: 2m\n")
    scenario = load_scenario(str(path))
    assert scenario.matrix == {"loss": [5.0, 10], "rto_floor": [1.0, 0.02]}
    assert scenario.parameters == {"payload": 1024} and scenario.timeout == 120.0
    result = run_netlab("run", "--check", str(path))
    assert result.returncode == 0, result.stderr


def test_a_scenario_value_with_a_wrong_unit_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("experiment: udp-loss\nmatrix:\n  loss: [5 parsecs]\n")
    result = run_netlab("run", "--check", str(path))
    assert result.returncode != 0 and "Traceback" not in result.stderr.decode()
    assert ('matrix.loss[0]: expected a number of percent >= 0 and <= 90 (or with a unit, e.g. 5%), '
            'got "5 parsecs"') in result.stderr.decode()


def test_threshold_and_datagram_size_use_the_same_units() -> None:
    result = run_netlab("results", "compare", "a.json", "b.json", "--threshold", "lots")
    assert result.returncode == 2 and "'lots' is not a percentage: write 5% or 5 (percent)" in result.stderr.decode()
    result = run_netlab("results", "compare", "a.json", "b.json", "--threshold", "5%")
    assert result.returncode == 2 and "a.json: no such file" in result.stderr.decode()  # 5% was accepted
    result = run_netlab("bench", "--datagram-size", "1.5B", "--no-round-trips")
    assert result.returncode == 2 and "'1.5B' is not a whole number of bytes" in result.stderr.decode()
    result = run_netlab("bench", "--datagram-size", "0", "--no-round-trips")
    assert result.returncode == 2 and "'0': must be at least 1 B" in result.stderr.decode()


def test_every_duration_and_size_parameter_declares_its_unit() -> None:
    from netlab.scenario.experiments import EXPERIMENT_NAMES, load_experiment

    for name in EXPERIMENT_NAMES:
        for parameter in load_experiment(name).parameters:
            if parameter.kind not in (int, float) or parameter.choices:
                continue
            words = f"{parameter.name} {parameter.help}".lower().replace("_", " ").replace(",", " ").split()
            if {"s", "seconds", "timeout", "delay", "interval", "duration", "floor"} & set(words):
                assert parameter.unit == "s", f"{name}.{parameter.name}: declare unit='s'"
            if {"bytes", "size"} & set(words):
                assert parameter.unit == "bytes", f"{name}.{parameter.name}: declare unit='bytes'"


@pytest.mark.parametrize(("argv", "message"), [
    (("serve", "--port", "65536"), "expected a port 0-65535, got '65536'"),
    (("capture", "--port", "0"), "expected a port 1-65535, got '0'"),
    (("dissector", "--udp-port", "x"), "expected a port 1-65535, got 'x'"),
])
def test_port_flags_share_one_parser_that_names_the_range(argv: tuple[str, ...], message: str) -> None:
    result = run_netlab(*argv)
    assert result.returncode == 2 and message in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
